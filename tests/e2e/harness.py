"""Real Kong for the end-to-end tests: the compose stack through testcontainers, or a `kong` binary on PATH.

conftest.py's `gateway` (session fixture) gives the proxy and Admin API URLs of a running Kong 3.x with Tollgate
beside it:

- a Docker engine answers (``docker.from_env(timeout=3).ping()``): ``docker compose up --build --wait`` on the
  repository's docker-compose.yml (kong + redis + mock-llm), host ports chosen free, a project name of its own;
- else a ``kong`` binary on PATH: this harness plays the image's part on the host: a mock LLM, redis-server,
  ``tollgate serve`` with its sockets in a temp dir, and ``kong start`` with kong/kong.conf and
  declarative/kong.yml rewritten for those paths and ports;
- else every test that asks for it is skipped at once (the probe takes well under a second without an engine).

TOLLGATE_E2E=compose|kong forces one way (and fails instead of skipping when it is not available).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
SIX = [
    "tollgate-proxy",
    "tollgate-token-limit",
    "tollgate-semantic-cache",
    "tollgate-guardrails",
    "tollgate-cost-quota",
    "tollgate-mcp",
]
DEMO_KEY = "tollgate-demo-key"


@dataclasses.dataclass
class Gateway:
    mode: str  # "compose" or "kong"
    proxy_url: str
    admin_url: str
    compose: object | None = None  # testcontainers DockerCompose in compose mode

    def relay_health(self) -> int | None:
        """Status of the relay's health endpoint seen from inside Kong's container/host, None if unknown."""
        if self.mode == "compose":
            code = (
                "import urllib.request;"
                "print(urllib.request.urlopen('http://127.0.0.1:8081/__tollgate/health', timeout=3).status)"
            )
            out, _, rc = self.compose.exec_in_container(  # type: ignore[union-attr]
                ["/opt/tollgate/bin/python", "-c", code], service_name="kong"
            )
            return int(out.strip()) if rc == 0 else None
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_engine: bool | None = None


def docker_engine_available() -> bool:
    global _engine
    if _engine is None:
        try:
            import docker

            client = docker.from_env(timeout=3)
            try:
                _engine = bool(client.ping())
            finally:
                client.close()
        except Exception:
            _engine = False
    return _engine


def wait_http(url: str, timeout: float, ok=lambda status: status < 500) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if ok(resp.status):
                    return
                last = resp.status
        except urllib.error.HTTPError as exc:
            if ok(exc.code):
                return
            last = exc.code
        except OSError as exc:
            last = exc
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout}s (last: {last!r})")


# ----------------------------------------------------------------------------------------------------------------
# compose
# ----------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def compose_gateway() -> Iterator[Gateway]:
    from testcontainers.compose import DockerCompose

    proxy_port, admin_port = free_port(), free_port()
    env = {
        "COMPOSE_PROJECT_NAME": f"tollgate-e2e-{os.getpid()}",
        "KONG_PROXY_PORT": str(proxy_port),
        "KONG_ADMIN_PORT": str(admin_port),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # DockerCompose runs `docker compose` with this process's environment
    compose = DockerCompose(context=str(REPO), compose_file_name="docker-compose.yml", build=True, wait=True)
    try:
        compose.start()
        host, port = compose.get_service_host_and_port("kong", 8000)
        admin_host, admin = compose.get_service_host_and_port("kong", 8001)
        host = "127.0.0.1" if host in (None, "0.0.0.0", "::") else host
        admin_host = "127.0.0.1" if admin_host in (None, "0.0.0.0", "::") else admin_host
        gw = Gateway("compose", f"http://{host}:{port}", f"http://{admin_host}:{admin}", compose)
        wait_http(gw.admin_url + "/status", 60, ok=lambda s: s == 200)
        yield gw
    finally:
        try:
            stdout, stderr = compose.get_logs()
            sys.stderr.write(stdout[-20000:] + stderr[-20000:])
        except Exception:
            pass
        compose.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ----------------------------------------------------------------------------------------------------------------
# kong binary on the host
# ----------------------------------------------------------------------------------------------------------------


def _console_script(name: str) -> list[str]:
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return [str(beside)]
    found = shutil.which(name)
    if found:
        return [found]
    module = {"tollgate": "tollgate", "tollgate-mock-llm": "tollgate.mock"}[name]
    return [sys.executable, "-m", module]


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def host_kong_conf(source: str, *, socket_dir: str, tollgate: str, declarative: str, proxy: int, admin: int) -> str:
    """kong/kong.conf adapted to a host run: sockets, query command, declarative file, ports, logs."""
    text = source.replace("/usr/local/kong/tollgate/", socket_dir.rstrip("/") + "/")
    text = text.replace("/opt/tollgate/bin/tollgate", tollgate)
    overrides = {
        "declarative_config": declarative,
        "proxy_listen": f"127.0.0.1:{proxy}",
        "admin_listen": f"127.0.0.1:{admin}",
        "proxy_access_log": "logs/access.log",
        "admin_access_log": "logs/admin_access.log",
        "proxy_error_log": "logs/error.log",
        "admin_error_log": "logs/error.log",
    }
    for key, value in overrides.items():
        text = re.sub(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", text)
    if os.geteuid() == 0:
        text += "\nnginx_user = root root\n"  # workers must reach the sockets in a root-owned temp dir
    return text


@contextlib.contextmanager
def host_kong_gateway(kong: str) -> Iterator[Gateway]:
    redis_server = shutil.which("redis-server")
    if not redis_server:
        pytest.skip("kong binary found but no redis-server for the example routes")
    tmp = Path(tempfile.mkdtemp(prefix="tollgate-e2e-"))
    os.chmod(tmp, 0o755)
    sockets, prefix = tmp / "sockets", tmp / "prefix"
    sockets.mkdir(mode=0o755)
    prefix.mkdir()
    mock_port, redis_port, relay_port = free_port(), free_port(), free_port()
    proxy_port, admin_port = free_port(), free_port()
    procs: list[subprocess.Popen] = []
    logs = open(tmp / "processes.log", "wb")

    def spawn(cmd: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, stdout=logs, stderr=logs, start_new_session=True, **kwargs)
        procs.append(proc)
        return proc

    kong_started = False
    try:
        spawn([redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        spawn([*_console_script("tollgate-mock-llm"), "--host", "127.0.0.1", "--port", str(mock_port)])
        env = dict(
            os.environ,
            TOLLGATE_SOCKET_DIR=str(sockets),
            TOLLGATE_RELAY_HOST="127.0.0.1",
            TOLLGATE_RELAY_PORT=str(relay_port),
            TOLLGATE_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        )
        spawn([*_console_script("tollgate"), "serve", "--socket-dir", str(sockets)], env=env,
              preexec_fn=lambda: os.umask(0o000))
        _wait_for(lambda: _port_open(mock_port) and _port_open(relay_port) and _port_open(redis_port), 30,
                  "mock, relay and redis")
        _wait_for(lambda: all((sockets / f"{n}.socket").exists() for n in SIX), 30, "plugin sockets")

        declarative = (REPO / "declarative" / "kong.yml").read_text()
        declarative = declarative.replace("http://mock-llm:8000", f"http://127.0.0.1:{mock_port}")
        declarative = declarative.replace("redis://redis:6379", f"redis://127.0.0.1:{redis_port}")
        declarative = declarative.replace("http://127.0.0.1:8081", f"http://127.0.0.1:{relay_port}")
        (tmp / "kong.yml").write_text(declarative)
        tollgate_cmd = " ".join(_console_script("tollgate"))
        conf = host_kong_conf(
            (REPO / "kong" / "kong.conf").read_text(),
            socket_dir=str(sockets),
            tollgate=tollgate_cmd,
            declarative=str(tmp / "kong.yml"),
            proxy=proxy_port,
            admin=admin_port,
        )
        (tmp / "kong.conf").write_text(conf)
        subprocess.run([kong, "start", "-c", str(tmp / "kong.conf"), "-p", str(prefix)], check=True,
                       stdout=logs, stderr=logs, timeout=120)
        kong_started = True
        gw = Gateway("kong", f"http://127.0.0.1:{proxy_port}", f"http://127.0.0.1:{admin_port}")
        wait_http(gw.admin_url + "/status", 60, ok=lambda s: s == 200)
        yield gw
    finally:
        if kong_started:
            subprocess.run([kong, "stop", "-p", str(prefix)], stdout=logs, stderr=logs, timeout=60)
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        logs.close()
        error_log = prefix / "logs" / "error.log"
        for path in (tmp / "processes.log", error_log):
            if path.exists():
                sys.stderr.write(f"--- {path}\n" + path.read_text(errors="replace")[-20000:])
        shutil.rmtree(tmp, ignore_errors=True)

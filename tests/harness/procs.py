"""Plugin-server processes for tests: the Tollgate process (``tollgate serve``) and the
stock kong-pdk server (``kong-python-pluginserver``), each started OUTSIDE the double
(as the Tollgate image's entrypoint does beside Kong), plus the plugin-server entries
kong.conf would name for them."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Iterable

from .servers import PluginServerEntry

FIXTURE_PLUGINS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures",
                                   "kong_pdk_plugins")


def _version(v: str) -> tuple[int, int]:
    parts = str(v).split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _socket_accepts(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def tollgate_argv() -> list[str]:
    """How to run the ``tollgate`` CLI (the interpreter running the tests, no shell shim)."""
    return [sys.executable, "-m", "tollgate"]


class _Process:
    """A child process with its stderr (and stdout) captured to a file."""

    argv: list[str]
    env: dict[str, str]
    log_path: str
    proc: subprocess.Popen | None = None

    def _spawn(self) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                     env=self.env, start_new_session=True)
        self._log.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _ready(self) -> bool:  # pragma: no cover - overridden
        return True

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv[:4]} exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            if self._ready():
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.argv[:4]} not ready after {timeout}s:\n{self.output()[-3000:]}")

    async def await_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv[:4]} exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            if await asyncio.to_thread(self._ready):
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.argv[:4]} not ready after {timeout}s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the process (nobody restarts it: call ``start``/``restart``)."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.proc.kill()
                self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class TollgateServer(_Process):
    """``tollgate serve`` with a temporary socket directory and free relay/status ports.

    ``entries(kong_version)`` gives the plugin-server entries kong.conf would name: one
    per plugin (``<dir>/<name>.socket``, query ``tollgate dump --plugin NAME``) for 3.9,
    one for all plugins (``<dir>/tollgate.socket``) for 3.8. stderr (the JSON logs) goes
    to ``stderr_path``."""

    def __init__(self, *, plugins_dir: str | None = None, redis_url: str | None = None, log_level: str = "info",
                 extra_args: Iterable[str] = (), env: dict[str, str] | None = None, base_dir: str | None = None):
        self.base_dir = base_dir or tempfile.mkdtemp(prefix="tg-")
        self.socket_dir = os.path.join(self.base_dir, "s")
        os.makedirs(self.socket_dir, exist_ok=True)
        self.plugins_dir = plugins_dir
        self.redis_url = redis_url
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.relay_host = "127.0.0.1"
        self.relay_port = free_port()
        self.status_port = free_port()
        self.stderr_path = os.path.join(self.base_dir, "tollgate.stderr.log")
        self.log_path = self.stderr_path
        self.extra_env = dict(env or {})
        self._names: list[str] | None = None
        self.starts = 0

    @property
    def env(self) -> dict[str, str]:  # type: ignore[override]
        e = dict(os.environ)
        e.update(self.extra_env)
        return e

    @property
    def argv(self) -> list[str]:  # type: ignore[override]
        a = [*tollgate_argv(), "serve", "--socket-dir", self.socket_dir, "--relay-host", self.relay_host,
             "--relay-port", str(self.relay_port), "--log-level", self.log_level]
        if self._supports_status_port():
            a += ["--status-port", str(self.status_port)]
        if self.plugins_dir:
            a += ["--plugins-dir", self.plugins_dir]
        if self.redis_url:
            a += ["--redis-url", self.redis_url]
        return a + self.extra_args

    _status_flag: bool | None = None

    def _supports_status_port(self) -> bool:
        if TollgateServer._status_flag is None:
            try:
                out = subprocess.run([*tollgate_argv(), "serve", "--help"], capture_output=True, text=True,
                                     timeout=30)
                TollgateServer._status_flag = "--status-port" in out.stdout
            except Exception:  # pragma: no cover
                TollgateServer._status_flag = False
        return bool(TollgateServer._status_flag)

    @property
    def relay_url(self) -> str:
        return f"http://{self.relay_host}:{self.relay_port}"

    def dump_argv(self, plugin: str | None = None) -> list[str]:
        a = [*tollgate_argv(), "dump"]
        if plugin:
            a += ["--plugin", plugin]
        if self.plugins_dir:
            a += ["--plugins-dir", self.plugins_dir]
        return a

    def dump(self) -> dict[str, Any]:
        out = subprocess.run(self.dump_argv(), capture_output=True, timeout=60, env=self.env)
        if out.returncode != 0:
            raise RuntimeError(f"tollgate dump failed: {out.stderr.decode()[-2000:]}")
        return json.loads(out.stdout)

    @property
    def plugin_names(self) -> list[str]:
        if self._names is None:
            self._names = [p["Name"] for p in self.dump()["Plugins"]]
        return list(self._names)

    def socket_path(self, plugin: str | None = None) -> str:
        return os.path.join(self.socket_dir, f"{plugin}.socket" if plugin else "tollgate.socket")

    def entries(self, kong_version: str = "3.9", plugins: Iterable[str] | None = None) -> list[PluginServerEntry]:
        names = list(plugins) if plugins is not None else self.plugin_names
        if _version(kong_version) >= (3, 9):
            return [PluginServerEntry(name=n, socket=self.socket_path(n), query_cmd=self.dump_argv(n),
                                      env=self.extra_env or None) for n in names]
        return [PluginServerEntry(name="tollgate", socket=self.socket_path(), query_cmd=self.dump_argv(),
                                  env=self.extra_env or None)]

    def _ready(self) -> bool:
        names = self._names if self._names is not None else None
        if names is None:
            return False
        for n in [*names, None]:
            if not _socket_accepts(self.socket_path(n)):
                return False
        try:
            with urllib.request.urlopen(self.relay_url + "/__tollgate/health", timeout=1) as r:
                return r.status == 200
        except Exception:
            return False

    def start(self, timeout: float = 30.0) -> "TollgateServer":
        _ = self.plugin_names
        self._spawn()
        self.starts += 1
        self.wait_ready(timeout)
        return self

    async def astart(self, timeout: float = 30.0) -> "TollgateServer":
        if self._names is None:
            await asyncio.to_thread(lambda: self.plugin_names)
        self._spawn()
        self.starts += 1
        await self.await_ready(timeout)
        return self

    def restart(self, env: dict[str, str] | None = None, timeout: float = 30.0, sig: int = signal.SIGKILL
                ) -> "TollgateServer":
        """Kill the process (SIGKILL by default) and start it again (with extra env)."""
        self.kill(sig)
        if env is not None:
            self.extra_env.update(env)
        return self.start(timeout)

    async def arestart(self, env: dict[str, str] | None = None, timeout: float = 30.0, sig: int = signal.SIGKILL
                       ) -> "TollgateServer":
        await asyncio.to_thread(self.kill, sig)
        if env is not None:
            self.extra_env.update(env)
        return await self.astart(timeout)

    def stderr_text(self) -> str:
        return self.output()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)


def stock_server_bin() -> str | None:
    """The stock kong-pdk server (``pip install kong-pdk==0.36``), if installed."""
    path = shutil.which("kong-python-pluginserver")
    if path:
        return path
    candidate = os.path.join(os.path.dirname(sys.executable), "kong-python-pluginserver")
    return candidate if os.path.exists(candidate) else None


class StockPdkServer(_Process):
    """``kong-python-pluginserver`` serving the plugins in ``plugins`` (module files of
    ``plugins_dir``) on ``<socket_dir>/<socket_name>``, threads mode, ``--no-lua-style``.
    Its query command is ``--dump-all-plugins`` on a directory holding only those
    plugins (so the FIRST plugin of the dump is the one meant, on Kong 3.9)."""

    def __init__(self, plugins: Iterable[str], *, plugins_dir: str = FIXTURE_PLUGINS_DIR,
                 socket_dir: str | None = None, socket_name: str | None = None, env: dict[str, str] | None = None,
                 mode: str = "threads", name: str | None = None):
        binary = stock_server_bin()
        if binary is None:
            raise RuntimeError("kong-pdk is not installed (pip install kong-pdk==0.36)")
        self.binary = binary
        self.plugins = list(plugins)
        self.name = name or self.plugins[0]
        self.base_dir = tempfile.mkdtemp(prefix="pdk-")
        self.socket_dir = socket_dir or self.base_dir
        self.socket_name = socket_name or f"{self.name}.socket"
        self.dir = os.path.join(self.base_dir, "plugins")
        os.makedirs(self.dir, exist_ok=True)
        for p in self.plugins:
            os.symlink(os.path.join(plugins_dir, f"{p}.py"), os.path.join(self.dir, f"{p}.py"))
        self.extra_env = dict(env or {})
        self.mode = mode
        self.log_path = os.path.join(self.base_dir, "pluginserver.log")

    @property
    def env(self) -> dict[str, str]:  # type: ignore[override]
        e = dict(os.environ)
        e.update(self.extra_env)
        return e

    @property
    def socket(self) -> str:
        return os.path.join(self.socket_dir, self.socket_name)

    @property
    def argv(self) -> list[str]:  # type: ignore[override]
        a = [self.binary, "-d", self.dir, "-p", self.socket_dir, "--socket-name", self.socket_name, "--no-lua-style"]
        if self.mode == "gevent":
            a.append("-g")
        return a

    @property
    def query_cmd(self) -> list[str]:
        return [self.binary, "-d", self.dir, "--dump-all-plugins"]

    def entry(self, *, managed: bool = False) -> PluginServerEntry:
        """The entry for this server (``managed=True``: Kong starts it with start_cmd)."""
        return PluginServerEntry(name=self.name, socket=self.socket, query_cmd=self.query_cmd,
                                 start_cmd=self.argv if managed else None, env=self.extra_env or None)

    def _ready(self) -> bool:
        return _socket_accepts(self.socket)

    def start(self, timeout: float = 30.0) -> "StockPdkServer":
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self._spawn()
        self.wait_ready(timeout)
        return self

    async def astart(self, timeout: float = 30.0) -> "StockPdkServer":
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self._spawn()
        await self.await_ready(timeout)
        return self

    async def arestart(self, env: dict[str, str] | None = None, timeout: float = 30.0) -> "StockPdkServer":
        await asyncio.to_thread(self.kill)
        if env is not None:
            self.extra_env.update(env)
        return await self.astart(timeout)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

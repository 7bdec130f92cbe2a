"""The deployment files, checked without Kong: kong.conf, decK files, compose, image, entrypoint, Make and CI.

These run everywhere (no Docker engine or Kong needed); only the decK checks skip when the `deck` binary is absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .harness import DEMO_KEY, REPO, SIX, host_kong_conf

KONG_CONF = REPO / "kong" / "kong.conf"
DOCKERFILE = REPO / "kong" / "Dockerfile"
ENTRYPOINT = REPO / "kong" / "entrypoint.sh"
COMPOSE = REPO / "docker-compose.yml"
DECLARATIVE_DIR = REPO / "declarative"
SOCKET_DIR = "/usr/local/kong/tollgate"
TOLLGATE_BIN = "/opt/tollgate/bin/tollgate"
RELAY_URL = "http://127.0.0.1:8081"

# Kong bundled plugins the example files may use beside Tollgate's.
BUNDLED_OK = {"key-auth", "basic-auth", "jwt", "acl", "cors", "prometheus", "file-log", "http-log",
              "request-transformer", "response-transformer", "correlation-id", "ip-restriction", "rate-limiting", "tollgate-analytics"}


def parse_kong_conf(text: str) -> dict[str, str]:
    """Active `key = value` lines of a kong.conf (Kong strips `#` comments unless escaped as `\\#`)."""
    conf: dict[str, str] = {}
    for line in text.splitlines():
        line = re.sub(r"(?<!\\)#.*$", "", line).strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key = value line: {line!r}"
        key = key.strip()
        assert key not in conf, f"{key} set twice"
        conf[key] = value.strip().replace("\\#", "#")
    return conf


def parse_size(value: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", value)
    assert m, value
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]


def declarative_files() -> list[Path]:
    return sorted(p for p in DECLARATIVE_DIR.iterdir() if p.suffix in (".yml", ".yaml", ".json"))


def load_example() -> dict:
    return yaml.safe_load((DECLARATIVE_DIR / "kong.yml").read_text())


def iter_routes(doc: dict):
    for service in doc.get("services") or []:
        for route in service.get("routes") or []:
            yield service, route
    for route in doc.get("routes") or []:
        yield None, route


def iter_plugins(doc: dict):
    for plugin in doc.get("plugins") or []:
        yield None, plugin
    for service in doc.get("services") or []:
        for plugin in service.get("plugins") or []:
            yield service, plugin
    for service, route in iter_routes(doc):
        for plugin in route.get("plugins") or []:
            yield route, plugin
    for consumer in doc.get("consumers") or []:
        for plugin in consumer.get("plugins") or []:
            yield consumer, plugin


# ------------------------------------------------------------------------------------------------------------------
# kong.conf
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conf() -> dict[str, str]:
    return parse_kong_conf(KONG_CONF.read_text())


def test_kong_conf_enables_bundled_the_lua_companion_and_exactly_the_six(conf):
    plugins = [p.strip() for p in conf["plugins"].split(",")]
    assert plugins == ["bundled", "tollgate-analytics", *SIX]
    assert (REPO / "kong" / "plugins" / "tollgate-analytics" / "handler.lua").is_file()


def test_kong_conf_one_pluginserver_entry_per_plugin(conf):
    names = [n.strip() for n in conf["pluginserver_names"].split(",")]
    assert names == SIX
    expected: dict[str, str] = {"pluginserver_names": conf["pluginserver_names"]}
    for name in names:
        prefix = "pluginserver_" + name.lower().replace("-", "_")  # Kong's rule for the key prefix
        expected[f"{prefix}_socket"] = f"{SOCKET_DIR}/{name}.socket"
        expected[f"{prefix}_query_cmd"] = f"{TOLLGATE_BIN} dump --plugin {name}"
    actual = {k: v for k, v in conf.items() if k.startswith("pluginserver_")}
    # exactly these keys: in particular no *_start_cmd (it breaks the Admin API's GET / on Kong 3.9.3)
    assert actual == expected
    for key, value in actual.items():
        if key != "pluginserver_names":
            assert value.startswith("/"), f"{key} must be a full path"


def test_kong_conf_db_less_and_bodies_in_memory(conf):
    assert conf["database"] == "off"
    assert conf["declarative_config"] == "/kong/declarative/kong.yml"
    buffer = parse_size(conf["nginx_http_client_body_buffer_size"])
    assert buffer >= 8 * 1024 * 1024
    # every example proxy's max_request_body_size fits in the buffer (bodies stay in memory, never a temp file)
    for _, plugin in iter_plugins(load_example()):
        if plugin["name"] == "tollgate-proxy":
            assert plugin["config"].get("max_request_body_size", 1048576) <= buffer


def test_kong_conf_logs_to_the_container(conf):
    assert conf["proxy_access_log"] == "/dev/stdout"
    assert conf["proxy_error_log"] == "/dev/stderr"
    assert conf["admin_error_log"] == "/dev/stderr"


def test_kong_conf_documents_the_kong_30_38_single_entry():
    commented = {}
    for line in KONG_CONF.read_text().splitlines():
        m = re.match(r"^#\s*(pluginserver_\w+)\s*=\s*(.+)$", line)
        if m:
            commented[m.group(1)] = m.group(2).strip()
    assert commented == {
        "pluginserver_names": "tollgate",
        "pluginserver_tollgate_socket": f"{SOCKET_DIR}/tollgate.socket",
        "pluginserver_tollgate_query_cmd": f"{TOLLGATE_BIN} dump",
    }


def test_host_conf_rewrite_keeps_every_entry(conf):
    text = host_kong_conf(KONG_CONF.read_text(), socket_dir="/tmp/s", tollgate="/x/tollgate",
                          declarative="/tmp/k.yml", proxy=1, admin=2)
    host = parse_kong_conf(text)
    assert host["proxy_listen"] == "127.0.0.1:1" and host["declarative_config"] == "/tmp/k.yml"
    assert host["pluginserver_tollgate_mcp_socket"] == "/tmp/s/tollgate-mcp.socket"
    assert host["pluginserver_tollgate_mcp_query_cmd"] == "/x/tollgate dump --plugin tollgate-mcp"


# ------------------------------------------------------------------------------------------------------------------
# decK files
# ------------------------------------------------------------------------------------------------------------------


deck_required = pytest.mark.skipif(shutil.which("deck") is None, reason="the deck binary is not installed")


@deck_required
@pytest.mark.parametrize("path", declarative_files(), ids=lambda p: p.name)
def test_deck_validate_passes(path):
    done = subprocess.run(["deck", "validate", "-s", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@deck_required
def test_deck_validate_does_reject_a_broken_file(tmp_path):
    """The check above means something: decK 1.4 refuses unknown route fields and dangling references."""
    broken = load_example()
    broken["services"][0]["routes"][0]["no_such_field"] = True
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    done = subprocess.run(["deck", "validate", "-s", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0


def test_declarative_files_exist_and_use_format_3():
    files = declarative_files()
    assert DECLARATIVE_DIR / "kong.yml" in files
    for path in files:
        doc = yaml.safe_load(path.read_text())
        assert doc["_format_version"] == "3.0", path


def test_example_has_a_route_per_plugin_behind_the_relay():
    doc = load_example()
    used = {plugin["name"] for _, plugin in iter_plugins(doc)}
    assert set(SIX) <= used
    assert used <= set(SIX) | BUNDLED_OK, used - set(SIX) - BUNDLED_OK
    for service, route in iter_routes(doc):
        names = {p["name"] for p in route.get("plugins") or []}
        if names & set(SIX):
            assert service is not None and service["url"] == RELAY_URL, route["name"]
            assert route.get("strip_path") is False, route["name"]
        if names & {"tollgate-token-limit", "tollgate-cost-quota", "tollgate-semantic-cache", "tollgate-guardrails"}:
            assert "tollgate-proxy" in names, f"{route['name']}: a policy plugin needs the proxy on its route"
    routes = {route["name"]: route for _, route in iter_routes(doc)}
    assert "/v1/chat" in routes["chat"]["paths"]
    assert {p["name"] for p in routes["limited"]["plugins"]} >= {"key-auth", "tollgate-token-limit"}
    keys = [c["key"] for consumer in doc["consumers"] for c in consumer.get("keyauth_credentials", [])]
    assert DEMO_KEY in keys


def test_example_upstreams_are_compose_services():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    mock_port = services["mock-llm"]["command"][services["mock-llm"]["command"].index("--port") + 1]
    for _, plugin in iter_plugins(load_example()):
        config = plugin.get("config") or {}
        for model in [config.get("model") or {}, *((t.get("model") or {}) for t in config.get("targets") or [])]:
            url = (model.get("options") or {}).get("upstream_url")
            if url:
                assert url.startswith(f"http://mock-llm:{mock_port}/"), url
        redis_url = (config.get("redis") or {}).get("url")
        if redis_url:
            assert redis_url.startswith("redis://redis:6379"), redis_url


def test_query_command_of_each_entry_names_its_plugin_first(conf):
    """What Kong 3.9 runs per entry: only JSON on stdout, and the entry's own plugin FIRST (the one registered)."""
    for name in SIX:
        cmd = conf[f"pluginserver_{name.replace('-', '_')}_query_cmd"].split()
        assert cmd[0] == TOLLGATE_BIN
        done = subprocess.run([sys.executable, "-m", "tollgate", *cmd[1:]], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        document = json.loads(done.stdout)
        assert document["Plugins"][0]["Name"] == name
        assert re.fullmatch(r"\d+\.\d+\.\d+", document["Plugins"][0]["Version"])


# ------------------------------------------------------------------------------------------------------------------
# compose and image
# ------------------------------------------------------------------------------------------------------------------


def test_compose_stack(conf):
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert set(services) >= {"kong", "redis", "mock-llm"}
    kong = services["kong"]
    assert kong["build"]["context"] == "." and kong["build"]["dockerfile"] == "kong/Dockerfile"
    assert (REPO / kong["build"]["dockerfile"]).exists()
    assert {"redis", "mock-llm"} <= set(kong["depends_on"])
    assert all(dep["condition"] == "service_healthy" for dep in kong["depends_on"].values())
    for name in ("kong", "redis", "mock-llm"):
        assert services[name].get("healthcheck"), f"{name} has no healthcheck"
    assert services["redis"]["image"].startswith("redis:7")
    assert any(str(p).endswith(":8000") for p in kong["ports"]) and any(str(p).endswith(":8001") for p in kong["ports"])
    env = kong["environment"]
    assert env["KONG_DATABASE"] == "off"
    assert env["KONG_DECLARATIVE_CONFIG"] == conf["declarative_config"]
    assert env["TOLLGATE_SOCKET_DIR"] == SOCKET_DIR
    assert f"http://{env['TOLLGATE_RELAY_HOST']}:{env['TOLLGATE_RELAY_PORT']}" == RELAY_URL
    mounts = {v.split(":")[1]: v.split(":")[0] for v in kong["volumes"]}
    assert mounts[os.path.dirname(conf["declarative_config"])] == "./declarative"
    mock = services["mock-llm"]
    assert "tollgate-mock-llm" in " ".join(mock["entrypoint"])
    assert mock["command"][:2] == ["--host", "0.0.0.0"]


def test_dockerfile(conf):
    text = DOCKERFILE.read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert re.search(r"(?m)^ARG KONG_IMAGE=kong:3\.9$", text) and "FROM ${KONG_IMAGE}" in instructions
    users = [line for line in instructions if line.startswith("USER ")]
    assert users[0] == "USER root" and users[-1] == "USER kong"
    assert "COPY pyproject.toml README.md /tmp/tollgate-src/" in instructions
    assert "COPY plugins/ /tmp/tollgate-src/plugins/" in instructions
    assert "COPY kong/kong.conf /etc/kong/kong.conf" in instructions
    assert "python3 -m venv /opt/tollgate" in text
    assert f"install -d -o kong -g 0 -m 0770 {SOCKET_DIR}" in text
    assert 'ENTRYPOINT ["/usr/local/bin/tollgate-entrypoint.sh"]' in instructions
    assert 'CMD ["kong", "docker-start"]' in instructions
    assert "TIKTOKEN_CACHE_DIR=" in text and "tokens.warm()" in text
    # the local embeddings run in int8, their model built at image build time, not by the first request
    assert "[local-embeddings-int8]" in text and "TOLLGATE_MODEL_CACHE_DIR=" in text and "minilm.load()" in text
    # the query commands of kong.conf point into the image's venv
    assert all(v.startswith(TOLLGATE_BIN + " ") for k, v in conf.items() if k.endswith("_query_cmd"))
    for path in ("pyproject.toml", "plugins"):
        assert (REPO / path).exists()


# ------------------------------------------------------------------------------------------------------------------
# entrypoint.sh, with a fake Tollgate and a fake Kong entrypoint
# ------------------------------------------------------------------------------------------------------------------

FAKE_TOLLGATE = """\
#!{python}
import os, socket, sys, time
d = os.environ["TOLLGATE_SOCKET_DIR"]
counter = os.environ["FAKE_COUNTER"]
n = (int(open(counter).read()) if os.path.exists(counter) else 0) + 1
open(counter, "w").write(str(n))
assert sys.argv[1:] == ["serve", "--socket-dir", d], sys.argv
if os.environ.get("FAKE_NEVER_READY"):
    time.sleep(60)
keep = []
for name in os.environ["TOLLGATE_SOCKETS"].split():
    path = os.path.join(d, name + ".socket")
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.listen()
    keep.append(s)
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", int(os.environ["TOLLGATE_RELAY_PORT"])))
t.listen()
time.sleep(0.8 if n == 1 else 60)
sys.exit(3)  # the first run "crashes"
"""

FAKE_KONG = """\
#!{python}
import json, os, stat, sys, time
d = os.environ["TOLLGATE_SOCKET_DIR"]
def is_sock(p):
    try:
        return stat.S_ISSOCK(os.stat(p).st_mode)
    except OSError:
        return False
ready = all(is_sock(os.path.join(d, n + ".socket")) for n in os.environ["TOLLGATE_SOCKETS"].split())
counter = os.environ["FAKE_COUNTER"]
count = lambda: int(open(counter).read()) if os.path.exists(counter) else 0
deadline = time.time() + float(os.environ.get("FAKE_WAIT_RESTART", "0"))
while time.time() < deadline and count() < 2:
    time.sleep(0.1)
json.dump({{"argv": sys.argv[1:], "ready": ready, "starts": count()}}, open(os.environ["FAKE_KONG_OUT"], "w"))
"""


@pytest.fixture
def fakes(tmp_path):
    from .harness import free_port

    tollgate = tmp_path / "tollgate"
    tollgate.write_text(FAKE_TOLLGATE.format(python=sys.executable))
    kong = tmp_path / "docker-entrypoint.sh"
    kong.write_text(FAKE_KONG.format(python=sys.executable))
    for f in (tollgate, kong):
        f.chmod(0o755)
    sockets = tmp_path / "sockets"
    env = dict(
        os.environ,
        TOLLGATE_BIN=str(tollgate),
        KONG_ENTRYPOINT=str(kong),
        TOLLGATE_SOCKET_DIR=str(sockets),
        TOLLGATE_RELAY_PORT=str(free_port()),
        TOLLGATE_SOCKETS=" ".join(["tollgate", *SIX]),
        FAKE_COUNTER=str(tmp_path / "starts"),
        FAKE_KONG_OUT=str(tmp_path / "kong.json"),
    )
    return tmp_path, env


def run_entrypoint(env: dict, *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    """Run the entrypoint until the (fake) Kong it execs exits; its output goes to files, not pipes, because the
    supervisor and its children keep inherited descriptors open after Kong is gone."""
    out_dir = Path(env["FAKE_KONG_OUT"]).parent
    started = time.monotonic()
    with open(out_dir / "stdout", "w") as out, open(out_dir / "stderr", "w") as err:
        proc = subprocess.Popen(["bash", str(ENTRYPOINT), *args], env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        finally:
            # the supervisor (and its fake Tollgate) outlive the exec'd "Kong": end the group we started, then make
            # sure of it (a child forked while the first signal was in flight would survive it)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                time.sleep(0.3)
    elapsed = time.monotonic() - started
    result = subprocess.CompletedProcess(proc.args, rc, (out_dir / "stdout").read_text(),
                                         (out_dir / "stderr").read_text())
    return result, elapsed


def test_entrypoint_syntax():
    subprocess.run(["bash", "-n", str(ENTRYPOINT)], check=True)
    assert os.access(ENTRYPOINT, os.X_OK)


def test_entrypoint_starts_tollgate_waits_then_execs_kong_and_restarts_tollgate(fakes):
    tmp, env = fakes
    sockets = Path(env["TOLLGATE_SOCKET_DIR"])
    sockets.mkdir()
    (sockets / "tollgate-proxy.socket").write_text("stale file from a previous run")
    result, _ = run_entrypoint(dict(env, FAKE_WAIT_RESTART="15"), "kong", "docker-start")
    assert result.returncode == 0, result.stderr
    seen = json.loads((tmp / "kong.json").read_text())
    assert seen["argv"] == ["kong", "docker-start"]
    assert seen["ready"] is True  # Kong was started only once every socket was a live socket
    assert seen["starts"] >= 2  # the crashed Tollgate was started again
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(entry["level"] == "error" and "status 3" in entry["msg"] for entry in lines)
    assert any("ready" in entry["msg"] for entry in lines)


def test_entrypoint_other_commands_go_straight_to_kong(fakes):
    tmp, env = fakes
    result, _ = run_entrypoint(env, "kong", "health")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp / "kong.json").read_text())["argv"] == ["kong", "health"]
    assert not (tmp / "starts").exists()  # Tollgate was not started


def test_entrypoint_starts_kong_anyway_when_tollgate_is_not_ready(fakes):
    tmp, env = fakes
    result, elapsed = run_entrypoint(dict(env, FAKE_NEVER_READY="1", TOLLGATE_READY_TIMEOUT="1"), "kong",
                                     "docker-start")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp / "kong.json").read_text())["ready"] is False
    assert elapsed < 15
    assert "not ready" in result.stderr


# ------------------------------------------------------------------------------------------------------------------
# Makefile and CI script
# ------------------------------------------------------------------------------------------------------------------


def test_ci_script_is_strict_bash():
    ci = REPO / ".ci" / "run"
    subprocess.run(["bash", "-n", str(ci)], check=True)
    text = ci.read_text()
    assert "set -euo pipefail" in text
    assert "apt-get update" in text and "apt-get install -y" in text
    assert re.search(r"(?m)^packages=\(.*\bredis-server\b.*\)$", text)
    assert re.search(r"(?m)^packages=\(.*\bdeck\b.*\)$", text)
    assert "make test" in text


def test_files_the_docs_cite_exist():
    """README, the decK example, kong.conf and the image name test files and scripts: each must be there."""
    cited = set()
    for doc in (REPO / "README.md", DECLARATIVE_DIR / "kong.yml", KONG_CONF, DOCKERFILE, ENTRYPOINT, COMPOSE):
        cited |= {(doc.name, path) for path in re.findall(
            r"(?<![\w/.])((?:tests|scripts|bench|kong|declarative|plugins)/[\w./-]*\.(?:py|sh|ya?ml|conf|md|jsonl))",
            doc.read_text())}
    missing = sorted((doc, path) for doc, path in cited if not (REPO / path).exists()
                     and not path.startswith("kong/runloop"))  # Kong's own source, cited by path
    assert missing == []

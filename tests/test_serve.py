"""`tollgate serve` as a user meets it: one clear line when it cannot start, nothing left behind, private sockets."""

from __future__ import annotations

import dataclasses
import grp
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tollgate.cli import ENV_ONLY

from tests.redis_server import free_port
from tollgate.settings import Settings


def serve(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tollgate", "serve", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})), stdin=subprocess.DEVNULL)


def ports() -> list[str]:
    return ["--relay-port", str(free_port()), "--status-port", str(free_port())]


def one_clear_line(done: subprocess.CompletedProcess, says: str) -> None:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tollgate serve: ") and says in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_a_taken_port_is_one_line_and_leaves_no_socket(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve("--socket-dir", str(tmp_path), "--relay-port", str(port), "--status-port", str(free_port()))
    one_clear_line(done, f"cannot listen on 127.0.0.1:{port} for the relay (--relay-port / TOLLGATE_RELAY_PORT)")
    assert list(tmp_path.iterdir()) == []


def test_a_taken_status_port_is_named_too(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve("--socket-dir", str(tmp_path), "--relay-port", str(free_port()), "--status-port", str(port))
    one_clear_line(done, f"127.0.0.1:{port} for the status listener")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_socket_directory_is_one_line_and_is_not_created(tmp_path):
    missing = tmp_path / "no" / "such"
    one_clear_line(serve("--socket-dir", str(missing), *ports()), f"the socket directory {missing} does not exist")
    assert not missing.exists()


def test_a_missing_plugins_directory_is_one_line(tmp_path):
    done = serve("--socket-dir", str(tmp_path), "--plugins-dir", str(tmp_path / "nope"), *ports())
    one_clear_line(done, "the plugins directory")


def test_a_bad_environment_value_is_one_line(tmp_path):
    done = serve("--socket-dir", str(tmp_path), env={"TOLLGATE_STATUS_PORT": "eighty"})
    one_clear_line(done, "TOLLGATE_STATUS_PORT='eighty' is not a valid status port")


def test_a_live_process_keeps_its_sockets_and_a_stale_socket_is_replaced(tollgate_process, tmp_path):
    running = tollgate_process()
    before = {p: os.stat(p).st_ino for p in Path(running.socket_dir).iterdir()}
    done = serve("--socket-dir", running.socket_dir, *ports())
    one_clear_line(done, "is served by a running process")
    assert {p: os.stat(p).st_ino for p in Path(running.socket_dir).iterdir()} == before
    with socket.socket(socket.AF_UNIX) as probe:
        probe.connect(running.socket_path("tollgate-proxy"))  # still the running process's

    # a socket file left by a dead process (nobody answers on it) is simply replaced
    stale = tmp_path / "tollgate-proxy.socket"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(stale))
    dead.close()
    fresh = tollgate_process(start=False)
    fresh.socket_dir = str(tmp_path)
    fresh.start()
    with socket.socket(socket.AF_UNIX) as probe:
        probe.connect(str(stale))


def _a_group() -> tuple[str, int]:
    """A group this user may give its files: any as root, else one of its own."""
    gid = 1 if os.geteuid() == 0 else os.getgroups()[-1]
    return grp.getgrgid(gid).gr_name, gid


def test_sockets_are_owner_and_group_only_with_the_group_and_mode_asked_for(tollgate_process):
    default = tollgate_process()
    for path in Path(default.socket_dir).iterdir():
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660, path  # srw-rw----: nobody else may act as Kong
    name, gid = _a_group()
    chosen = tollgate_process(extra_args=("--socket-group", name), env={"TOLLGATE_SOCKET_MODE": "0600"})
    paths = list(Path(chosen.socket_dir).iterdir())
    assert len(paths) == 7  # one per plugin and the shared one
    for path in paths:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and os.stat(path).st_gid == gid, path


def test_an_unknown_group_is_one_line(tmp_path):
    done = serve("--socket-dir", str(tmp_path), "--socket-group", "no-such-group-here", *ports())
    one_clear_line(done, "no group named 'no-such-group-here'")
    assert list(tmp_path.iterdir()) == []


def test_help_shows_every_flag_with_its_default_and_variable():
    done = subprocess.run([sys.executable, "-m", "tollgate", "serve", "--help"], capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")})
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for item in dataclasses.fields(Settings):
        if item.name in ENV_ONLY:             # secrets: never a flag, never shown
            assert "--" + item.name.replace("_", "-") not in done.stdout
            continue
        flag, variable = "--" + item.name.replace("_", "-"), "TOLLGATE_" + item.name.upper()
        assert flag in text and f"[env {variable}; default: " in text, item.name
    assert "--relay-port PORT port of the relay [env TOLLGATE_RELAY_PORT; default: 8081]" in text
    assert "[env TOLLGATE_SOCKET_DIR; default: /usr/local/kong/tollgate]" in text
    assert "[env TOLLGATE_SOCKET_MODE; default: 0660]" in text

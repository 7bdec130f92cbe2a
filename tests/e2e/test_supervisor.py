"""kong/entrypoint.sh's supervisor with the real Tollgate process: a frozen process is found and replaced.

The entrypoint runs as in the image (`kong docker-start`), with a stand-in for Kong's own entrypoint (it only
sleeps) and `tollgate serve` from this checkout; sockets, relay and status listener on a temp dir and free ports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .harness import REPO, free_port

ENTRYPOINT = REPO / "kong" / "entrypoint.sh"


def health(port: int, timeout: float = 0.5) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout) as answer:
            return json.loads(answer.read())
    except (OSError, ValueError):
        return None


def wait_for(predicate, timeout: float, period: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period)
    return None


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def supervised(tmp_path: Path):
    """The entrypoint running the real `tollgate serve`; yields (status port, socket dir, log file)."""
    tollgate = tmp_path / "tollgate"
    tollgate.write_text(f"#!/bin/sh\nexec {sys.executable} -m tollgate \"$@\"\n")
    kong = tmp_path / "docker-entrypoint.sh"
    kong.write_text("#!/bin/sh\nexec sleep 600\n")
    for script in (tollgate, kong):
        script.chmod(0o755)
    status_port = free_port()
    sockets = tmp_path / "sockets"
    env = dict(os.environ, TOLLGATE_BIN=str(tollgate), KONG_ENTRYPOINT=str(kong), TOLLGATE_SOCKET_DIR=str(sockets),
               TOLLGATE_RELAY_PORT=str(free_port()), TOLLGATE_STATUS_PORT=str(status_port),
               TOLLGATE_LOG_LEVEL="warning")
    log = tmp_path / "entrypoint.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["bash", str(ENTRYPOINT), "kong", "docker-start"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield status_port, sockets, log
    finally:
        # the supervisor and Tollgate outlive the exec'd stand-in: end the whole group (SIGCONT first, so that a
        # still-stopped process takes its TERM)
        for sig in (signal.SIGCONT, signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(0.3)
        proc.wait(5)


def test_a_frozen_tollgate_is_replaced_within_10_seconds(supervised):
    status_port, sockets, log = supervised
    first = wait_for(lambda: health(status_port), timeout=60)
    assert first and first["status"] == "ok", log.read_text()
    old_pid = first["pid"]
    # let the health watch see it answer (a process is only judged once it has answered)
    time.sleep(1.5)

    os.kill(old_pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    assert health(status_port, timeout=0.5) is None  # frozen: the listener accepts, nothing answers

    replaced = wait_for(lambda: (h := health(status_port)) and h["pid"] != old_pid and h, timeout=15)
    elapsed = time.monotonic() - frozen_at
    assert replaced, f"no new process after 15 s:\n{log.read_text()}"
    print(f"frozen process replaced; the new one answered after {elapsed:.1f}s")
    assert elapsed < 10, f"a new process answered only after {elapsed:.1f}s"
    assert not alive(old_pid)  # the frozen process was killed, not left holding connections
    # the new process serves the plugin sockets again
    assert (sockets / "tollgate-proxy.socket").is_socket()
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith('{"time"')]
    assert any("health probes" in e["msg"] and str(old_pid) in e["msg"] for e in entries), log.read_text()


def test_a_healthy_tollgate_is_left_alone(supervised):
    status_port, _, log = supervised
    first = wait_for(lambda: health(status_port), timeout=60)
    assert first, log.read_text()
    time.sleep(4)  # several probe rounds
    assert health(status_port)["pid"] == first["pid"]
    assert "killing" not in log.read_text()

"""kong/entrypoint.sh's supervisor with the real Tollgate process: a frozen process is found and replaced.

The entrypoint runs as in the image (`kong docker-start`), with a stand-in for Kong's own entrypoint (it only
sleeps) and `tollgate serve` from this checkout; sockets, relay and status listener on a temp dir and free ports.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.harness.supervisor import Supervised

from .harness import free_port


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def supervised(tmp_path: Path):
    """The entrypoint running the real `tollgate serve`; yields (status port, socket dir, log file)."""
    status_port = free_port()
    sockets = tmp_path / "sockets"
    with Supervised(tmp_path, socket_dir=sockets, relay_port=free_port(), status_port=status_port) as tollgate:
        yield tollgate, sockets, tollgate.log


def test_a_frozen_tollgate_is_replaced_within_10_seconds(supervised):
    tollgate, sockets, log = supervised
    first = tollgate.wait_healthy(60)
    assert first and first["status"] == "ok", log.read_text()
    old_pid = first["pid"]
    # let the health watch see it answer (a process is only judged once it has answered)
    time.sleep(1.5)

    os.kill(old_pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    assert tollgate.health(timeout=0.5) is None  # frozen: the listener accepts, nothing answers

    replaced = tollgate.wait_healthy(15, not_pid=old_pid)
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
    tollgate, _, log = supervised
    first = tollgate.wait_healthy(60)
    assert first, log.read_text()
    time.sleep(4)  # several probe rounds
    assert tollgate.health()["pid"] == first["pid"]
    assert "killing" not in log.read_text()

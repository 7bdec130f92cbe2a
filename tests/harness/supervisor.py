"""kong/entrypoint.sh's supervisor running the real ``tollgate serve``, as in the image (``kong docker-start``).

A stand-in for Kong's own entrypoint only sleeps; sockets, relay and status listener go to the given directory and
ports. `health` reads the status listener's /health (the pid tells a restarted process from the old one)::

    with Supervised(tmp_path, env={...}) as tollgate:
        first = tollgate.wait_healthy(60)
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
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "kong" / "entrypoint.sh"


def wait_for(predicate: Callable[[], Any], timeout: float, period: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period)
    return None


class Supervised:
    def __init__(self, directory: Path, *, socket_dir: Path, relay_port: int, status_port: int,
                 env: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.socket_dir = socket_dir
        self.status_port = status_port
        self.log = directory / "entrypoint.log"
        self._env = dict(os.environ, TOLLGATE_SOCKET_DIR=str(socket_dir), TOLLGATE_RELAY_PORT=str(relay_port),
                         TOLLGATE_STATUS_PORT=str(status_port), TOLLGATE_LOG_LEVEL="warning", **(env or {}))
        self._proc: subprocess.Popen[bytes] | None = None

    def health(self, timeout: float = 0.5) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}/health", timeout=timeout) as answer:
                return json.loads(answer.read())
        except (OSError, ValueError):
            return None

    def wait_healthy(self, timeout: float, not_pid: int | None = None) -> dict | None:
        """/health once it answers (from a process other than ``not_pid``), or None after ``timeout``."""
        return wait_for(lambda: (h := self.health()) and h.get("pid") != not_pid and h, timeout)

    def __enter__(self) -> Supervised:
        tollgate = self.directory / "tollgate"
        tollgate.write_text(f"#!/bin/sh\nexec {sys.executable} -m tollgate \"$@\"\n")
        kong = self.directory / "docker-entrypoint.sh"
        kong.write_text("#!/bin/sh\nexec sleep 600\n")
        for script in (tollgate, kong):
            script.chmod(0o755)
        env = dict(self._env, TOLLGATE_BIN=str(tollgate), KONG_ENTRYPOINT=str(kong))
        with open(self.log, "w") as out:
            self._proc = subprocess.Popen(["bash", str(ENTRYPOINT), "kong", "docker-start"], env=env, stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def __exit__(self, *exc: object) -> None:
        # the supervisor and Tollgate outlive the exec'd stand-in: end the whole group (SIGCONT first, so that a
        # still-stopped process takes its TERM)
        assert self._proc is not None
        for sig in (signal.SIGCONT, signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self._proc.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(0.3)
        self._proc.wait(5)

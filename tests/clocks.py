"""Clocks tests move instead of waiting: in the test process, and in a ``tollgate serve`` process
through a file that the test-only clock plugin (tests/fixtures/clock_plugin/) makes its runtime read."""

from __future__ import annotations

import os

CLOCK_PLUGIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "clock_plugin")
EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeClock:
    def __init__(self, now: float = EPOCH) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def set(self, now: float) -> None:
        self.now = now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FileClock(FakeClock):
    """A fake clock a ``tollgate serve`` process reads from a file (see clock_plugin/)."""

    def __init__(self, path: str, now: float = EPOCH) -> None:
        self.path = path
        super().__init__(now)
        self.set(now)

    def set(self, now: float) -> None:
        self.now = now
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(repr(now))
        os.replace(tmp, self.path)

    def advance(self, seconds: float) -> None:
        self.set(self.now + seconds)

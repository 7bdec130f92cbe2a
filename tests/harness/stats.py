"""Counters for benchmarks: RPC round trips (one call = one round trip) and PDK calls,
per request and per plugin / phase."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestStats:
    request_id: str
    method: str
    path: str
    worker: int
    started: float = field(default_factory=time.time)
    finished: float | None = None
    route: str | None = None
    status: int | None = None
    #: RPC round trips of this request (access, response and the log timer)
    round_trips: int = 0
    by_plugin: Counter = field(default_factory=Counter)
    by_phase: Counter = field(default_factory=Counter)  # (plugin, phase) -> round trips
    rpc_methods: Counter = field(default_factory=Counter)  # "plugin.Step"... -> count
    pdk_calls: Counter = field(default_factory=Counter)  # (plugin, "kong.x.y") -> count
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (plugin, phase, error)

    @property
    def pdk_call_count(self) -> int:
        return sum(self.pdk_calls.values())


@dataclass
class Stats:
    requests: list[RequestStats] = field(default_factory=list)
    total_round_trips: int = 0
    by_plugin: Counter = field(default_factory=Counter)
    by_phase: Counter = field(default_factory=Counter)
    rpc_methods: Counter = field(default_factory=Counter)
    instances_started: int = 0
    keep_requests: int = 100_000
    #: wall time in external plugins' phases, and in it the time spent waiting for the plugin server's replies
    #: (from writing a message to reading its answer): the rest is the double's own work (bench/mcp.py)
    phase_seconds: float = 0.0
    rpc_wait_seconds: float = 0.0

    def reset(self) -> None:
        self.requests.clear()
        self.total_round_trips = 0
        self.by_plugin.clear()
        self.by_phase.clear()
        self.rpc_methods.clear()
        self.instances_started = 0
        self.phase_seconds = self.rpc_wait_seconds = 0.0

    @property
    def last(self) -> RequestStats | None:
        return self.requests[-1] if self.requests else None

    def find(self, request_id: str) -> RequestStats | None:
        return next((r for r in self.requests if r.request_id == request_id), None)

    def round_trips_per_request(self) -> float:
        return self.total_round_trips / len(self.requests) if self.requests else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "requests": len(self.requests),
            "round_trips": self.total_round_trips,
            "round_trips_per_request": self.round_trips_per_request(),
            "by_plugin": dict(self.by_plugin),
            "by_phase": {f"{p}:{ph}": n for (p, ph), n in self.by_phase.items()},
            "rpc_methods": dict(self.rpc_methods),
        }

    # ------------------------------------------------------------------ hooks

    def _new_request(self, rs: RequestStats) -> None:
        self.requests.append(rs)
        if len(self.requests) > self.keep_requests:
            del self.requests[: len(self.requests) - self.keep_requests]

    def _count_call(self, info: Any, method: str) -> None:
        self.total_round_trips += 1
        self.by_plugin[info.plugin] += 1
        self.by_phase[(info.plugin, info.phase)] += 1
        self.rpc_methods[method] += 1
        req = getattr(info, "request", None)
        rs = getattr(req, "stats", None) if req is not None else None
        if rs is not None:
            rs.round_trips += 1
            rs.by_plugin[info.plugin] += 1
            rs.by_phase[(info.plugin, info.phase)] += 1
            rs.rpc_methods[method] += 1

    def _count_pdk(self, req: Any, plugin: str, phase: str, method: str) -> None:
        rs = getattr(req, "stats", None)
        if rs is not None:
            rs.pdk_calls[(plugin, method)] += 1

    def _count_failure(self, req: Any, plugin: str, phase: str, error: str) -> None:
        rs = getattr(req, "stats", None)
        if rs is not None:
            rs.failures.append((plugin, phase, error))

"""One JSON audit record per MCP request, and per-tool Prometheus counters.

The record says who did what where and how it ended: method, tool / prompt / resource, consumer, upstream, HTTP
status, JSON-RPC error code, latency. Arguments and results appear only with ``logging.log_payloads``; credentials
never do (the log formatter scrubs known secrets as well).

The counters are plain numbers, made into Prometheus samples only when the status listener is scraped
(`Tallies`): a prometheus_client child takes a lock per increment and walks a histogram's buckets in Python, which
cost more than the rest of the record on every call.
"""

from __future__ import annotations

import bisect
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from ... import log, metrics

logger = log.get("mcp.audit")

LATENCY_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, 30000)     # ms
_CALL_LABELS = ("route", "method", "name", "outcome")
_LATENCY_LABELS = ("route", "method")


class Tallies:
    """``tollgate_mcp_requests_total`` (by route, method, name and outcome) and ``tollgate_mcp_latency_ms`` (by
    route and method), counted in dicts by the event loop and read by the registry (a collector)."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str, str, str], int] = {}
        # (route, method) -> [count in each bucket (the last one over every bound), sum of the latencies]
        self.latency: dict[tuple[str, str], list[float]] = {}

    def add(self, key: tuple[str, str, str, str], elapsed_ms: float) -> None:
        self.calls[key] = self.calls.get(key, 0) + 1
        where = key[:2]
        counts = self.latency.get(where)
        if counts is None:
            counts = self.latency[where] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        counts[bisect.bisect_left(LATENCY_BUCKETS, elapsed_ms)] += 1
        counts[-1] += elapsed_ms

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily("tollgate_mcp_requests", "", labels=_CALL_LABELS),
                HistogramMetricFamily("tollgate_mcp_latency_ms", "", labels=_LATENCY_LABELS)]

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily("tollgate_mcp_requests", "MCP requests by method, tool and outcome",
                                    labels=_CALL_LABELS)
        for key, count in list(self.calls.items()):      # a snapshot: the scrape may run beside the event loop
            calls.add_metric(key, count)
        yield calls
        latency = HistogramMetricFamily("tollgate_mcp_latency_ms", "MCP request latency through the gateway in ms",
                                        labels=_LATENCY_LABELS)
        for where, counts in list(self.latency.items()):
            counts = list(counts)
            cumulative, buckets = 0.0, []
            for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), counts):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric(where, buckets, sum_value=counts[-1])
        yield latency


tallies = Tallies()
metrics.REGISTRY.register(tallies)

MAX_NAMES = 1000
_names: set[str] = set()


def _label(name: str | None) -> str:
    """A tool name as a metric label. Only routed names, and at most `MAX_NAMES` of them: names clients make up
    must not grow the series without bound."""
    if not name:
        return ""
    if name in _names:
        return name
    if len(_names) < MAX_NAMES:
        _names.add(name)
        return name
    return "other"


@dataclass(slots=True)
class Record:
    method: str
    route: str | None
    consumer: str | None
    session: bool
    started: float = field(default_factory=time.perf_counter)
    name: str | None = None
    upstream: str | None = None
    status: int = 200
    error_code: int | None = None
    arguments: Any = None
    result: Any = None

    def finish(self, log_statistics: bool, log_payloads: bool) -> None:
        elapsed = (time.perf_counter() - self.started) * 1000
        outcome = "ok" if self.error_code is None else str(self.error_code)
        tallies.add((self.route or "", self.method, _label(self.name if self.upstream else None), outcome), elapsed)
        if not log_statistics:
            return
        fields: dict[str, Any] = {"method": self.method, "name": self.name, "consumer": self.consumer,
                                  "route_id": self.route, "upstream": self.upstream, "status": self.status,
                                  "error_code": self.error_code, "latency_ms": round(elapsed, 3),
                                  "session": self.session}
        if log_payloads:
            fields["arguments"] = self.arguments
            fields["result"] = self.result
        log.event(logger, "mcp request", logging.INFO, **fields)

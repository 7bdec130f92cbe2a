"""One JSON audit record per MCP request, and per-tool Prometheus counters.

The record says who did what where and how it ended: method, tool / prompt / resource, consumer, upstream, HTTP
status, JSON-RPC error code, latency. Arguments and results appear only with ``logging.log_payloads``; credentials
never do (the log formatter scrubs known secrets as well).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Histogram

from ... import log, metrics

logger = log.get("mcp.audit")

calls_total = Counter("tollgate_mcp_requests_total", "MCP requests by method, tool and outcome",
                      ("route", "method", "name", "outcome"), registry=metrics.REGISTRY)
latency_ms = Histogram("tollgate_mcp_latency_ms", "MCP request latency through the gateway in ms",
                       ("route", "method"), buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, 30000),
                       registry=metrics.REGISTRY)


MAX_NAMES = 1000
_names: set[str] = set()
_counters: dict[tuple[str, str, str, str], Any] = {}     # label values -> counter child: labels() costs per call
_histograms: dict[tuple[str, str], Any] = {}


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


@dataclass
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
        route = self.route or ""
        key = (route, self.method, _label(self.name if self.upstream else None), outcome)
        counter = _counters.get(key)
        if counter is None:
            counter = _counters[key] = calls_total.labels(*key)
        counter.inc()
        histogram = _histograms.get(key[:2])
        if histogram is None:
            histogram = _histograms[key[:2]] = latency_ms.labels(*key[:2])
        histogram.observe(elapsed)
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

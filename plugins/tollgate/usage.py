"""Who used what, when: an in-process record of the relay's requests in one-minute buckets.

Prometheus counters only grow, so they cannot say what happened in the last hour per consumer. This record
can: each request adds to one row of its minute, keyed by route, consumer, provider, model, cache status and
outcome (served, refused, blocked, error). The relay's hot path pays two dict lookups and a few additions;
the dashboard and ``tollgate usage`` sum the rows of the minutes they are asked about. Latency and time to
first token are kept as small log-scale histograms per row, so any range still gives p50 and p95.

Memory is bounded twice: minutes older than the retention are dropped, and a minute holds at most
``max_rows`` distinct keys (further keys fold into one row whose consumer is ``OTHER``).
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Iterator, NamedTuple

BUCKET_SECONDS = 60
OTHER = "(other)"

# Histogram bucket upper bounds in ms: 1 ms to ~10 min in steps of 25% (so a percentile is within ~12%).
EDGES: tuple[float, ...] = tuple(1.25 ** i for i in range(61))


class Key(NamedTuple):
    route: str
    consumer: str
    provider: str
    model: str
    cache_status: str
    outcome: str      # "ok", "refused:<plugin>:<reason>", "blocked:<plugin>:<rule>", "error:<status>"


class Row:
    """The sums of one key in one minute."""

    __slots__ = ("requests", "prompt_tokens", "completion_tokens", "cost", "saved_prompt_tokens",
                 "saved_completion_tokens", "saved_cost", "latency", "ttft")

    def __init__(self) -> None:
        self.requests = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0
        self.saved_prompt_tokens = 0
        self.saved_completion_tokens = 0
        self.saved_cost = 0.0
        self.latency: list[int] | None = None
        self.ttft: list[int] | None = None


def observe(histogram: list[int] | None, value: float) -> list[int]:
    if histogram is None:
        histogram = [0] * (len(EDGES) + 1)
    histogram[bisect.bisect_left(EDGES, value)] += 1
    return histogram


def merge(into: list[int] | None, other: list[int] | None) -> list[int] | None:
    if other is None:
        return into
    if into is None:
        return list(other)
    for i, count in enumerate(other):
        into[i] += count
    return into


def percentile(histogram: list[int] | None, q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram, as the geometric middle of its bucket; None when empty."""
    if not histogram:
        return None
    total = sum(histogram)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            upper = EDGES[i] if i < len(EDGES) else EDGES[-1]
            lower = EDGES[i - 1] if i > 0 else 0.0
            return math.sqrt(lower * upper) if lower else upper
    return None  # pragma: no cover - the loop always reaches the rank


class UsageRecord:
    """Minute buckets of request rows; ``add`` is the relay's, ``rows`` the readers'."""

    def __init__(self, retention_seconds: float = 24 * 3600, max_rows: int = 5000):
        self.retention_seconds = retention_seconds
        self.max_rows = max_rows
        self._minutes: dict[int, dict[Any, Row]] = {}
        self._newest = -1
        self._current_minute = -1
        self._current: dict[Any, Row] = {}

    def row(self, at: float, key: tuple[str, str, str, str, str, str]) -> Row:
        """The row of ``key`` (a ``Key`` or the plain tuple of its fields) in the minute containing ``at``."""
        minute = int(at // BUCKET_SECONDS)
        bucket = self._current if minute == self._current_minute else self._bucket(minute)
        row = bucket.get(key)
        if row is None:
            if len(bucket) >= self.max_rows:
                key = (*key[:1], OTHER, *key[2:])
                row = bucket.get(key)
            if row is None:
                row = bucket[key] = Row()
        return row

    def _bucket(self, minute: int) -> dict[Any, Row]:
        bucket = self._minutes.get(minute)
        if bucket is None:
            bucket = self._minutes[minute] = {}
            if minute > self._newest:
                self._newest = minute
                oldest = minute - int(self.retention_seconds // BUCKET_SECONDS)
                for old in [m for m in self._minutes if m < oldest]:
                    del self._minutes[old]
        if minute == self._newest:     # the minute requests are arriving in: the next ones find it at once
            self._current_minute, self._current = minute, bucket
        return bucket

    def rows(self, since: float, until: float) -> Iterator[tuple[int, Key, Row]]:
        """``(minute start in epoch seconds, key, row)`` of every minute overlapping [since, until)."""
        first, last = int(since // BUCKET_SECONDS), int(math.ceil(until / BUCKET_SECONDS))
        for minute in sorted(m for m in list(self._minutes) if first <= m < last):
            for key, row in list(self._minutes[minute].items()):
                yield minute * BUCKET_SECONDS, Key._make(key), row

    def clear(self) -> None:
        self._minutes.clear()
        self._newest = self._current_minute = -1
        self._current = {}


def outcome_of(status: int, meta: dict[str, Any]) -> str:
    """What became of a request, from what the stages left in ``ctx.meta``.

    Read generically so that new plugins show up without a change here: a limit's refusal
    (``meta["refusal"]``, set by ``limits.count_refusal``), any stage's audit entry in ``meta["ai_log"]`` whose
    ``action`` is ``block`` (guardrails), an answer filter's refusal (``refused_by_filter``), else the status.
    """
    if 200 <= status < 400 and "ai_log" not in meta and "refused_by_filter" not in meta:
        return "ok"           # the common case, decided without reading further
    refusal = meta.get("refusal")
    if refusal:
        return f"refused:{refusal[0]}:{refusal[1]}"
    audits = meta.get("ai_log")
    if audits:
        for name, audit in audits.items():
            if isinstance(audit, dict) and audit.get("action") == "block":
                return f"blocked:{name}:{audit.get('rule') or 'rule'}"
    if meta.get("refused_by_filter"):
        return f"blocked:answer:{meta['refused_by_filter']}"
    if status >= 400 or status == 0:
        return f"error:{status}"
    return "ok"


RECORD = UsageRecord()

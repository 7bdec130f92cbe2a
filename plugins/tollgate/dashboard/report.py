"""The figures of a time range, summed from the usage record: what the dashboard shows and ``tollgate usage`` lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from .. import metrics, route_names
from ..usage import BUCKET_SECONDS, Key, Row, UsageRecord, merge, percentile

# The ranges a report covers (name -> seconds); anything else is refused, so a caller cannot ask for a scan of
# more than the record keeps.
RANGES = {"5m": 300, "15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
PERIODS = {"minute": 60, "hour": 3600, "day": 86400}
DIMENSIONS = ("route", "consumer", "provider", "model")
MAX_TOP = 100
MAX_POINTS = 60


class BadQuery(ValueError):
    """A report parameter outside what is offered (the listener answers 400 with the message)."""


def parse_range(text: str | None) -> tuple[str, int]:
    name = text or "1h"
    if name not in RANGES:
        raise BadQuery(f"unknown range {name!r}; one of {', '.join(RANGES)}")
    return name, RANGES[name]


def parse_int(text: str | None, name: str, default: int, largest: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadQuery(f"{name} must be a whole number") from None
    if not 1 <= value <= largest:
        raise BadQuery(f"{name} must be between 1 and {largest}")
    return value


@dataclass
class Sums:
    """A group's totals over a range."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    errors: int = 0
    refusals: int = 0
    blocks: int = 0
    cache_lookups: int = 0
    cache_hits: int = 0
    saved_prompt_tokens: int = 0
    saved_completion_tokens: int = 0
    saved_cost: float = 0.0
    latency: list[int] | None = None
    ttft: list[int] | None = None

    def add(self, key: Key, row: Row) -> None:
        self.requests += row.requests
        self.prompt_tokens += row.prompt_tokens
        self.completion_tokens += row.completion_tokens
        self.cost += row.cost
        kind = key.outcome.split(":", 1)[0]
        if kind == "error":
            self.errors += row.requests
        elif kind == "refused":
            self.refusals += row.requests
        elif kind == "blocked":
            self.blocks += row.requests
        if key.cache_status:
            self.cache_lookups += row.requests
            if key.cache_status == "Hit":
                self.cache_hits += row.requests
        self.saved_prompt_tokens += row.saved_prompt_tokens
        self.saved_completion_tokens += row.saved_completion_tokens
        self.saved_cost += row.saved_cost
        self.latency = merge(self.latency, row.latency)
        self.ttft = merge(self.ttft, row.ttft)

    def document(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "total_tokens": self.prompt_tokens + self.completion_tokens,
            "cost": round(self.cost, 9), "errors": self.errors, "refusals": self.refusals, "blocks": self.blocks,
            "cache_lookups": self.cache_lookups, "cache_hits": self.cache_hits,
            "cache_hit_rate": self.cache_hits / self.cache_lookups if self.cache_lookups else None,
            "saved_tokens": self.saved_prompt_tokens + self.saved_completion_tokens,
            "saved_cost": round(self.saved_cost, 9),
            "latency_p50_ms": _rounded(percentile(self.latency, 0.5)),
            "latency_p95_ms": _rounded(percentile(self.latency, 0.95)),
            "ttft_p50_ms": _rounded(percentile(self.ttft, 0.5)), "ttft_p95_ms": _rounded(percentile(self.ttft, 0.95)),
        }


def _rounded(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def _grouped(dimension: str, groups: dict[Any, Sums], top: int) -> list[dict[str, Any]]:
    """The ``top`` groups by requests; routes are shown by name (``id`` keeps the route's id)."""
    ordered = sorted(groups.items(), key=lambda item: (-item[1].requests, str(item[0])))
    if dimension == "route":
        return [{"name": route_names.name_of(key), "id": key, **sums.document()} for key, sums in ordered[:top]]
    return [{"name": name, **sums.document()} for name, sums in ordered[:top]]


def dashboard(record: UsageRecord, now: float, range_name: str, seconds: int, top: int) -> dict[str, Any]:
    """Everything the page shows for the last ``seconds`` before ``now`` (budgets are added by the caller)."""
    since = now - seconds
    step = max(BUCKET_SECONDS, seconds // MAX_POINTS // BUCKET_SECONDS * BUCKET_SECONDS)
    first = int(since // step) * step
    totals = Sums()
    by: dict[str, dict[str, Sums]] = {d: {} for d in DIMENSIONS}
    series: dict[int, Sums] = {}
    refusals: dict[tuple[str, str], int] = {}
    blocks: dict[tuple[str, str], int] = {}
    errors: dict[tuple[str, str], int] = {}
    cache: dict[str, int] = {}
    for start, key, row in record.rows(since, now):
        totals.add(key, row)
        for dimension in DIMENSIONS:
            name = getattr(key, dimension)
            group = by[dimension].get(name)
            if group is None:
                group = by[dimension][name] = Sums()
            group.add(key, row)
        slot = int(start // step) * step
        point = series.get(slot)
        if point is None:
            point = series[slot] = Sums()
        point.add(key, row)
        kind, _, detail = key.outcome.partition(":")
        if kind == "refused":
            plugin, _, reason = detail.partition(":")
            refusals[(plugin, reason)] = refusals.get((plugin, reason), 0) + row.requests
        elif kind == "blocked":
            plugin, _, rule = detail.partition(":")
            blocks[(plugin, rule)] = blocks.get((plugin, rule), 0) + row.requests
        elif kind == "error":
            errors[(key.provider, detail)] = errors.get((key.provider, detail), 0) + row.requests
        if key.cache_status:
            cache[key.cache_status] = cache.get(key.cache_status, 0) + row.requests
    points = []
    for slot in range(first, int(now // step) * step + 1, step):
        sums = series.get(slot) or Sums()
        points.append({"t": slot, "requests": sums.requests, "tokens": sums.prompt_tokens + sums.completion_tokens,
                       "cost": round(sums.cost, 9), "errors": sums.errors, "refusals": sums.refusals})
    return {
        "range": range_name, "since": since, "until": now, "step": step,
        "totals": totals.document(),
        "series": points,
        "by": {dimension: _grouped(dimension, groups, top) for dimension, groups in by.items()},
        "refusals": [{"plugin": p, "reason": r, "count": c} for (p, r), c in sorted(refusals.items())],
        "refusals_since_start": refusals_since_start(),
        "blocks": [{"plugin": p, "rule": r, "count": c} for (p, r), c in sorted(blocks.items())],
        "errors": [{"provider": p, "status": s, "count": c} for (p, s), c in sorted(errors.items())],
        "cache": [{"status": s, "count": c} for s, c in sorted(cache.items())],
    }


def refusals_since_start() -> list[dict[str, Any]]:
    """``tollgate_refusals_total`` by plugin and reason, as Prometheus has it (every refusal since the start)."""
    counts: dict[tuple[str, str], float] = {}
    for family in metrics.refusals_total.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = (sample.labels.get("plugin", ""), sample.labels.get("reason", ""))
                counts[key] = counts.get(key, 0) + sample.value
    return [{"plugin": p, "reason": r, "count": int(c)} for (p, r), c in sorted(counts.items())]


def usage_rows(record: UsageRecord, now: float, seconds: int, period: int, by: Iterable[str],
               limit: int) -> list[dict[str, Any]]:
    """Tokens and cost per period and per the ``by`` dimensions (``tollgate usage``), newest period first."""
    dims = tuple(by)
    groups: dict[tuple[Any, ...], Sums] = {}
    for start, key, row in record.rows(now - seconds, now):
        group_key = (int(start // period) * period, *(getattr(key, d) for d in dims))
        sums = groups.get(group_key)
        if sums is None:
            sums = groups[group_key] = Sums()
        sums.add(key, row)
    out = []
    for group_key in sorted(groups, key=lambda k: (-k[0], *map(str, k[1:]))):
        sums = groups[group_key]
        named = dict(zip(dims, group_key[1:]))
        if "route" in named:   # by name for people; the id beside it
            named["route_id"] = named["route"]
            named["route"] = route_names.name_of(named["route"])
        out.append({"period_start": group_key[0], **named, "requests": sums.requests,
                    "prompt_tokens": sums.prompt_tokens, "completion_tokens": sums.completion_tokens,
                    "total_tokens": sums.prompt_tokens + sums.completion_tokens, "cost": round(sums.cost, 9),
                    "refusals": sums.refusals, "errors": sums.errors})
    return out[:limit]


def parse_dimensions(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if not text:
        return default
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [d for d in chosen if d not in DIMENSIONS]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise BadQuery(f"by must list distinct dimensions among {', '.join(DIMENSIONS)}")
    return chosen


def format_usage(rows: list[dict[str, Any]], by: Iterable[str]) -> str:
    """``tollgate usage`` rows as an aligned text table (periods in UTC)."""
    import datetime as dt

    if not rows:
        return "no requests in this range"
    dims = list(by)
    numeric = ["requests", "prompt_tokens", "completion_tokens", "cost", "refusals", "errors"]
    titles = ["PERIOD (UTC)", *(d.upper() for d in dims), "REQUESTS", "PROMPT", "COMPLETION", "COST (USD)",
              "REFUSED", "ERRORS"]
    cells = [titles]
    for row in rows:
        start = dt.datetime.fromtimestamp(row["period_start"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        cells.append([start, *(str(row.get(d) or "-") for d in dims),
                      *(f"{row[k]:.6f}" if k == "cost" else str(row[k]) for k in numeric)])
    widths = [max(len(line[i]) for line in cells) for i in range(len(titles))]
    first_number = 1 + len(dims)
    return "\n".join("  ".join(cell.rjust(w) if i >= first_number else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(line, widths))).rstrip() for line in cells)

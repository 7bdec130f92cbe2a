"""What has been spent, per budget, scope and period, read back from the store (``tollgate spend``).

Budget counters are plain window buckets; to list them without scanning keys, the policy records each
(budget, scope value) it charges in a small index the first time this process charges it:

    h:cq-namespaces                  namespace -> "1"
    h:cq-index:{cq:<namespace>}      window key -> JSON (budget name, scope, period, timezone, limit, currency)

A report rebuilds each entry's window for an instant (its current period) and reads it with ``peek``, the
same read admission does, so the figures are the store's own. Spend includes the worst-case reservations of
requests still in flight (they are settled to the exact cost when those requests end).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Iterable, Sequence

import orjson

from ... import log
from ...pricing import format_money
from ...store import StoreError, Window, from_each
from .budgets import Budget, window_at
from .periods import iso, timezone

logger = log.get("cost_quota")

ROOT = "cq-namespaces"
PEEK_BATCH = 256


def index_key(namespace: str) -> str:
    return f"cq-index:{{cq:{namespace}}}"


class SpendIndex:
    """Records, once per process, every (budget, scope value) the policy charges."""

    def __init__(self, namespace: str):
        self.namespace = namespace
        self._known: set[tuple[str, int, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self, store: Any, budget: Budget, who: str, label: str | None, window: Window) -> None:
        marker = (window.key, budget.amount, budget.name)
        if marker in self._known:
            return
        self._known.add(marker)
        entry = {"key": window.key, "budget": budget.name, "scope": budget.scope, "header_name": budget.header_name,
                 "who": who, "label": label, "period": budget.period, "rolling_seconds": budget.rolling_seconds,
                 "timezone": budget.timezone, "limit": budget.amount, "currency": budget.currency}
        task = asyncio.ensure_future(self._write(store, marker, window.key, orjson.dumps(entry)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, store: Any, marker: tuple[str, int, str], key: str, entry: bytes) -> None:
        try:
            await store.hset(ROOT, {self.namespace: b"1"})
            await store.hset(index_key(self.namespace), {key: entry})
        except Exception as exc:  # noqa: BLE001 - a background write must never raise into the loop
            self._known.discard(marker)  # try again on a later request
            log.event(logger, "spend index not updated", 30, namespace=self.namespace,
                      error=str(exc) if isinstance(exc, StoreError) else repr(exc))

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def report(store: Any, now: float, namespace: str | None = None) -> list[dict[str, Any]]:
    """One row per (namespace, budget, scope value): the current period's limit, spend and remainder."""
    if namespace:
        namespaces = [namespace]
    else:
        namespaces = sorted(await store.hgetall(ROOT))
    rows: list[dict[str, Any]] = []
    for name in namespaces:
        raw = await store.hgetall(index_key(name))
        entries = []
        for value in raw.values():
            try:
                entries.append(orjson.loads(value))
            except orjson.JSONDecodeError:
                continue
        placed = []
        for entry in entries:
            try:
                tz = timezone(entry.get("timezone"))
                window, span = window_at(entry["key"], int(entry["limit"]), entry["period"],
                                         entry.get("rolling_seconds"), tz, now)
            except (KeyError, TypeError, ValueError):
                continue
            placed.append((entry, window, span, tz))
        for start in range(0, len(placed), PEEK_BATCH):
            chunk = placed[start:start + PEEK_BATCH]
            states = await store.peek([window for _, window, _, _ in chunk], now)
            for (entry, window, span, tz), state in zip(chunk, states):
                spent = max(0, math.ceil(state.used - 1e-9))
                remaining = max(0, window.limit - spent)
                rows.append({
                    "namespace": name, "budget": entry.get("budget"), "scope": entry.get("scope"),
                    "who": entry.get("who"), "label": entry.get("label"), "period": entry.get("period"),
                    "rolling_seconds": entry.get("rolling_seconds"), "timezone": entry.get("timezone"),
                    "period_start": iso(span.start, tz) if span.end is not None else None,
                    "period_end": iso(span.end, tz), "currency": entry.get("currency"),
                    "limit": format_money(window.limit), "spent": format_money(spent),
                    "remaining": format_money(remaining), "limit_micros": window.limit, "spent_micros": spent,
                    "remaining_micros": remaining, "key": entry.get("key"),
                })
    rows.sort(key=lambda r: (r["namespace"], str(r["budget"]), str(r["who"])))
    return rows


async def report_stores(stores: Iterable[tuple[str, Any]], now: float, namespace: str | None = None
                        ) -> list[dict[str, Any]]:
    """Rows of every store a process uses (``(label, store)``), each row marked with its store."""
    return await from_each(stores, lambda store: report(store, now, namespace))


COLUMNS = (("store", "STORE"), ("namespace", "NAMESPACE"), ("budget", "BUDGET"), ("who", "SCOPE"),
           ("period", "PERIOD"), ("period_start", "SINCE"), ("spent", "SPENT"), ("limit", "LIMIT"),
           ("remaining", "REMAINING"), ("currency", "CUR"))


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as an aligned text table (what ``tollgate spend`` prints)."""
    if not rows:
        return "no budget has been charged yet"
    columns = [(key, title) for key, title in COLUMNS if any(key in row for row in rows)]
    cells = [[title for _, title in columns]]
    for row in rows:
        if "error" in row:
            cells.append([str(row.get("store", "")), f"error: {row['error']}"] + [""] * (len(columns) - 2))
            continue
        line = []
        for key, _ in columns:
            value = row.get(key)
            if key == "who" and row.get("label"):
                value = f"{value} ({row['label']})"
            if key == "period" and row.get("rolling_seconds"):
                value = f"rolling {row['rolling_seconds']}s"
            if key == "period_start" and value is None:
                value = "-"
            line.append("" if value is None else str(value))
        cells.append(line)
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    numeric = {"spent", "limit", "remaining"}
    out = []
    for line in cells:
        out.append("  ".join(cell.rjust(width) if key in numeric else cell.ljust(width)
                             for cell, width, (key, _) in zip(line, widths, columns)).rstrip())
    return "\n".join(out)

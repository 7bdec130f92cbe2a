"""Soft limits: when a budget's spend reaches a share of it, say so once per budget and period.

Every node may notice the crossing; one store counter per budget and period (``INCR``, atomic across
nodes) elects the one that logs the event and posts the webhook, so each fires once per period in the
whole cluster. A node remembers what it has seen, so after the first notice the store is not asked again.
All of it runs in a background task: a notice never delays the request that triggered it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from fractions import Fraction
from typing import Any

import aiohttp
import orjson

from ... import log
from ...pricing import format_money
from ...relay import upstream
from ...store import StoreError, Window
from .budgets import Budget
from .periods import Span, iso

logger = log.get("cost_quota")

EVENT = "budget.soft_limit_reached"
_SEEN_MAX = 100_000


class SoftLimits:
    def __init__(self, plugin: str, namespace: str, share: Fraction, webhook_url: str | None = None,
                 webhook_headers: dict[str, str] | None = None, webhook_timeout: float = 5.0):
        self.plugin = plugin
        self.namespace = namespace
        self.share = share
        self._enabled = share > 0     # asked twice per request: a Fraction comparison is not free
        self.webhook_url = webhook_url or None
        self.webhook_headers = dict(webhook_headers or {})
        self.webhook_timeout = webhook_timeout
        self._seen: dict[str, float] = {}  # budget-period id -> when the period ends (forget afterwards)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self._enabled

    def reached(self, limit: int, spent: float) -> bool:
        """Whether ``spent`` (micro-units) is at or past the soft share of ``limit``."""
        if not self._enabled:
            return False
        share = self.share
        if type(spent) is float and spent.is_integer():
            spent = int(spent)
        if type(spent) is int and type(limit) is int:  # exact in integers: spent >= limit * p / q
            share = Fraction(share)
            return spent * share.denominator >= limit * share.numerator
        return spent >= limit * share

    def notify(self, store: Any, budget: Budget, who: str, window: Window, span: Span, spent: float, now: float,
               route_id: str | None = None) -> None:
        """Start the once-per-period notice for this budget, unless this node knows it went out already."""
        ident = f"{window.key}@{round(span.start * 1000)}"
        if ident in self._seen:
            return
        self._forget_old(now)
        self._seen[ident] = span.end if span.end is not None else math.inf
        details = {"budget": budget.name, "scope": budget.scope, "who": who, "period": budget.period,
                   "rolling_seconds": budget.rolling_seconds, "timezone": budget.timezone,
                   "period_start": iso(span.start, budget.tz) if span.end is not None else None,
                   "period_end": iso(span.end, budget.tz), "limit": format_money(window.limit),
                   "spent": format_money(int(spent)), "currency": budget.currency,
                   "soft_limit_share": float(self.share), "namespace": self.namespace, "route_id": route_id,
                   "plugin": self.plugin}
        ttl = None if span.end is None else max(1.0, span.end - now + 60.0)
        task = asyncio.ensure_future(self._fire(store, "cq-soft:" + ident, ttl, ident, details))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fire(self, store: Any, key: str, ttl: float | None, ident: str, details: dict[str, Any]) -> None:
        try:
            first = await store_incr(store, key, ttl)
        except Exception as exc:  # StoreUnavailable, or anything else: never an unretrieved task error
            self._seen.pop(ident, None)  # unknown: let a later request try again
            log.event(logger, "soft limit notice not sent: store unavailable", logging.WARNING,
                      error=str(exc) if isinstance(exc, StoreError) else repr(exc), **details)
            return
        if not first:
            return
        log.event(logger, "budget soft limit reached", logging.WARNING, event=EVENT, **details)
        if self.webhook_url:
            await self._post({"event": EVENT, "at": time.time(), **details})

    async def _post(self, payload: dict[str, Any]) -> None:
        assert self.webhook_url is not None
        try:
            async with upstream.session().post(
                    self.webhook_url, data=orjson.dumps(payload),
                    headers={"Content-Type": "application/json", **self.webhook_headers},
                    timeout=aiohttp.ClientTimeout(total=self.webhook_timeout)) as answer:
                await answer.read()
                if answer.status >= 300:
                    log.event(logger, "soft limit webhook refused", logging.WARNING, status=answer.status,
                              budget=payload.get("budget"))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            log.event(logger, "soft limit webhook failed", logging.WARNING, error=repr(exc),
                      budget=payload.get("budget"))

    def _forget_old(self, now: float) -> None:
        if len(self._seen) < _SEEN_MAX:
            return
        for ident, end in list(self._seen.items()):
            if end <= now:
                del self._seen[ident]
        if len(self._seen) >= _SEEN_MAX:  # still full of live periods: start over (the store dedupes anyway)
            self._seen.clear()

    async def drain(self) -> None:
        """Wait for the notices in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def store_incr(store: Any, key: str, ttl: float | None) -> bool:
    """True for the first caller of this key (cluster-wide): the one that sends the notice."""
    return int(await store.incr(key, 1, ttl)) == 1

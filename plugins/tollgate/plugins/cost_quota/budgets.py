"""One configured budget: its amount in micro-units, its period, its scope, and its store window at an instant.

Store keys: ``{cq:<namespace>}:<scope>:<period>:<currency>:<who>``. Every budget of a plugin instance shares
the ``{cq:<namespace>}`` hash tag, so the windows of one request (each consumer's budget and the organisation's)
are checked and charged in one atomic script, on one Redis Cluster slot. The key leaves out the amount, so
changing a budget's amount keeps what was spent; the period start and length are part of the bucket name, so a
new period starts from zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from ...pricing import format_money, to_micros
from ...store import Window
from ...store.windows import locate
from . import periods
from .periods import Span

SCOPES = ("consumer", "consumer-group", "credential", "route", "service", "header", "global")
BASE_CURRENCY = "USD"  # the currency of the price table and of every price override

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def safe_namespace(value: str) -> str:
    """A namespace usable inside a ``{hash tag}`` (no braces) and readable in a key listing."""
    return _UNSAFE.sub("_", value)[:120] or "default"


@dataclass(frozen=True)
class Budget:
    name: str
    amount: int  # micro-units of ``currency``
    currency: str
    period: str
    rolling_seconds: int | None
    scope: str
    header_name: str | None
    timezone: str
    tz: ZoneInfo
    rate: Fraction  # units of ``currency`` per USD

    @classmethod
    def from_config(cls, spec: Mapping[str, Any], timezone: str, rates: Mapping[str, Fraction]) -> Budget:
        period = spec.get("period") or "month"
        if period not in periods.PERIODS:
            raise ValueError(f"budget period must be one of {', '.join(periods.PERIODS)}")
        rolling = spec.get("rolling_seconds")
        if period == "rolling":
            if not isinstance(rolling, int) or rolling <= 0:
                raise ValueError("a rolling budget needs rolling_seconds > 0")
        else:
            rolling = None
        scope = spec.get("scope") or "consumer"
        if scope not in SCOPES:
            raise ValueError(f"budget scope must be one of {', '.join(SCOPES)}")
        header = spec.get("header_name")
        if scope == "header" and not header:
            raise ValueError("a budget scoped to a header needs header_name")
        header = header.lower() if scope == "header" and header else None
        currency = (spec.get("currency") or BASE_CURRENCY).upper()
        if currency == BASE_CURRENCY:
            rate = Fraction(1)
        elif currency in rates:
            rate = rates[currency]
            if rate <= 0:
                raise ValueError(f"exchange rate of {currency} must be positive")
        else:
            raise ValueError(f"budget in {currency}: prices are in {BASE_CURRENCY}; give exchange_rates.{currency} "
                             f"(units of {currency} per {BASE_CURRENCY})")
        amount = to_micros(spec["amount"])
        if amount <= 0:
            raise ValueError("budget amount must be positive")
        tz_name = timezone or "UTC"
        tz = periods.timezone(tz_name)
        scope_text = f"header({header})" if header else scope
        period_text = f"rolling{rolling}s" if rolling else period
        return cls(name=spec.get("name") or f"{scope_text}/{period_text}", amount=amount, currency=currency,
                   period=period, rolling_seconds=rolling, scope=scope, header_name=header, timezone=tz_name, tz=tz,
                   rate=rate)

    @property
    def ident(self) -> str:
        """The part of the store key that names this budget (stable across amount changes)."""
        scope = f"header({self.header_name})" if self.header_name else self.scope
        period = f"rolling{self.rolling_seconds}" if self.rolling_seconds else self.period
        return f"{scope}:{period}:{self.currency}"

    def key(self, namespace: str, who: str) -> str:
        return f"{{cq:{namespace}}}:{self.ident}:{who}"

    def window(self, namespace: str, who: str, now: float) -> tuple[Window, Span]:
        return window_at(self.key(namespace, who), self.amount, self.period, self.rolling_seconds, self.tz, now)

    def describe(self) -> str:
        """``"10.00 USD per month (Europe/Berlin)"``."""
        if self.rolling_seconds:
            per = f"per rolling {self.rolling_seconds} s"
        elif self.period == "total":
            per = "in total"
        else:
            per = f"per {self.period} ({self.timezone})"
        return f"{format_money(self.amount)} {self.currency} {per}"


def window_at(key: str, limit: int, period: str, rolling_seconds: int | None, tz: ZoneInfo, now: float
              ) -> tuple[Window, Span]:
    """The store window of a budget at ``now`` and the span of its current period."""
    if period in periods.CALENDAR:
        span = periods.calendar_span(period, tz, now)
        assert span.end is not None
        return Window(key, limit, span.end - span.start, sliding=False, start=span.start), span
    if period == "total":
        return Window(key, limit, periods.TOTAL_SIZE, sliding=False, start=0.0), Span(0.0, None)
    if period == "rolling" and rolling_seconds:
        window = Window(key, limit, float(rolling_seconds), sliding=True)
        bucket = locate(window, now)
        return window, Span(bucket.start, bucket.reset_at)
    raise ValueError(f"unknown budget period {period!r}")

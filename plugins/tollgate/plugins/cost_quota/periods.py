"""Budget periods: calendar days, ISO weeks and months in an IANA timezone, the whole of time, rolling windows.

A calendar period starts at local midnight (of the day, of the Monday, of the 1st) in the configured timezone
and ends at the next one, so its length follows the calendar: 23 or 25 hours across a DST change, 28 to 31
days for a month. The store sees a fixed window with that explicit ``start`` and ``size``; the next period is
a new bucket, so spend rolls over at exactly the local midnight.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CALENDAR = ("day", "week", "month")
PERIODS = (*CALENDAR, "total", "rolling")

# "total" is one window from the epoch that never ends in practice (2**32 s is 136 years).
TOTAL_SIZE = float(2**32)


class InvalidPeriod(ValueError):
    pass


def timezone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidPeriod(f"unknown timezone {name!r} (use an IANA name such as Europe/Berlin)") from exc


@dataclass(frozen=True)
class Span:
    """One period: [start, end) in epoch seconds; ``end`` is None for a total budget (never resets)."""

    start: float
    end: float | None


# The last span computed per period and timezone: every request of a period falls in the same one.
_spans: dict[tuple[str, ZoneInfo], Span] = {}


def calendar_span(period: str, tz: ZoneInfo, now: float) -> Span:
    """The day, ISO week (from Monday) or month containing ``now``, in ``tz``."""
    known = _spans.get((period, tz))
    if known is not None and known.start <= now < known.end:  # type: ignore[operator]
        return known
    span, natural = _calendar_span(period, tz, now)
    if natural:  # a span stretched around a skipped midnight holds only for the instant it was made for
        if len(_spans) >= 256:
            _spans.clear()
        _spans[(period, tz)] = span
    return span


def _calendar_span(period: str, tz: ZoneInfo, now: float) -> tuple[Span, bool]:
    local = dt.datetime.fromtimestamp(now, tz)
    day = local.date()
    if period == "day":
        first, following = day, day + dt.timedelta(days=1)
    elif period == "week":
        first = day - dt.timedelta(days=day.weekday())
        following = first + dt.timedelta(days=7)
    elif period == "month":
        first = day.replace(day=1)
        following = (first + dt.timedelta(days=32)).replace(day=1)
    else:
        raise InvalidPeriod(f"{period!r} is not a calendar period")
    start, end = _midnight(first, tz), _midnight(following, tz)
    if not start <= now < end:  # a midnight that DST skips or repeats: stay consistent with the neighbours
        return Span(min(start, now), max(end, now + 1)), False
    return Span(start, end), True


def _midnight(day: dt.date, tz: ZoneInfo) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def iso(moment: float | None, tz: ZoneInfo) -> str | None:
    """``moment`` as an ISO 8601 timestamp with the timezone's offset (None stays None)."""
    if moment is None:
        return None
    return dt.datetime.fromtimestamp(moment, tz).isoformat(timespec="seconds")

"""Rate windows as buckets: which counters a window reads at an instant, and what they mean.

Pure arithmetic shared by every backend, so the local store and the Redis scripts decide alike.
A window's charges land in one bucket per ``size`` seconds. A sliding window also counts the
previous bucket, weighted by the share of it still inside the window:

    used = previous * (1 - elapsed / size) + current

which is the approximation Kong's rate limiting uses: capacity comes back gradually.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

# A bucket outlives its last use by this much, so nodes whose clocks differ slightly still find it.
SLACK = 1.0


@dataclass(frozen=True, slots=True)
class Window:
    """A limit on the sum of amounts charged to ``key`` within ``size`` seconds.

    Sliding windows (the default) free capacity gradually. Fixed windows reset at bucket
    boundaries: multiples of ``size`` since the epoch, or since ``start`` when it is given. Calendar
    periods pass their own ``start`` and length (this month in the consumer's timezone: start = the
    1st at 00:00 there, size = the month's length), recomputed by the caller each period.

    Several windows in one call must hash to one Redis Cluster slot: give their keys one common
    ``{hash tag}``, e.g. ``"{consumer:42}:tokens:minute"`` and ``"{consumer:42}:tokens:day"``.
    Every backend checks this (ValueError), so a layout that works locally works on a Cluster.
    A lone window's key without a tag is used whole as its tag.
    """

    key: str
    limit: int
    size: float
    sliding: bool = True
    start: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError("window key must be a non-empty string")
        limit = operator.index(self.limit)
        if limit < 0:
            raise ValueError("window limit must be >= 0")
        object.__setattr__(self, "limit", limit)
        if not (math.isfinite(self.size) and self.size >= 0.001):
            raise ValueError("window size must be at least 1 ms")
        if self.start is not None and not math.isfinite(self.start):
            raise ValueError("window start must be finite")


@dataclass(frozen=True, slots=True)
class WindowState:
    """A window as seen at an instant.

    ``used`` may be fractional (sliding windows) and may exceed ``limit`` after post-hoc charges;
    ``remaining`` is the largest amount that would still be admitted; ``reset_at`` (epoch seconds)
    is when the current bucket ends.
    """

    key: str
    limit: int
    used: float
    remaining: int
    reset_at: float


@dataclass(frozen=True, slots=True)
class Bucket:
    """Where a window stands at an instant: the counters to read and how to weigh them."""

    current: str  # bucket id the charge goes to
    previous: str  # bucket id of the period before (== current for fixed windows)
    weight: float  # share of the previous bucket still counted (0 for fixed windows)
    start: float  # when the current bucket began
    reset_at: float  # when it ends
    ttl: float  # seconds the current bucket must live from now on


def has_hash_tag(key: str) -> bool:
    """Whether Redis Cluster would hash ``key`` by a ``{tag}`` (non-empty, first ``{`` wins)."""
    opening = key.find("{")
    if opening < 0:
        return False
    closing = key.find("}", opening + 1)
    return closing > opening + 1


def hash_tagged(key: str) -> str:
    """``key`` itself if it carries a hash tag, else the whole key wrapped as one."""
    return key if has_hash_tag(key) else "{" + key + "}"


def hash_tag(key: str) -> str:
    """What Redis Cluster hashes for ``key`` once tagged: its tag, or the whole key."""
    if not has_hash_tag(key):
        return key
    opening = key.find("{")
    return key[opening + 1 : key.find("}", opening + 1)]


def check_one_slot(windows: Sequence[Window]) -> None:
    """Refuse windows that could not be changed atomically in Redis Cluster.

    Checked by every backend, so a key layout that works on one node keeps working on a Cluster.
    """
    if len(windows) > 1 and len({hash_tag(w.key) for w in windows}) > 1:
        keys = ", ".join(repr(w.key) for w in windows)
        raise ValueError(f"windows of one call must share one {{hash tag}} (one Redis Cluster slot): {keys}")


def locate(window: Window, now: float) -> Bucket:
    """The buckets ``window`` reads at ``now``."""
    size = window.size
    anchor = 0.0 if window.start is None else window.start
    start = anchor + math.floor((now - anchor) / size) * size
    end = start + size
    stem = f"w:{hash_tagged(window.key)}:{round(size * 1000)}:"
    current = stem + str(round(start * 1000))
    if not window.sliding:
        return Bucket(current, current, 0.0, start, end, end - now + SLACK)
    weight = min(1.0, max(0.0, 1.0 - (now - start) / size))
    previous = stem + str(round((start - size) * 1000))
    return Bucket(current, previous, weight, start, end, end + size - now + SLACK)


def used(bucket: Bucket, counts: tuple[int, int]) -> float:
    """The window's usage from its (current, previous) counters. The Lua scripts compute the same."""
    current, previous = counts
    return previous * bucket.weight + current


def admits(limit: int, usage: float, amount: int) -> bool:
    """The admission rule: room for the whole amount, and some room at all (decides amount 0)."""
    return usage < limit and usage + amount <= limit


def state(window: Window, bucket: Bucket, counts: tuple[int, int]) -> WindowState:
    """The caller-facing view of a window from its counters."""
    usage = used(bucket, counts)
    remaining = max(0, math.floor(window.limit - usage)) if usage < window.limit else 0
    return WindowState(window.key, window.limit, usage, remaining, bucket.reset_at)


def wait_time(
    window: Window, bucket: Bucket, counts: tuple[int, int], amount: int, now: float
) -> float | None:
    """Seconds until ``window`` admits ``amount`` if nothing else is charged; None if it never will.

    Usage only falls while nothing is charged, so the wait of several windows is their maximum.
    """
    limit = window.limit
    need = max(amount, 1)  # amount 0 needs "some room": at least one unit
    if need > limit:
        return None
    current, previous = counts
    if admits(limit, used(bucket, counts), amount):
        return 0.0
    if not window.sliding:
        return max(0.0, bucket.reset_at - now)
    size = window.size
    room = limit - need - current  # what the previous bucket's weighted share must fall to
    if room >= 0 and previous > 0:
        # previous * (1 - (t - start) / size) <= room
        at = bucket.start + size * (1.0 - room / previous)
        if at < bucket.reset_at:
            return max(0.0, at - now)
    # In the next bucket, today's current becomes the previous one: current * (1 - f) <= limit - need.
    if current <= 0:
        return max(0.0, bucket.reset_at - now)
    fraction = max(0.0, 1.0 - (limit - need) / current)
    return max(0.0, bucket.reset_at + size * fraction - now)

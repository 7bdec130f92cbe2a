"""The store's contract: one async interface, its value types and its errors.

Plugins talk to `Store` only, so `strategy: local` and `strategy: redis` behave the same: the window
arithmetic lives in `tollgate.store.windows` and both backends feed it the same counters.
"""

from __future__ import annotations

import abc
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from tollgate.store import windows as _windows
from tollgate.store.windows import Window, WindowState


class StoreError(Exception):
    """Base of every error a store raises about itself (never a driver's own exception type)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or cannot serve right now (refused, timed out, failing over...).

    The one error plugins map to their ``fail_open`` setting. ``doubtful`` lists the reservations the failed call
    may have made nonetheless (cut after its script may have run, or not confirmed by the replicas): the caller
    never got them, so it should give them back (``settle(r, 0)``), which a store that keeps reservation records
    applies once if the reservation landed and ignores if it did not.
    """

    def __init__(self, *args: object, doubtful: Sequence[Reservation] = ()) -> None:
        super().__init__(*args)
        self.doubtful: list[Reservation] = list(doubtful)


class ChargedBucket(NamedTuple):
    """Where a reservation's charge went (opaque to callers)."""

    bucket: str
    deadline: float  # on the store's own clock: after it the bucket no longer counts


@dataclass(eq=False, slots=True)
class Reservation:
    """The outcome of `Store.reserve`.

    ``states`` describe every window after the operation (charged when allowed). ``denied`` is the
    first window that could not take the amount. ``retry_after`` (seconds, when refused) is how long
    until every window could take it if nothing else were charged; None when one never can (the
    amount exceeds its limit). ``charged`` records which buckets to correct on `Store.settle`; ``ledger`` names
    the store's record of the reservation (None where it keeps none), which makes settling it idempotent.
    """

    allowed: bool
    amount: int
    states: list[WindowState]
    denied: WindowState | None = None
    retry_after: float | None = None
    charged: tuple[ChargedBucket, ...] = field(default=(), repr=False)
    ledger: str | None = field(default=None, repr=False)
    settled: bool = False


class Settlement(NamedTuple):
    """What settling one reservation takes: the buckets it charged that still live (bucket, seconds), the amount
    it charged, the actual amount, and its ledger."""

    buckets: Sequence[tuple[str, float]]
    amount: int
    actual: int
    ledger: str | None


@dataclass(frozen=True, slots=True)
class VectorHit:
    """A semantic-cache entry close to the query (``score`` is the cosine similarity)."""

    entry_id: str
    score: float
    payload: bytes


Mode = str  # "reserve" | "charge" | "peek"
Counts = list[tuple[int, int]]  # per window: (current bucket, previous bucket)


class Store(abc.ABC):
    """Shared state for every plugin of the process: rate windows, counters, small values, vectors.

    Every method is a coroutine. A backend that cannot be reached raises `StoreUnavailable`;
    bad arguments raise ValueError/TypeError before the store is touched.
    """

    # -- windows: rate limits and budgets -------------------------------------------------------

    async def reserve(self, windows: Sequence[Window], amount: int, now: float, *, settle: bool = True) -> Reservation:
        """Charge ``amount`` to every window at once, or to none.

        Admitted only when, for every window, ``used + amount <= limit`` and ``used < limit``.
        The second rule decides ``amount == 0``: a zero reservation ("the size is not known yet,
        settle later") is admitted while some capacity is left, and refused once a window is full.
        Windows with the same key and size share one counter: each limit is checked, the counter
        is charged once.

        ``settle=False`` says the charge is final: the store keeps no record of the reservation, `settle`
        ignores it, and one that a failed call may have made cannot be given back.
        """
        amount = _as_int(amount, "amount")
        if amount < 0:
            raise ValueError("reserve amount must be >= 0 (use charge or settle to give back)")
        if not windows:
            return Reservation(allowed=True, amount=amount, states=[])
        buckets = _locate(windows, now)
        ledger = self._new_ledger(windows) if settle else None
        try:
            denied, counts = await self._apply(windows, buckets, amount, "reserve", ledger)
        except StoreUnavailable as exc:
            if ledger is not None:
                exc.doubtful.append(self._admitted(buckets, amount, ledger))
            raise
        reservation = self._reservation(windows, buckets, amount, denied, counts, now, ledger)
        reservation.settled = not settle
        return reservation

    def _new_ledger(self, windows: Sequence[Window]) -> str | None:
        """A new name for the record of a reservation of ``windows`` (in their hash slot); None: keep no records."""
        return None

    def _admitted(self, buckets: Sequence[_windows.Bucket], amount: int, ledger: str | None,
                  states: list[WindowState] | None = None) -> Reservation:
        """The reservation charged to ``buckets``: the one the store admitted, or one a failed call may have made."""
        ticks = self._ticks()
        deadlines = {b.current: ticks + b.ttl for b in buckets}  # a bucket shared by two windows: once
        charged = tuple(ChargedBucket(bucket, deadline) for bucket, deadline in deadlines.items())
        return Reservation(allowed=True, amount=amount, states=states or [], charged=charged, ledger=ledger)

    def _reservation(self, windows: Sequence[Window], buckets: Sequence[_windows.Bucket], amount: int,
                     denied: int | None, counts: Counts, now: float, ledger: str | None) -> Reservation:
        """What `reserve` returns, from the counters its store operation left (and the window it refused)."""
        states = [_windows.state(w, b, c) for w, b, c in zip(windows, buckets, counts)]
        if denied is not None:
            waits = [_windows.wait_time(w, b, c, amount, now) for w, b, c in zip(windows, buckets, counts)]
            return Reservation(
                allowed=False,
                amount=amount,
                states=states,
                denied=states[denied],
                retry_after=None if None in waits else max(waits),  # type: ignore[type-var]
            )
        return self._admitted(buckets, amount, ledger, states)

    async def reserve_in_turn(self, requests: Sequence[tuple[Sequence[tuple[Sequence[Window], int]], float]]
                              ) -> list[list[Reservation]]:
        """Several requests' reservations, exactly as if made one after the other, in one go where the backend can.

        Each request is ``(groups, now)``: its groups (``(windows, amount)``) are reserved in order as `reserve`
        does; a refused group gives back what the request's earlier groups took (as ``settle(r, 0)``) and ends
        the call, so the requests after it are not tried. Returns, per request tried, its groups' reservations,
        the last one refused if the call ended on a refusal. When the store fails midway, the `StoreUnavailable`
        lists the reservations already made among its ``doubtful`` ones (the caller gets none of them).
        """
        results: list[list[Reservation]] = []
        try:
            for groups, now in requests:
                made: list[Reservation] = []
                results.append(made)
                for windows, amount in groups:
                    reservation = await self.reserve(windows, amount, now)
                    made.append(reservation)
                    if not reservation.allowed:
                        for earlier in made[:-1]:
                            await self.settle(earlier, 0)
                        return results
        except StoreUnavailable as exc:
            exc.doubtful += [r for done in results for r in done if r.allowed and r.charged and not r.settled]
            raise
        return results

    async def settle(self, reservation: Reservation, actual: int) -> None:
        """Correct an admitted reservation to what was really used (``actual - amount``, +/-).

        Goes to the very buckets the reservation charged, even if they have since become the
        "previous" bucket; a bucket never drops below zero; one that expired meanwhile is skipped.
        A second call is a no-op; after StoreUnavailable the call may be retried: with a ``ledger`` it is applied
        once, however often a call that may or may not have landed is repeated.
        """
        await self.settle_all([(reservation, actual)])

    async def settle_all(self, settlements: Sequence[tuple[Reservation, int]]) -> None:
        """`settle` each ``(reservation, actual)``, all in one store call where the backend can (Redis: one script,
        which also takes the settlements other callers start in the same event-loop turn, e.g. the other limiting
        plugins of the request). After a StoreError none of them counts as settled: the call may be retried
        whole, and each reservation with a ``ledger`` still applies once."""
        due: list[Reservation] = []
        work: list[Settlement] = []
        for reservation, actual in settlements:
            actual = _as_int(actual, "actual")
            if not reservation.allowed or reservation.settled:
                continue
            reservation.settled = True
            if actual == reservation.amount and reservation.ledger is None:
                continue
            due.append(reservation)
            buckets = self.live_buckets(reservation)
            if buckets:
                work.append(Settlement(buckets, reservation.amount, actual, reservation.ledger))
        if not work:
            return
        try:
            await self._settle(work)
        except StoreError:
            for reservation in due:
                reservation.settled = False
            raise

    def live_buckets(self, reservation: Reservation) -> list[tuple[str, float]]:
        """The buckets a reservation charged that still count, with the seconds each still lives."""
        ticks = self._ticks()
        return [(c.bucket, c.deadline - ticks) for c in reservation.charged if c.deadline > ticks]

    async def settle_charged(self, buckets: Sequence[tuple[str, float]], amount: int, actual: int,
                             ledger: str | None) -> None:
        """`settle` for a reservation known only by what it charged (see `live_buckets`) and its ``ledger``: one
        that another process made and could not settle (it died)."""
        amount, actual = _as_int(amount, "amount"), _as_int(actual, "actual")
        if buckets and (actual != amount or ledger is not None):
            await self._settle([Settlement(buckets, amount, actual, ledger)])

    async def charge(self, windows: Sequence[Window], amount: int, now: float) -> list[WindowState]:
        """Add ``amount`` to every window unconditionally (post-hoc charging); negative gives back."""
        amount = _as_int(amount, "amount")
        if not windows:
            return []
        buckets = _locate(windows, now)
        _, counts = await self._apply(windows, buckets, amount, "charge")
        return [_windows.state(w, b, c) for w, b, c in zip(windows, buckets, counts)]

    async def peek(self, windows: Sequence[Window], now: float) -> list[WindowState]:
        """Read the windows without charging them."""
        if not windows:
            return []
        buckets = _locate(windows, now)
        _, counts = await self._apply(windows, buckets, 0, "peek")
        return [_windows.state(w, b, c) for w, b, c in zip(windows, buckets, counts)]

    @abc.abstractmethod
    async def _apply(
        self, windows: Sequence[Window], buckets: Sequence[_windows.Bucket], amount: int, mode: Mode,
        ledger: str | None = None,
    ) -> tuple[int | None, Counts]:
        """Atomically read (and in reserve/charge mode, add to) the buckets.

        Returns the index of the first refused window (reserve mode) and the counters afterwards. An admitted
        reservation with a ``ledger`` also writes its record there (see `_settle`).
        """

    @abc.abstractmethod
    async def _settle(self, settlements: Sequence[Settlement]) -> None:
        """Atomically, per settlement, add ``actual - amount`` to each (bucket, seconds it still lives), clamped at
        zero.

        With a ``ledger``: only if the reservation's record is there, and removing it, so that the settlement
        applies once (and not at all for a reservation that never landed).
        """

    @abc.abstractmethod
    def _ticks(self) -> float:
        """The clock that reservation deadlines are measured on (seconds)."""

    # -- small values -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value at ``key``, or None."""

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value``; it expires after ``ttl`` seconds (None: never; replaces any old expiry)."""

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove ``key``; True if it existed."""

    @abc.abstractmethod
    async def incr(self, key: str, amount: int | float = 1, ttl: float | None = None) -> int | float:
        """Atomically add ``amount`` and return the new value (a float when ``amount`` is one).

        ``ttl`` is set only when the key has no expiry yet (normally: when the increment creates
        it), so a counter lives ``ttl`` from its first increment. Adding an int to a value that is
        not an integer raises StoreError.
        """

    @abc.abstractmethod
    async def hget(self, key: str, field: str) -> bytes | None:
        """One field of the small hash at ``key``."""

    @abc.abstractmethod
    async def hgetall(self, key: str) -> dict[str, bytes]:
        """Every field of the small hash at ``key`` ({} when absent)."""

    @abc.abstractmethod
    async def hset(self, key: str, mapping: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Set fields of the hash at ``key``; ``ttl`` (re)sets the whole hash's expiry when given."""

    @abc.abstractmethod
    async def hdel(self, key: str, fields: Sequence[str]) -> int:
        """Remove ``fields`` from the hash at ``key`` (its expiry unchanged); how many existed."""

    # -- vectors (semantic cache) ----------------------------------------------------------------

    @abc.abstractmethod
    async def vector_put(
        self, namespace: str, entry_id: str, vector: np.ndarray, payload: bytes, ttl: float | None = None
    ) -> None:
        """Store (or replace) an entry; it is searchable until ``ttl`` seconds have passed.

        A namespace holds vectors of one dimension: name it after the embedding model.
        """

    @abc.abstractmethod
    async def vector_search(
        self, namespace: str, vector: np.ndarray, k: int = 1, min_score: float = -1.0
    ) -> list[VectorHit]:
        """The ``k`` live entries most similar (cosine) to ``vector`` with score >= ``min_score``,
        best first."""

    @abc.abstractmethod
    async def vector_delete(self, namespace: str, entry_id: str) -> None:
        """Remove an entry (no error if absent)."""

    # -- lifecycle --------------------------------------------------------------------------------

    @abc.abstractmethod
    async def ping(self) -> None:
        """Return if the store answers; raise StoreUnavailable otherwise."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and memory; the store must not be used afterwards."""

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _locate(windows: Sequence[Window], now: float) -> list[_windows.Bucket]:
    """The buckets of a call's windows, refusing what one atomic Redis script could not do."""
    _windows.check_one_slot(windows)
    return [_windows.locate(w, now) for w in windows]


def _as_int(value: object, name: str) -> int:
    """Amounts are integers (tokens, micro-units of currency): Redis counters are integers."""
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


def incr_amount(amount: object) -> int | float:
    """An increment: floats (numpy's too) add as floats, anything int-like as an integer."""
    if isinstance(amount, (float, np.floating)):
        value = float(amount)
        if not math.isfinite(value):
            raise ValueError("incr amount must be finite")
        return value
    return _as_int(amount, "amount")


def as_bytes(value: object, name: str = "value") -> bytes:
    """Values are bytes; bytearray/memoryview are accepted and copied."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{name} must be bytes, not {type(value).__name__}")


def ttl_ms(ttl: float | None) -> int | None:
    """A TTL in whole milliseconds (at least 1), or None for no expiry."""
    if ttl is None:
        return None
    if not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError("ttl must be a positive number of seconds or None")
    return max(1, math.ceil(ttl * 1000))

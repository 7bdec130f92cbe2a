"""Shared target state in the store: latency (EWMA), token usage, and a circuit breaker per target.

With ``strategy: redis`` every node reads and writes the same state, so they agree on which target is fast, busy
or broken. One plugin instance keeps everything under one hash tag (one Redis Cluster slot)::

    tollgate:proxy:{<plugin id>}:targets         hash: <tid>.ewma <tid>.n <tid>.at <tid>.fails <tid>.open_until
    tollgate:proxy:{<plugin id>}:fails:<tid>     consecutive failures (atomic INCR; expires after the window)
    tollgate:proxy:{<plugin id>}:probe:<tid>     one request at a time may probe a target's latency
    tollgate:proxy:{<plugin id>}:trial:<tid>     one request at a time may try a half-open target
    tollgate:proxy:{<plugin id>}:usage:<tid>     sliding token window (lowest-usage)

A request reads the hash once (plus the usage windows for lowest-usage) and writes after its answer. The EWMA is
read-modify-write: concurrent writers may lose a sample, which an average shrugs off. The breaker opens after
``failure_threshold`` consecutive failures within ``max(60 s, cooldown)``, stays open ``cooldown`` seconds, then
lets one trial request through (half-open): success closes it, failure opens it again.

The state helps routing; it is never a reason to fail a request: when the store is unreachable the proxy routes
without it and says so in the log (at most every 10 s).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from ... import log
from ...store import StoreError, Window
from .balancer import Latency, Snapshot, ewma

logger = log.get("proxy.health")

STATE_TTL = 86400.0        # the state hash outlives its last write by a day
USAGE_LIMIT = 10 ** 15     # usage windows only count; nothing is refused on them
_WARN_EVERY = 10.0


class TargetState:
    def __init__(self, store: Callable[[], Any], plugin_id: str, *, failure_threshold: int, cooldown: float,
                 usage_window: float, clock: Callable[[], float]):
        self._store = store
        self.prefix = f"tollgate:proxy:{{{plugin_id}}}"
        self.state_key = f"{self.prefix}:targets"
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.failure_window = max(60.0, cooldown)
        self.usage_window = usage_window
        self.clock = clock
        self._warned_at = 0.0

    # -- reading ----------------------------------------------------------------------------------------------

    async def snapshot(self, tids: Sequence[str], *, usage: bool) -> Snapshot:
        now = self.clock()
        snap = Snapshot(now=now)
        try:
            fields = await self._store().hgetall(self.state_key)
            if usage and tids:
                states = await self._store().peek([self._usage_window(t) for t in tids], now)
                snap.usage = {t: s.used for t, s in zip(tids, states)}
        except (StoreError, OSError) as exc:
            self._warn("reading target state", exc)
            return snap
        for key, raw in fields.items():
            tid, _, name = key.rpartition(".")
            try:
                value = float(raw)
            except ValueError:
                continue
            if name == "open_until":
                snap.open_until[tid] = value
            elif name == "fails":
                snap.failures[tid] = int(value)
            elif name in ("ewma", "n", "at"):
                stat = snap.latency.setdefault(tid, Latency(0.0, 0, 0.0))
                if name == "ewma":
                    stat.ewma = value
                elif name == "n":
                    stat.samples = int(value)
                else:
                    stat.at = value
        return snap

    def half_open(self, tid: str, snap: Snapshot) -> bool:
        """The breaker's cooldown is over but no success has closed it yet: one trial request may go."""
        return (self.failure_threshold > 0 and snap.failures.get(tid, 0) >= self.failure_threshold
                and not snap.is_open(tid))

    async def claim(self, tid: str, purpose: str, ttl: float) -> bool:
        """True for the first request to ask within ``ttl`` seconds (``purpose``: "probe" or "trial")."""
        try:
            return await self._store().incr(f"{self.prefix}:{purpose}:{tid}", 1, ttl=ttl) == 1
        except (StoreError, OSError) as exc:
            self._warn("claiming a probe", exc)
            return True

    # -- writing ----------------------------------------------------------------------------------------------

    async def success(self, tid: str, snap: Snapshot, sample: float | None) -> None:
        fields: dict[str, bytes] = {}
        if snap.failures.get(tid) or snap.open_until.get(tid):
            fields[f"{tid}.fails"] = b"0"
            fields[f"{tid}.open_until"] = b"0"
        if sample is not None:
            previous = snap.latency.get(tid)
            fields[f"{tid}.ewma"] = _num(ewma(previous, sample))
            fields[f"{tid}.n"] = _num((previous.samples if previous else 0) + 1)
            fields[f"{tid}.at"] = _num(self.clock())
        if not fields:
            return
        try:
            store = self._store()
            if f"{tid}.fails" in fields:
                await store.delete(f"{self.prefix}:fails:{tid}")
            await store.hset(self.state_key, fields, ttl=STATE_TTL)
        except (StoreError, OSError) as exc:
            self._warn("recording a success", exc)

    async def penalty(self, tid: str, snap: Snapshot, waited_ms: float) -> None:
        """A timed-out attempt counts as a latency sample of the time it waited (it was at least that slow)."""
        previous = snap.latency.get(tid)
        fields = {f"{tid}.ewma": _num(ewma(previous, waited_ms)),
                  f"{tid}.n": _num((previous.samples if previous else 0) + 1), f"{tid}.at": _num(self.clock())}
        try:
            await self._store().hset(self.state_key, fields, ttl=STATE_TTL)
        except (StoreError, OSError) as exc:
            self._warn("recording a timeout", exc)

    async def failure(self, tid: str, *, trial: bool = False) -> bool:
        """Count a failure; True when it opened the breaker (a failed half-open ``trial`` always re-opens it)."""
        if self.failure_threshold <= 0:
            return False
        try:
            store = self._store()
            fails = int(await store.incr(f"{self.prefix}:fails:{tid}", 1, ttl=self.failure_window))
            if trial:
                fails = max(fails, self.failure_threshold)
            fields = {f"{tid}.fails": _num(fails)}
            opened = fails >= self.failure_threshold
            if opened:
                fields[f"{tid}.open_until"] = _num(self.clock() + self.cooldown)
            await store.hset(self.state_key, fields, ttl=STATE_TTL)
            return opened
        except (StoreError, OSError) as exc:
            self._warn("recording a failure", exc)
            return False

    async def charge(self, tid: str, amount: int) -> None:
        if amount <= 0:
            return
        try:
            await self._store().charge([self._usage_window(tid)], int(amount), self.clock())
        except (StoreError, OSError) as exc:
            self._warn("recording usage", exc)

    # -- helpers ----------------------------------------------------------------------------------------------

    def _usage_window(self, tid: str) -> Window:
        return Window(f"{self.prefix}:usage:{tid}", USAGE_LIMIT, self.usage_window, True)

    def _warn(self, doing: str, exc: BaseException) -> None:
        moment = time.monotonic()
        if moment - self._warned_at >= _WARN_EVERY:
            self._warned_at = moment
            log.event(logger, "balancer state unavailable; routing without it", logging.WARNING, doing=doing,
                      error=f"{type(exc).__name__}: {exc}")


def _num(value: float | int) -> bytes:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value)).encode()
    return repr(float(value)).encode()

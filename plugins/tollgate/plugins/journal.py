"""Reservations of requests in flight, written down in the shared store, so that a process that dies with them
does not leave them charged until their windows end.

Every half second, while a process has admitted requests that are not yet settled, it writes their reservations
(charged buckets and ledger) to one value in each Redis store it reserves in, named after this node (host name and
socket directory, which a restarted process shares with the one it replaces); the value lives as long as the longest
bucket. When a process first reserves in a store, it settles what its predecessor's journal lists and clears it: to
what the request used, when it had ended and its settlement was under way, else to nothing (given back). A ledger
settles once, so what the dead process settled itself is not settled again. A request admitted within the last half
second before a crash is not written yet: its reservation stays charged until its window ends (the safe side). A
local store (``strategy: local``) dies with the process, reservations and all: nothing to do.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import orjson

from .. import log
from ..store import RedisStore, Reservation, StoreError

logger = log.get("limits")

PERIOD = 0.5  # seconds between writes


def node_name(socket_dir: str) -> str:
    return f"{socket.gethostname()}:{socket_dir}"


class Journal:
    def __init__(self) -> None:
        self.node = ""
        # handle -> (store, reservations, what each settles to: 0 until the request has ended)
        self._open: dict[int, tuple[RedisStore, list[Reservation], list[int]]] = {}
        self._stores: dict[int, RedisStore] = {}   # stores whose predecessor's journal has been settled
        self._adopting: set[int] = set()
        self._written: set[int] = set()            # id(store) of the stores whose journal lists something now
        self._writer: asyncio.Task[None] | None = None

    def key(self) -> str:
        return f"journal:{self.node}"

    def open(self, store: Any, reservations: list[Reservation]) -> int | None:
        """Admitted and not settled yet; returns the handle `ended` and `release` take (None when nothing is written
        down: a local store, or a store whose predecessor's journal is still being settled)."""
        if not isinstance(store, RedisStore) or not self.node:
            return None
        if id(store) not in self._stores:
            if id(store) not in self._adopting:  # first use: settle what a predecessor left there
                self._adopting.add(id(store))
                task = asyncio.ensure_future(self._recover(store))
                task.add_done_callback(_retrieve)
            return None
        handle = id(reservations)
        self._open[handle] = (store, reservations, [0] * len(reservations))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_while_open())
        return handle

    def ended(self, handle: int | None, actuals: list[int]) -> None:
        """The request is over and used ``actuals`` (per reservation): should this process die before its
        settlement lands, its successor settles to them (from the next write on) instead of giving it all back."""
        opened = self._open.get(handle) if handle is not None else None
        if opened is not None:
            opened[2][:] = actuals

    def release(self, handle: int | None) -> None:
        """Settled, or given up (it then stays charged): off the journal from its next write. A death before that
        write makes the successor settle it again, which its ledger turns into nothing."""
        if handle is not None:
            self._open.pop(handle, None)

    async def _recover(self, store: RedisStore) -> None:
        try:
            left = await store.get(self.key())
            if left:
                entries = orjson.loads(left)
                for buckets, amount, actual, ledger in entries:
                    await store.settle_charged([(bucket, seconds) for bucket, seconds in buckets], amount, actual,
                                               ledger)
                await store.delete(self.key())
                log.event(logger, "reservations of a dead process settled", logging.WARNING, node=self.node,
                          count=len(entries))
        except (StoreError, ValueError, TypeError) as exc:
            log.event(logger, "journal of a previous process not read", logging.WARNING, node=self.node,
                      error=str(exc))
        self._stores[id(store)] = store

    async def _write(self, store: RedisStore) -> None:
        """Write the journal of one store: what its open grants still hold charged."""
        entries = []
        for owner, reservations, actuals in list(self._open.values()):
            if owner is not store:
                continue
            for reservation, actual in zip(reservations, actuals):
                if reservation.allowed and not reservation.settled and reservation.ledger is not None:
                    buckets = store.live_buckets(reservation)
                    if buckets:
                        entries.append((buckets, reservation.amount, actual, reservation.ledger))
        if entries:
            ttl = max(seconds for buckets, *_ in entries for _, seconds in buckets)
            self._written.add(id(store))
            await store.set(self.key(), orjson.dumps(entries), ttl=ttl)
        elif id(store) in self._written:
            await store.delete(self.key())
            self._written.discard(id(store))

    async def flush(self) -> None:
        """Write every store's journal now (at shutdown: what the successor settles is then what ended requests
        used, not what the last periodic write saw)."""
        for store in list(self._stores.values()):
            try:
                await self._write(store)
            except StoreError:
                continue  # the next round tries again

    async def _write_while_open(self) -> None:
        while self._open or self._written:
            await asyncio.sleep(PERIOD)
            await self.flush()


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


JOURNAL = Journal()
"""One per process."""

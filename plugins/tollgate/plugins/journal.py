"""Reservations of requests in flight, written down in the shared store, so that a process that dies with them
does not leave them charged until their windows end.

Every half second, while a process has admitted requests that are not yet settled, it writes their charged buckets
to one value in each Redis store it reserves in, named after this node (host name and socket directory, which a
restarted process shares with the one it replaces); the value lives as long as the longest bucket. When a process
first reserves in a store, it gives back what its predecessor's journal lists and clears it. A request admitted within
the last half second before a crash is not written yet: its reservation stays charged until its window ends (the
safe side). A local store (``strategy: local``) dies with the process, reservations and all: nothing to do.
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
        self._open: dict[int, tuple[RedisStore, list[Reservation]]] = {}
        self._stores: dict[int, RedisStore] = {}   # stores whose predecessor's journal has been given back
        self._adopting: set[int] = set()
        self._listed: dict[int, set[int]] = {}     # id(store) -> the handles its journal lists now
        self._locks: dict[int, asyncio.Lock] = {}
        self._writer: asyncio.Task[None] | None = None

    def key(self) -> str:
        return f"journal:{self.node}"

    def open(self, store: Any, reservations: list[Reservation]) -> int | None:
        """Admitted and not settled yet; returns the handle `release` takes (None when nothing is written down: a
        local store, or a store whose predecessor's journal is still being given back)."""
        if not isinstance(store, RedisStore) or not self.node:
            return None
        if id(store) not in self._stores:
            if id(store) not in self._adopting:  # first use: give back what a predecessor left there
                self._adopting.add(id(store))
                task = asyncio.ensure_future(self._recover(store))
                task.add_done_callback(_retrieve)
            return None
        handle = id(reservations)
        self._open[handle] = (store, reservations)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_while_open())
        return handle

    async def release(self, handle: int | None) -> None:
        """Before a grant is settled: off the journal, and, if the journal lists it, rewritten first. Were the
        process to die between a settlement and the next write, its successor would give it back a second time;
        this way a death in between leaves the reservation charged instead (the safe side). Raises StoreError
        when the journal cannot be rewritten: then the settlement must wait (it is retried)."""
        if handle is None:
            return
        opened = self._open.pop(handle, None)
        if opened is not None and handle in self._listed.get(id(opened[0]), ()):
            try:
                await self._write(id(opened[0]), handle)
            except StoreError:
                self._open[handle] = opened
                raise

    def forget(self, handle: int | None) -> None:
        """A grant this process gave up settling: it stays charged, and no successor gives it back."""
        if handle is not None:
            self._open.pop(handle, None)

    async def _recover(self, store: RedisStore) -> None:
        try:
            left = await store.get(self.key())
            if left:
                entries = orjson.loads(left)
                for buckets, amount in entries:
                    await store.give_back([(bucket, seconds) for bucket, seconds in buckets], amount)
                await store.delete(self.key())
                log.event(logger, "reservations of a dead process given back", logging.WARNING, node=self.node,
                          count=len(entries))
        except (StoreError, ValueError, TypeError) as exc:
            log.event(logger, "journal of a previous process not read", logging.WARNING, node=self.node,
                      error=str(exc))
        self._stores[id(store)] = store

    async def _write(self, which: int, released: int | None = None) -> None:
        """Write the journal of one store: what its open grants still hold charged. One write at a time per store,
        each computed when its turn comes, so that the last one to land is the newest. A write for a ``released``
        grant that a write landed while it waited no longer lists is not needed: that write was computed after
        the grant left (releases that come together share one write)."""
        lock = self._locks.setdefault(which, asyncio.Lock())
        async with lock:
            if released is not None and released not in self._listed.get(which, ()):
                return
            await self._write_now(which)

    async def _write_now(self, which: int) -> None:
        store = self._stores[which]
        handles, entries = set(), []
        for handle, (owner, reservations) in list(self._open.items()):
            if owner is not store:
                continue
            for reservation in reservations:
                if reservation.allowed and not reservation.settled and reservation.amount > 0:
                    buckets = store.live_buckets(reservation)
                    if buckets:
                        entries.append((buckets, reservation.amount))
                        handles.add(handle)
        listed = self._listed.get(which, set())
        self._listed[which] = listed | handles  # while this write is in flight, a release waits for the next one
        if entries:
            ttl = max(seconds for buckets, _ in entries for _, seconds in buckets)
            await store.set(self.key(), orjson.dumps(entries), ttl=ttl)
        elif listed:
            await store.delete(self.key())
        self._listed[which] = handles

    async def _write_while_open(self) -> None:
        while self._open or any(self._listed.values()):
            await asyncio.sleep(PERIOD)
            for which in list(self._stores):
                try:
                    await self._write(which)
                except StoreError:
                    continue  # the next round tries again


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


JOURNAL = Journal()
"""One per process."""

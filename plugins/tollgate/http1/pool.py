"""The keep-alive connections to one origin: reused newest first, closed after ``idle_timeout`` s unused or as
soon as the server closes them, at most ``limit`` open at once (callers beyond it wait for one to come back)."""

from __future__ import annotations

import asyncio
import collections
from typing import Awaitable, Callable

from .connection import Connection
from .errors import ClientClosed, ConnectTimeout


class Pool:
    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int, idle_timeout: float) -> None:
        self._loop = loop
        self._limit = limit
        self._idle_timeout = idle_timeout
        self._idle: list[Connection] = []            # oldest first
        self._open: set[Connection] = set()
        self._connecting = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self.closed = False

    @property
    def size(self) -> int:
        """Connections open or being opened."""
        return len(self._open) + self._connecting

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    async def acquire(self, connect: Callable[[], Awaitable[Connection]], deadline: float | None = None
                      ) -> Connection:
        """An idle connection, else a new one from ``connect`` (waiting while ``limit`` are open: until
        ``deadline``, in loop time, then `ConnectTimeout`)."""
        while True:
            if self.closed:
                raise ClientClosed("the HTTP client is closed")
            conn = self._take_idle()
            if conn is not None:
                return conn
            if self.size < self._limit:
                return await self._open_one(connect)
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                if deadline is None:
                    await waiter
                else:
                    async with asyncio.timeout_at(deadline):
                        await waiter
            except (asyncio.CancelledError, TimeoutError) as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()        # the turn it was given goes to the next caller
                if isinstance(exc, TimeoutError):
                    raise ConnectTimeout(f"no connection came free within the call's time ({self._limit} "
                                         f"open)") from None
                raise
            finally:
                if not waiter.done():
                    self._waiters.remove(waiter)

    def release(self, conn: Connection) -> None:
        """``conn``'s answer is over: back to the pool when it can carry another call, else closed."""
        if conn.closed or not conn.keep_alive or self.closed:     # keep_alive: set when the answer completed
            conn.abort()
            return
        conn.idle()
        conn.idle_since = self._loop.time()
        self._idle.append(conn)
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(self._idle_timeout, self._sweep)
        self._wake_one()

    def close(self) -> None:
        """Close every connection; calls waiting for one fail with `ClientClosed`."""
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._open):
            conn.abort()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)     # wakes to find the pool closed

    # -- ---------------------------------------------------------------------------------------------------------

    async def _open_one(self, connect: Callable[[], Awaitable[Connection]]) -> Connection:
        self._connecting += 1
        try:
            conn = await connect()
        except BaseException:
            self._wake_one()                # the place it held is free again
            raise
        finally:
            self._connecting -= 1
        if self.closed:
            conn.abort()
            raise ClientClosed("the HTTP client is closed")
        conn.on_lost = self._lost
        self._open.add(conn)
        return conn

    def _take_idle(self) -> Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if self._loop.time() - conn.idle_since >= self._idle_timeout:
                conn.abort()
                continue
            return conn
        return None

    def _lost(self, conn: Connection) -> None:
        """A connection closed (either side): it leaves the pool, and its place goes to a waiting caller."""
        self._open.discard(conn)
        if not conn.in_use:
            try:
                self._idle.remove(conn)
            except ValueError:
                pass
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep(self) -> None:
        """Close the connections idle for ``idle_timeout``; come back when the oldest of the others will be."""
        self._sweeper = None
        now = self._loop.time()
        idle = self._idle
        while idle and now - idle[0].idle_since >= self._idle_timeout:
            idle.pop(0).abort()
        if idle:
            self._sweeper = self._loop.call_later(idle[0].idle_since + self._idle_timeout - now, self._sweep)

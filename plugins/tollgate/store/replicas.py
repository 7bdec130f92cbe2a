"""How many replicas must hold a write before the Redis store counts it (``WAIT``): every one a failover may promote.

Redis replicates asynchronously. When a Sentinel promotes a replica, the writes it had not received are gone, and a
limit forgets what it admitted. So a write counts only once every replica holds it. That number is learnt, not
configured, as the larger of:

- the master's own count of connected replicas (``connected_slaves`` in ``INFO replication``), and
- the Sentinels' count of the service's replicas that are not down (``SENTINEL REPLICAS``).

Neither alone is safe. While a Sentinel promotes a replica, the old master loses its link to it, so the old
master's count drops; other replicas could then confirm writes that are lost when they follow the new master. The
Sentinels still list the promoted replica, so their count holds. A replica that the master reaches but the Sentinels
cannot may confirm a write in place of the replica they would promote; the master still counts it. A Sentinel that
does not answer leaves the last count it gave: a partition never lowers the count.

The count belongs to the master that a call's connection is on. It is learnt on first use and again whenever that
master changes (a failover), at the cost of one extra round trip then. It is refreshed in the background every
`REFRESH` seconds, and soon after a write the replicas did not confirm (a replica may have been marked down or
added). The price: a replica that dies stops writes until the Sentinels mark it down (their
``down-after-milliseconds``), and a failover stops them until the old master has rejoined as a replica.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis import exceptions as rex

REFRESH = 2.0  # seconds between background refreshes while the store writes
HURRY = 0.25  # the soonest a refresh follows the last one, when a write was not confirmed


class ReplicaCount:
    """The replicas a write must reach, for the master behind ``pool`` (a redis-py asyncio connection pool).

    ``listed`` asks the Sentinels how many replicas of the service are up (None when none answers); without it
    (a plain server) the master's own count decides.
    """

    def __init__(self, pool: Any, listed: Callable[[], Awaitable[int | None]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._listed_now = listed
        self._clock = clock
        self._master: object = None  # the address the counts are for
        self._connected = 0
        self._listed = 0
        self._at = -float("inf")
        self._refreshing: asyncio.Future[None] | None = None

    @property
    def value(self) -> int:
        return max(self._connected, self._listed)

    async def needed(self, connection: Any) -> int:
        """How many replicas must confirm a write made on ``connection`` (a connected redis-py connection)."""
        if address(connection) != self._master:  # first use, or another master: learn its replicas first
            await self._learn(connection)
        elif self._clock() - self._at > REFRESH:
            self.refresh()
        return self.value

    def refresh(self, soon: bool = False) -> None:
        """Learn the count again in the background; ``soon``: because a write was not confirmed."""
        if self._refreshing is not None and not self._refreshing.done():
            return
        if soon and self._clock() - self._at < HURRY:
            return
        self._at = self._clock()  # one refresh at a time, whatever its outcome
        self._refreshing = asyncio.ensure_future(self._refresh())

    def close(self) -> None:
        """Stop a background refresh (the store is closing its connections)."""
        if self._refreshing is not None:
            self._refreshing.cancel()

    async def _refresh(self) -> None:
        try:
            async with asyncio.timeout(REFRESH):
                connection = await self._pool.get_connection()
                try:
                    await self._learn(connection)
                finally:
                    await self._pool.release(connection)
        except (rex.RedisError, OSError, TimeoutError):
            pass  # the next refresh tries again; until then the count stands (and writes it does not fit fail)

    async def _learn(self, connection: Any) -> None:
        await connection.send_command("INFO", "replication")
        connected = connected_replicas(await connection.read_response())
        if self._listed_now is not None:
            listed = await self._listed_now()
            if listed is not None:
                self._listed = listed
        self._master, self._connected, self._at = address(connection), connected, self._clock()


def connected_replicas(info: bytes | str) -> int:
    """``connected_slaves`` of an ``INFO replication`` reply."""
    text = info.decode() if isinstance(info, bytes) else info
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == "connected_slaves":
            return int(value)
    raise rex.ResponseError("INFO replication reports no connected_slaves")


def address(connection: Any) -> object:
    """Which server a redis-py connection is on."""
    return getattr(connection, "path", None) or (connection.host, connection.port)


def sentinel_listed(sentinels: list[Any], service: str) -> Callable[[], Awaitable[int | None]]:
    """Asks the Sentinels (redis-py clients), one after another until one answers, how many replicas of ``service``
    are neither subjectively nor objectively down."""

    async def listed() -> int | None:
        for sentinel in sentinels:
            try:
                replicas = await sentinel.sentinel_slaves(service)
            except (rex.RedisError, OSError, asyncio.TimeoutError):
                continue
            return sum(1 for replica in replicas if not (replica["is_sdown"] or replica["is_odown"]))
        return None

    return listed

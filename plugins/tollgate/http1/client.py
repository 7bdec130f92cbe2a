"""The client: ``await client.request(method, url, headers=..., data=...)`` on keep-alive connections pooled per
origin, for the relay's hot calls (providers, MCP servers). HTTP/1.1 only, no proxy (the relay's aiohttp session
never used one), no cookies, no redirects: a provider's answer is passed on as it is.

Timeouts are aiohttp's ``sock_connect``, ``sock_read`` and ``total``: `Timeouts`. Reading data already buffered
costs no timer; a connection's read timer is re-armed only when it fires while a wait still has time left.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from dataclasses import dataclass
from typing import Any, Mapping

from . import request as _request
from .connection import Connection, connect
from .errors import ClientClosed, Disconnected
from .pool import Pool
from .response import Response
from .url import parse

# A call on a reused connection that the server closed before answering is sent again once on a new one, when the
# method is idempotent (as aiohttp does). A POST is not: the server may have acted on it.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float | None = 30.0    # to make a connection (aiohttp's sock_connect)
    read: float | None = None       # between two arrivals of data, the head's included (sock_read)
    total: float | None = None      # the whole call, body included (total)


class Client:
    """One per event loop; ``close()`` it when the loop's work ends."""

    def __init__(self, *, limit_per_host: int = 256, idle_timeout: float = 60.0, ssl: _ssl.SSLContext | None = None,
                 timeout: Timeouts = Timeouts()) -> None:
        self._loop = asyncio.get_running_loop()
        self._limit = limit_per_host
        self._idle_timeout = idle_timeout
        self._ssl = ssl
        self._timeout = timeout
        self._pools: dict[tuple[str, str, int], Pool] = {}
        self.closed = False

    async def request(self, method: str, url: Any, *, headers: Mapping[str, str] | None = None,
                      data: bytes | bytearray | memoryview | str | None = None,
                      timeout: Timeouts | None = None) -> Response:
        """Send a request; the answer once its status and headers are in (its body is then read from it).
        Raises the errors of `.errors` (and `InvalidRequest` for headers that cannot be sent)."""
        if self.closed:
            raise ClientClosed("the HTTP client is closed")
        if method == "HEAD":
            raise ValueError("HEAD is not supported by this client (no call needs it)")
        target = parse(url if isinstance(url, str) else str(url))
        timeout = timeout or self._timeout
        loop = self._loop
        deadline = loop.time() + timeout.total if timeout.total is not None else None
        if data is None or isinstance(data, bytes):
            body = data
        else:
            body = data.encode() if isinstance(data, str) else bytes(data)
        head = _request.head(method, target, headers, None if body is None else len(body))
        pool = self._pools.get(target.origin)
        if pool is None:
            pool = self._pools[target.origin] = Pool(loop, self._limit, self._idle_timeout)
        tls = self._tls() if target.tls else None

        async def new_connection() -> Connection:
            wait = timeout.connect
            if deadline is not None:
                left = deadline - loop.time()
                wait = left if wait is None or left < wait else wait
            return await connect(loop, target, tls, wait)

        may_resend = method in _IDEMPOTENT
        while True:
            conn = await pool.acquire(new_connection, deadline)
            reused = conn.reused
            conn.send(head, body)
            try:
                await conn.read_head(timeout.read, deadline)
            except Disconnected:
                conn.abort()
                if reused and may_resend:
                    may_resend = False
                    continue
                raise
            except BaseException:
                conn.abort()
                raise
            return Response(conn, pool, timeout.read, deadline)

    async def close(self) -> None:
        """Close every connection; later calls raise `ClientClosed`."""
        self.closed = True
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        await asyncio.sleep(0)              # let the transports report their closing

    def _tls(self) -> _ssl.SSLContext:
        if self._ssl is None:
            self._ssl = _ssl.create_default_context()
        return self._ssl

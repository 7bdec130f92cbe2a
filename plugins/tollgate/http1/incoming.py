"""A request as the relay's server received it: its head, parsed once, and its body as it arrives.

Shaped like the part of aiohttp's ``BaseRequest`` the relay and its plugins use (``method``, ``path``,
``query_string``, ``headers``, ``content_length``, ``content``, ``rel_url``, ``transport``), so the handlers read
the same whichever server runs them. ``path`` and ``query_string`` are decoded as aiohttp decodes them (by yarl);
most requests have nothing to decode and skip it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, AsyncIterator, NamedTuple

from multidict import CIMultiDictProxy
from yarl import URL

if TYPE_CHECKING:
    from .server import ServerConnection


class RequestBodyTooLarge(Exception):
    """The body grew past the server's cap (``max_body``); the rest of it is not read."""

    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(f"request body is larger than {limit} bytes")


class MalformedRequest(Exception):
    """The rest of the request (its body's framing) is not valid HTTP/1.1; the connection is closed."""


class RelUrl(NamedTuple):
    """The request target as it came (not decoded): what ``rel_url`` gives in aiohttp."""
    raw_path: str
    raw_query_string: str


class Body:
    """The request body: chunks wait in a list until the handler takes them (``read_nowait``, ``iter_any``,
    ``read``); the connection stops reading the socket while too much waits (`ServerConnection.consumed`)."""

    __slots__ = ("_connection", "_chunks", "_buffered", "_eof", "_error", "_waiter", "_continue")

    def __init__(self, connection: ServerConnection | None, expect_continue: bool = False):
        self._connection = connection
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._eof = connection is None
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._continue = expect_continue     # ``Expect: 100-continue``: the client waits for a word before sending

    # -- the connection's side --------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        self._wake()

    def end(self) -> None:
        self._eof = True
        self._continue = False
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self._eof:
            self._error = error
            self._eof = True
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- the handler's side -----------------------------------------------------------------------------------

    def is_eof(self) -> bool:
        """The whole body has arrived, or it failed (what is buffered is all there will be)."""
        return self._eof

    def read_nowait(self) -> bytes:
        """What has arrived and was not taken yet."""
        if self._error is not None:      # a failed body is never taken as whole (as aiohttp's reader)
            raise self._error
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._taken()
        return data

    async def readany(self) -> bytes:
        """The next data to arrive (b"" at the end)."""
        while not self._chunks:
            if self._eof:
                break
            await self._wait()
        return self.read_nowait()

    async def iter_any(self) -> AsyncIterator[bytes]:
        while True:
            data = await self.readany()
            if not data:
                return
            yield data

    async def read(self) -> bytes:
        parts = []
        while data := await self.readany():
            parts.append(data)
        return b"".join(parts)

    async def _wait(self) -> None:
        connection = self._connection
        if self._continue and connection is not None:
            self._continue = False
            connection.send_continue()
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        await waiter

    def _taken(self) -> None:
        self._buffered = 0
        if self._connection is not None:
            self._connection.consumed()


class Request:
    """One request's head and body (see the module's doc)."""

    __slots__ = ("method", "raw_path", "raw_query_string", "version", "headers", "keep_alive", "content",
                 "_connection", "_decoded", "__weakref__")

    def __init__(self, method: str, raw_path: str, raw_query_string: str, version: tuple[int, int],
                 headers: CIMultiDictProxy[str], keep_alive: bool, content: Body,
                 connection: ServerConnection | None = None):
        self.method = method
        self.raw_path = raw_path
        self.raw_query_string = raw_query_string
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.content = content
        self._connection = connection
        self._decoded: URL | None = None

    @property
    def path(self) -> str:
        raw = self.raw_path
        return raw if "%" not in raw else self._url().path

    @property
    def query_string(self) -> str:
        raw = self.raw_query_string
        return raw if "%" not in raw and "+" not in raw else self._url().query_string

    @property
    def rel_url(self) -> RelUrl:
        return RelUrl(self.raw_path, self.raw_query_string)

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None else None

    async def read(self) -> bytes:
        """The whole body (no cap of its own: the server's ``max_body`` holds)."""
        return await self.content.read()

    @property
    def transport(self) -> asyncio.Transport | None:
        """The connection's transport while it is open (None once it closed)."""
        connection = self._connection
        return connection.transport if connection is not None else None

    def _url(self) -> URL:
        if self._decoded is None:
            self._decoded = URL.build(path=self.raw_path, query_string=self.raw_query_string, encoded=True)
        return self._decoded

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.raw_path}>"

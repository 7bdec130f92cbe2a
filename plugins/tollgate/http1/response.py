"""An answer as it arrives: status and headers at once, the body read whole or chunk by chunk.

Shaped like the part of aiohttp's ``ClientResponse`` the relay used (``status``, ``reason``, ``headers``,
``read()``, ``content.iter_any()``, ``content.readany()``, ``release()``, ``close()``, ``async with``), so the call
sites changed little. The connection goes back to the pool as soon as the whole body has been taken; ``release()``
before that closes it, as ``close()`` does: an answer half read is never left on a reused connection, and closing
is how a provider learns that nobody wants the rest (it stops generating).
"""

from __future__ import annotations

from typing import Any

from multidict import CIMultiDictProxy

from .connection import Connection
from .decoding import Inflater, inflater
from .errors import HTTPError
from .pool import Pool


class Response:
    __slots__ = ("status", "reason", "headers", "_conn", "_pool", "_timeout", "_deadline", "_inflater",
                 "_undecodable", "_body")

    def __init__(self, conn: Connection, pool: Pool, read_timeout: float | None, deadline: float | None) -> None:
        assert conn.headers is not None
        self.status = conn.status
        self.reason = conn.reason
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(conn.headers)
        self._conn: Connection | None = conn
        self._pool = pool
        self._timeout = read_timeout
        self._deadline = deadline
        self._inflater: Inflater | None = None
        self._undecodable: HTTPError | None = None
        self._body: bytes | None = None
        encoding = conn.headers.get("Content-Encoding")
        if encoding is not None:
            try:
                self._inflater = inflater(encoding)
            except HTTPError as exc:
                self._undecodable = exc     # raised when the body is read: the status and headers still count
        if conn.complete and conn.drained:
            self._end()                     # no body (or an empty one): the connection is free at once

    @property
    def complete(self) -> bool:
        """The whole answer has arrived (it may not all be read yet): `release()` keeps its connection."""
        return self._conn is None or self._conn.complete

    @property
    def content(self) -> "Response":
        """The body as a stream (``iter_any``, ``readany``), as aiohttp's ``response.content``."""
        return self

    def lift_deadline(self) -> None:
        """From now on only the read timeout bounds the waits: a stream that has started may run as long as its
        chunks keep coming, past the call's deadline."""
        self._deadline = None

    async def read(self) -> bytes:
        """The whole body (decoded); the same bytes again on a second call."""
        if self._body is not None:
            return self._body
        conn = self._conn
        if conn is None:
            self._body = b""
            return self._body
        self._check_decodable()
        chunks: list[bytes] = []
        while True:
            chunks += conn.take()
            if conn.complete:
                break
            if conn.error is not None:
                self.close()
                raise conn.error
            await conn.wait(self._timeout, self._deadline)
        self._end()
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if self._inflater is not None:
            body = self._decode(body, True)
        self._body = body
        return body

    async def readany(self) -> bytes:
        """The next bytes of the body as they arrive (decoded); b"" at its end."""
        while True:
            conn = self._conn
            if conn is None:
                return b""
            self._check_decodable()
            chunks = conn.take()
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                ended = conn.complete           # and all of it taken just now
                if self._inflater is not None:
                    data = self._decode(data, ended)
                if ended:
                    self._end()
                if data:
                    return data
                continue
            if conn.complete:
                tail = self._decode(b"", True) if self._inflater is not None else b""
                self._end()
                return tail
            if conn.error is not None:
                self.close()
                raise conn.error
            await conn.wait(self._timeout, self._deadline)

    def iter_any(self) -> "_Chunks":
        """``async for data in response.content.iter_any()``: the body's bytes as they arrive."""
        return _Chunks(self)

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool if the answer is complete, else it closes."""
        if self.complete:
            self._end()
        else:
            self.close()

    def close(self) -> None:
        """Drop the connection, whatever was read (no-op once the body was taken whole)."""
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.abort()

    async def __aenter__(self) -> "Response":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.release()

    def __del__(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            try:
                conn.abort()                # forgotten mid-answer: the connection must not stay half read
            except RuntimeError:            # its event loop is already closed, and the socket with it
                pass

    # -- ---------------------------------------------------------------------------------------------------------

    def _end(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            self._pool.release(conn)

    def _check_decodable(self) -> None:
        if self._undecodable is not None:
            self.close()
            raise self._undecodable

    def _decode(self, data: bytes, last: bool) -> bytes:
        assert self._inflater is not None
        try:
            out = self._inflater.decode(data) if data else b""
            return out + self._inflater.flush() if last else out
        except HTTPError:
            self.close()
            raise


class _Chunks:
    __slots__ = ("_response",)

    def __init__(self, response: Response) -> None:
        self._response = response

    def __aiter__(self) -> "_Chunks":
        return self

    async def __anext__(self) -> bytes:
        data = await self._response.readany()
        if not data:
            raise StopAsyncIteration
        return data

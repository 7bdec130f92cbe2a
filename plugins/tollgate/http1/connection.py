"""One HTTP/1.1 connection: an asyncio Protocol whose answers llhttp (through ``httptools``) parses as data arrives.

Why not aiohttp's client here: on the relay's hot path its per-call machinery (request and response objects,
stream readers, timers, tracing hooks) costs more CPU than the rest of a proxied request. Here the C parser runs
straight on the socket's data; the body's chunks wait in a list until the reader takes them; a reader waits only
when nothing is buffered, and its read timeout is one timer per connection, not one per wait; and when the reader
falls behind, the socket stops being read (back-pressure).

One answer at a time (no pipelining). A connection that misbehaves (data out of turn, a broken answer, a timeout,
a cancelled reader) is closed, never reused.
"""

from __future__ import annotations

import asyncio
import math
import ssl as _ssl
from typing import Callable

import httptools
from multidict import CIMultiDict

from .errors import (BrokenBody, ConnectError, ConnectTimeout, Disconnected, HTTPError, InvalidResponse,
                     ReadTimeout)
from .url import Target

HIGH_WATER = 256 * 1024     # buffered body bytes at which the socket is no longer read until the reader catches up
MAX_HEAD = 64 * 1024        # bytes of one status line and its headers
MAX_HEADERS = 256           # header lines in one answer
_ONE_WRITE = 64 * 1024      # a body up to this size leaves in one write with its head


class _OutOfTurn(Exception):
    """The server began another answer though none was asked for."""


class Connection(asyncio.Protocol):
    """The state of one connection and of the answer it is receiving (``status``, ``headers``, body chunks,
    ``complete``, ``error``). Its owner (the pool) is told when it closes, through ``on_lost``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False                 # it served a call before this one
        self.idle_since = 0.0               # loop time it went back to the pool
        self.on_lost: Callable[[Connection], None] | None = None
        self.in_use = False
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        # The read timeout: one timer per connection, re-armed only when it fires while a wait has time left (a
        # wait is due at ``_due``), so a wait costs no timer of its own.
        self._timer: asyncio.TimerHandle | None = None
        self._due = math.inf
        self._wait_timeout = 0.0
        self._new_answer()

    def _new_answer(self) -> None:
        self.status = 0
        self.reason = ""
        self.headers: CIMultiDict[str] | None = None    # set once the (final) answer's head is complete
        self.complete = False               # the whole answer has arrived (it may not all be taken yet)
        self.keep_alive = False
        self.error: HTTPError | None = None
        self._raw: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._framed = True                 # the body has a length or chunks (else it ends when the connection does)
        self._head_size = 0                 # bytes received while the head was incomplete
        self._header_bytes = 0              # bytes of the header lines parsed

    # -- the caller's side -------------------------------------------------------------------------------------

    def send(self, head: bytes, body: bytes | None) -> None:
        """Write a request; its answer is then parsed into this connection's state."""
        self._new_answer()
        self.in_use = True
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            self.error = Disconnected("the connection closed before the request was sent")
            return
        if not body:
            transport.write(head)
        elif len(body) <= _ONE_WRITE:
            transport.write(head + body)
        else:
            transport.write(head)
            transport.write(body)

    async def read_head(self, timeout: float | None, deadline: float | None) -> None:
        """Until the answer's status and headers are in (an error raises)."""
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self.wait(timeout, deadline)

    async def wait(self, timeout: float | None, deadline: float | None) -> None:
        """Until more of the answer arrives, or it ends or fails. Nothing arriving for ``timeout`` s (or by
        ``deadline``, in loop time) fails the answer with `ReadTimeout`. A cancelled wait closes the connection:
        an answer half read is never reused, and the closed connection tells the server the caller went away."""
        loop = self._loop
        waiter = loop.create_future()
        self._waiter = waiter
        if timeout is None and deadline is None:
            self._due = math.inf
        else:
            now = loop.time()
            due = now + timeout if timeout is not None else math.inf
            if deadline is not None and deadline < due:
                due = deadline
            self._due = due
            self._wait_timeout = due - now
            if self._timer is None or self._timer.when() > due:
                self._arm(due)
        try:
            await waiter
        except asyncio.CancelledError:
            self.abort()
            raise
        finally:
            self._waiter = None

    @property
    def head_done(self) -> bool:
        """The answer's status line and headers are in (a 1xx answer's do not count)."""
        return self.headers is not None

    @property
    def drained(self) -> bool:
        """No body chunk is waiting to be taken."""
        return not self._chunks

    def take(self) -> list[bytes]:
        """The body chunks received and not yet taken (reading resumes if it was paused for them)."""
        chunks = self._chunks
        if chunks:
            self._chunks = []
            self._buffered = 0
            if self._paused:
                self._paused = False
                if not self.closed and self.transport is not None:
                    self.transport.resume_reading()
        return chunks

    def idle(self) -> None:
        """The answer is over and the connection waits for its next call."""
        self.in_use = False
        self.reused = True
        self.take()                         # what the caller left unread is dropped (reading resumes)

    def abort(self) -> None:
        """Close at once (unsent data dropped); ``on_lost`` follows from the loop."""
        if not self.closed:
            self.closed = True
            self._disarm()
            if self.transport is not None:
                self.transport.abort()

    # -- asyncio.Protocol ----------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.in_use or self.complete:
            self._out_of_turn()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _OutOfTurn):
                self._out_of_turn()
            else:
                self._fail(cause if isinstance(cause, HTTPError) else self._malformed(exc))
            return
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(self._malformed(exc))
            return
        if not self.head_done:
            self._head_size += len(data)
            if self._head_size > MAX_HEAD:
                self._fail(InvalidResponse(f"the answer's head is larger than {MAX_HEAD} bytes"))
                return
        elif self._buffered > HIGH_WATER and not self._paused and not self.complete and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        return False                        # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        if self.in_use and not self.complete and self.error is None:
            if self.head_done and not self._framed and exc is None:
                self.complete = True        # a body that ends with the connection, and it did
            elif self.head_done:
                self.error = BrokenBody("the connection closed before the answer's body was complete")
            else:
                self.error = Disconnected("the server closed the connection before answering")
        self._wake()
        if self.on_lost is not None:
            self.on_lost(self)

    # -- llhttp's callbacks ----------------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            raise _OutOfTurn
        self._raw = []

    def on_status(self, reason: bytes) -> None:
        self.reason = reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        raw = self._raw
        raw.append((name, value))
        self._header_bytes += len(name) + len(value) + 4
        if len(raw) > MAX_HEADERS:
            raise InvalidResponse(f"the answer has more than {MAX_HEADERS} headers")
        if self._header_bytes > MAX_HEAD:
            raise InvalidResponse(f"the answer's head is larger than {MAX_HEAD} bytes")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            if status == 101:
                raise InvalidResponse("the server switched protocols, which no call asked for")
            return                          # 100 Continue, 103 Early Hints...: the answer itself follows
        headers = CIMultiDict([(name.decode("latin-1"), value.decode("utf-8", "replace")) for name, value in self._raw])
        self.status = status
        self.headers = headers
        self._framed = "Content-Length" in headers or "chunked" in headers.get("Transfer-Encoding", "").lower()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)

    def on_message_complete(self) -> None:
        if not self.head_done:
            return                          # a 1xx answer ended: the real one follows
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive()

    # -- ---------------------------------------------------------------------------------------------------------

    def _malformed(self, exc: Exception) -> HTTPError:
        if self.head_done:
            return BrokenBody(f"the answer's body is malformed ({exc})")
        return InvalidResponse(f"the answer is not valid HTTP/1.1 ({exc})")

    def _out_of_turn(self) -> None:
        """Data from the server when no answer is expected: never reuse the connection (what was already received
        of a complete answer stays readable)."""
        self.abort()
        self._wake()

    def _fail(self, error: HTTPError) -> None:
        if self.error is None:
            self.error = error
        self.abort()
        self._wake()

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(at, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        """The timer fired: fail the wait under way if it is due, else come back when it will be."""
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done() or self._due == math.inf:
            return                          # no bounded wait under way: the next one arms the timer again
        if self._loop.time() >= self._due:
            self._fail(ReadTimeout(f"nothing arrived from the server within {max(self._wait_timeout, 0.0):.3g} s"))
        else:
            self._arm(self._due)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


async def connect(loop: asyncio.AbstractEventLoop, target: Target, tls: _ssl.SSLContext | None,
                  timeout: float | None) -> Connection:
    """A new connection to ``target``'s origin (TLS with SNI for https); `ConnectError` or `ConnectTimeout`."""
    try:
        async with asyncio.timeout(timeout):
            _, conn = await loop.create_connection(lambda: Connection(loop), target.host, target.port,
                                                   ssl=tls if target.tls else None,
                                                   server_hostname=target.host if target.tls else None)
    except TimeoutError:
        within = f" within {timeout:g} s" if timeout is not None else ""
        raise ConnectTimeout(f"no connection to {target.authority}{within}") from None
    except OSError as exc:
        raise ConnectError(f"cannot connect to {target.authority}: {exc.strerror or exc}") from exc
    return conn

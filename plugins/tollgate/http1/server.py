"""The relay's HTTP/1.1 server: an asyncio Protocol whose requests llhttp (through ``httptools``) parses as data
arrives, each handed to one handler coroutine (``handler(request) -> StreamResponse``).

Why not aiohttp's server: its per-request machinery (a stream reader per request, URL objects, a request factory,
its writer) was 15-20% of the relay's CPU in a profile of the proxy benchmark; ``bench/http_server.py`` measures
both servers. This serves what the relay needs and no more: keep-alive; pipelined requests answered one at a time, in order; Content-Length and
chunked request bodies, with ``Expect: 100-continue`` answered when the handler first waits for the body; a cap on
the head (`MAX_HEAD`, `MAX_HEADERS`) and on the body (``max_body``); back-pressure both ways (the socket is not
read while a body waits untaken, a handler's write waits while the client does not read); a client that leaves
cancels its request's handler (the provider call with it); idle keep-alive connections close after
``keepalive_timeout``; `Server.shutdown` lets the requests under way finish.

A request that is not HTTP/1.x is answered 400 (431 when its head is too large) and the connection closed; so is a
handler's failure (500), as aiohttp answers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from typing import Awaitable, Callable

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from .incoming import Body, MalformedRequest, Request, RequestBodyTooLarge
from .outgoing import REASONS, Response, StreamResponse, http_date

Handler = Callable[[Request], Awaitable[StreamResponse]]

HIGH_WATER = 256 * 1024     # untaken body bytes at which the socket is no longer read until the handler takes them
MAX_HEAD = 64 * 1024        # bytes of one request line and its headers
MAX_HEADERS = 256           # header lines in one request
MAX_PIPELINED = 16          # requests received ahead of their turn before the socket is no longer read
KEEPALIVE_TIMEOUT = 3630.0  # seconds an idle connection stays open (aiohttp's default: longer than any client's)
SHUTDOWN_TIMEOUT = 60.0     # seconds `Server.shutdown` gives the requests under way
LINGER = 2.0                # seconds a refused client's data is still read (and dropped) after the refusal
CANCEL_GRACE = 5.0          # seconds it then gives the cleanup of those it cancelled

logger = logging.getLogger("tollgate.http1.server")


class _Refused(Exception):
    """Stops the parser: the request is answered ``status`` and the connection closed."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


class _BodyCapped(Exception):
    """Stops the parser: the body passed ``max_body`` (its handler sees `RequestBodyTooLarge`)."""


class ServerConnection(asyncio.Protocol):
    """One client connection: the requests received on it (``_queue``, the first being answered) and the task
    that answers them."""

    def __init__(self, server: Server):
        self._server = server
        self._loop = server.loop
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._queue: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        self._started: Request | None = None      # the request whose answer's head was sent
        self._parsing: Request | None = None      # the request whose body is arriving
        self._received = 0                        # its body bytes so far
        self._url = b""
        self._raw: list[tuple[bytes, bytes]] = []
        self._in_head = False
        self._head_bytes = 0                      # received in parts while the head was incomplete
        self._ended = False                       # a request ended in the data being parsed
        self._refusal: _Refused | None = None     # answered once the requests before it are
        self._last = False                        # no request after the ones received is read
        self._stopping = False                    # the server is shutting down: close after the current answer
        self._read_paused = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._idle_since = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # an SSE event leaves when written
        self._server.connections.add(self)
        self._arm(self._idle_since + self._server.keepalive_timeout)

    def data_received(self, data: bytes) -> None:
        if self._last:
            return                                # after a refusal, a non-keep-alive request or an upgrade
        self._ended = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _BodyCapped):
                self._last = True
            else:
                self._refuse(cause if isinstance(cause, _Refused) else _Refused(400, str(exc)))
        except httptools.HttpParserUpgrade:
            self._last = True                     # no protocol switch here: the request is answered, then closed
            if self._parsing is not None:
                self._parsing.content.fail(MalformedRequest("an upgrade request's body is not read"))
                self._parsing = None
        except httptools.HttpParserError as exc:
            self._refuse(_Refused(400, f"invalid HTTP request ({exc})"))
        else:
            if self._in_head and not self._ended:  # all of this data is the head so far (llhttp holds a part line)
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD:
                    self._refuse(_Refused(431, f"the request's head is larger than {MAX_HEAD} bytes"))
        self._update_reading()
        if self._task is None and (self._queue or self._refusal is not None):
            self._task = self._loop.create_task(self._serve())

    def eof_received(self) -> bool:
        return False                              # as aiohttp: a client that stops sending has left

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._server.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._parsing is not None:
            self._parsing.content.fail(ConnectionResetError("the client closed the connection"))
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(ConnectionResetError("the client closed the connection"))
        task = self._task
        if task is not None and not task.done():
            task.cancel()                         # the handler's work (a provider call) ends with its client

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_result(None)

    # -- llhttp's callbacks ----------------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._raw = []
        self._in_head = True
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_HEAD:
            raise _Refused(431, f"the request's head is larger than {MAX_HEAD} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        # Counted when the head is complete: what a head can hold before then is bounded by the data received.
        self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        raw = self._raw
        if len(raw) > MAX_HEADERS:
            raise _Refused(431, f"the request has more than {MAX_HEADERS} headers")
        if len(self._url) + sum(len(n) + len(v) + 4 for n, v in raw) > MAX_HEAD:
            raise _Refused(431, f"the request's head is larger than {MAX_HEAD} bytes")
        self._head_bytes = 0
        parser = self._parser
        headers = CIMultiDictProxy(CIMultiDict(
            [(n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape")) for n, v in self._raw]))
        url = self._url.decode("utf-8", "surrogateescape")
        if not url.startswith("/"):
            raise _Refused(400, "the request target must be a path (origin-form)")
        path, question, query = url.partition("?")      # split as aiohttp's parser splits it
        if question:
            query = query.partition("#")[0]
        else:
            path = path.partition("#")[0]
        version = (1, 1) if parser.get_http_version() == "1.1" else (1, 0)
        if version == (1, 1) and "Host" not in headers:
            raise _Refused(400, "an HTTP/1.1 request must have a Host header")
        expect = headers.get("Expect", "").lower() == "100-continue" and version == (1, 1)
        request = Request(parser.get_method().decode("ascii"), path, query, version, headers,
                          parser.should_keep_alive(), Body(self, expect), self)
        self._parsing = request
        self._received = 0
        self._queue.append(request)

    def on_body(self, body: bytes) -> None:
        request = self._parsing
        assert request is not None
        self._received += len(body)
        if self._received > self._server.max_body:
            request.content.fail(RequestBodyTooLarge(self._server.max_body))
            self._parsing = None
            raise _BodyCapped
        request.content.feed(body)

    def on_message_complete(self) -> None:
        self._ended = True
        request = self._parsing
        if request is not None:
            request.content.end()
            self._parsing = None
            if not request.keep_alive:
                self._last = True

    # -- what the answers call (outgoing.py) -------------------------------------------------------------------

    def keep_alive_for(self, request: Request) -> bool:
        """Whether the connection serves another request after ``request``'s answer."""
        if not (request.keep_alive and not self._stopping and request.content.is_eof()):
            return False
        # After the last request read, the connection closes, unless a refusal is still to be sent on it.
        return not (self._last and self._refusal is None and len(self._queue) <= 1)

    async def start(self, response: StreamResponse, head: bytes, request: Request) -> None:
        if not self._queue or self._queue[0] is not request:
            raise RuntimeError("an answer can only be sent to the request being answered on its connection")
        request.content._continue = False         # answered: no 100 Continue any more
        self._started = request
        await self.send(head)

    async def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        transport.write(data)
        if self._write_paused:
            drain = self._drain
            if drain is None:
                drain = self._drain = self._loop.create_future()
            await asyncio.shield(drain)           # shared by the writers waiting: one cancelled spares the others

    def send_continue(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def consumed(self) -> None:
        """A handler took buffered body bytes: the socket may be read again."""
        if self._read_paused:
            self._update_reading()

    # -- serving ------------------------------------------------------------------------------------------------

    async def _serve(self) -> None:
        """Answer the requests received, one at a time, in order; then the refusal, if parsing stopped on one."""
        try:
            while self._queue:
                request = self._queue[0]
                keep_alive = await self._answer(request)
                self._queue.popleft()
                if not keep_alive:
                    self._close()
                    return
                self._update_reading()
            if self._refusal is not None:
                self._send_refusal(self._refusal)
        finally:
            self._task = None
            self._idle_since = self._loop.time()

    async def _answer(self, request: Request) -> bool:
        """Run the handler for ``request`` and end its answer; whether the connection may serve another."""
        try:
            response = await self._server.handler(request)
            if not response.prepared:
                await response.prepare(request)
            await response.write_eof()
        except asyncio.CancelledError:
            raise
        except ConnectionResetError:
            return False
        except Exception:
            logger.exception("the relay's handler failed on %s %s", request.method, request.raw_path)
            if self._started is not request:      # else a half-sent answer: the client must see it cut
                failed = Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")
                failed.keep_alive = False
                with contextlib.suppress(ConnectionResetError):
                    await failed.prepare(request)
            return False
        return response.keep_alive

    def _refuse(self, refusal: _Refused) -> None:
        """Stop reading: the request being received is refused once those before it are answered."""
        self._last = True
        if self._parsing is not None:             # its handler fails on the body, as with aiohttp (a 500)
            self._parsing.content.fail(MalformedRequest(f"the request's body is malformed ({refusal})"))
            self._parsing = None
        self._refusal = refusal

    def _send_refusal(self, refusal: _Refused) -> None:
        transport = self.transport
        if transport is None:
            return
        reason = REASONS.get(refusal.status, "")
        body = f"{refusal.status} {reason}\n\n{refusal}".encode("utf-8", "replace")
        transport.write(f"HTTP/1.1 {refusal.status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        f"Content-Length: {len(body)}\r\nDate: {http_date()}\r\nConnection: close\r\n\r\n".encode()
                        + body)
        if transport.can_write_eof():   # the client may still be sending: closing now would reset the refusal away
            transport.write_eof()
            self._loop.call_later(LINGER, self._close)
        else:
            self._close()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None:
            return
        parsing = self._parsing
        # Not paused for ``_last`` (what follows is ignored): a paused socket would not tell when its client leaves.
        pause = (len(self._queue) >= MAX_PIPELINED
                 or (parsing is not None and parsing.content._buffered > HIGH_WATER))
        if pause != self._read_paused:
            self._read_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _close(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.close()

    def stop(self) -> None:
        """The server is shutting down: close now if idle, else after the answer under way."""
        self._stopping = True
        self._last = True
        if self._task is None:
            self._close()

    def abort(self) -> None:
        """Shutdown's time is up: end the work under way and the connection."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        transport = self.transport
        if transport is not None:
            transport.abort()

    # -- the idle timeout: one timer per connection, re-armed only when it fires early ------------------------

    def _arm(self, at: float) -> None:
        self._timer = self._loop.call_at(at, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self.transport is None:
            return
        if self._task is not None or self._queue:
            self._arm(self._loop.time() + self._server.keepalive_timeout)
            return
        due = self._idle_since + self._server.keepalive_timeout
        if self._loop.time() >= due:
            self._close()
        else:
            self._arm(due)

    @property
    def busy(self) -> bool:
        return self._task is not None


class Server:
    """Serves ``handler`` on the listeners `listen` opens; `shutdown` closes them and lets the answers under way
    finish (up to ``timeout`` seconds, after which their handlers are cancelled)."""

    def __init__(self, handler: Handler, *, max_body: int, keepalive_timeout: float = KEEPALIVE_TIMEOUT):
        self.handler = handler
        self.max_body = max_body
        self.keepalive_timeout = keepalive_timeout
        self.loop = asyncio.get_running_loop()
        self.connections: set[ServerConnection] = set()
        self._listeners: list[asyncio.AbstractServer] = []

    def __call__(self) -> ServerConnection:
        return ServerConnection(self)

    async def listen(self, host: str, port: int, **options: object) -> asyncio.AbstractServer:
        listener = await self.loop.create_server(self, host, port, reuse_address=True, **options)  # type: ignore[arg-type]
        self._listeners.append(listener)
        return listener

    async def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        for connection in list(self.connections):
            connection.stop()
        busy = [c._task for c in self.connections if c._task is not None]
        if busy:
            await asyncio.wait(busy, timeout=timeout)
        for connection in list(self.connections):
            connection.abort()
        late = [task for task in busy if not task.done()]
        if late:   # cancelled: their cleanup (a request's after stages) still runs before the process goes on
            await asyncio.wait(late, timeout=CANCEL_GRACE)

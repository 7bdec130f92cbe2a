"""The mock LLM server core: routing, scripting, recording, timing and faults (wire formats live in ``formats/``)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip as _gzip
import itertools
import re
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from . import formats as _formats
from .admin import handle_admin
from .formats import Call, Endpoint, Format, Frames, MockError
from .reply import Reply
from .text import count_tokens as _count_tokens

try:  # pragma: no cover - uvloop is a dependency, but stay importable without it
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

clock = time.perf_counter
"""The clock of every recorded instant (CLOCK_MONOTONIC on Linux: comparable across processes on one host)."""

ReplySource = Reply | Callable[["RecordedRequest"], Reply | None]

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo-instruct", "text-embedding-3-small",
                  "text-embedding-3-large")
ADMIN_PREFIX = "/__mock/"


class RecordedRequest:
    """One request as received, plus what the mock did with it (filled in as the answer goes out)."""

    __slots__ = ("method", "path", "query_string", "headers", "body", "json", "endpoint", "model", "stream",
                 "received_at", "reply", "status", "headers_at", "chunk_times", "done_at", "disconnected")

    def __init__(self, method: str, path: str, query_string: str, headers: Mapping[str, str], body: bytes,
                 json: Any, endpoint: str | None, model: str | None, stream: bool, received_at: float) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers  #: case-insensitive multidict of the request headers
        self.body = body  #: raw body bytes
        self.json = json  #: parsed body when it was JSON, else None
        self.endpoint = endpoint  #: e.g. "openai.chat", None when no route matched
        self.model = model  #: requested model (body, or path for formats that carry it there)
        self.stream = stream  #: whether the request asked for a stream
        self.received_at = received_at  #: clock() when the whole body had been read
        self.reply: Reply | None = None  #: the Reply used
        self.status: int | None = None  #: HTTP status sent (None: connection closed before any)
        self.headers_at: float | None = None  #: clock() when the status line and headers went out
        self.chunk_times: list[float] = []  #: clock() after each content chunk was written (streams)
        self.done_at: float | None = None  #: clock() when the answer was complete (or cut)
        self.disconnected = False  #: the connection was closed mid-answer (by the client or a scripted fault)

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self.query_string, keep_blank_values=True))

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "path": self.path, "query": self.query,
            "headers": {str(k): v for k, v in self.headers.items()},
            "body": self.text, "json": self.json, "endpoint": self.endpoint, "model": self.model,
            "stream": self.stream, "status": self.status, "received_at": self.received_at,
            "headers_at": self.headers_at, "chunk_times": self.chunk_times, "done_at": self.done_at,
            "disconnected": self.disconnected,
        }

    def __repr__(self) -> str:
        return f"<RecordedRequest {self.method} {self.path} model={self.model!r} status={self.status}>"


class Rule:
    """A filter plus the reply it gives. ``path``: suffix string or compiled regex; ``model``: exact; ``endpoint``:
    endpoint name (e.g. ``"openai.chat"``) or its short form (``"chat"``); ``match``: predicate on the request."""

    __slots__ = ("reply", "path", "model", "endpoint", "match", "_mock")

    def __init__(self, reply: ReplySource, *, path: str | re.Pattern[str] | None = None, model: str | None = None,
                 endpoint: str | None = None, match: Callable[[RecordedRequest], bool] | None = None) -> None:
        self.reply = reply
        self.path = path
        self.model = model
        self.endpoint = endpoint
        self.match = match
        self._mock: MockLLM | None = None

    def matches(self, rec: RecordedRequest) -> bool:
        if self.path is not None:
            if isinstance(self.path, str):
                if not rec.path.endswith(self.path):
                    return False
            elif self.path.search(rec.path) is None:
                return False
        if self.model is not None and rec.model != self.model:
            return False
        if self.endpoint is not None and rec.endpoint != self.endpoint and (
                rec.endpoint is None or rec.endpoint.split(".", 1)[-1] != self.endpoint):
            return False
        if self.match is not None and not self.match(rec):
            return False
        return True

    def remove(self) -> None:
        """Stop applying this rule (persistent rules only)."""
        if self._mock is not None:
            self._mock.remove_rule(self)


class MockLLM:
    """A scriptable mock LLM upstream speaking real provider wire formats over HTTP.

    ``reply_text``: fixed default answer text (default: echo the last user message); ``default``: the Reply used when
    nothing scripted matches; ``formats``: names of the wire formats to serve (default: all builtin);
    ``record_limit``: how many requests ``requests`` keeps (0: none); ``embedding_dims``: default vector size;
    ``models``: ids listed by the models endpoints; ``validate``: reject requests the real API would reject (400);
    ``count_tokens``: the token counter (default: words + punctuation); ``admin``: serve the ``/__mock/`` control API.
    """

    def __init__(
        self,
        *,
        reply_text: str | None = None,
        default: ReplySource | None = None,
        formats: list[str] | tuple[str, ...] | None = None,
        record_limit: int = 10_000,
        embedding_dims: int = 1536,
        models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
        default_model: str = "mock-model",
        validate: bool = True,
        count_tokens: Callable[[str], int] = _count_tokens,
        admin: bool = True,
        shutdown_timeout: float = 1.0,
    ) -> None:
        self.reply_text = reply_text
        self.default: ReplySource = default if default is not None else Reply()
        self._initial_default = self.default
        self.embedding_dims = embedding_dims
        self.models = tuple(models)
        self.default_model = default_model
        self.validate = validate
        self.count_tokens = count_tokens
        self.admin = admin
        self.shutdown_timeout = shutdown_timeout
        self.formats: list[Format] = _formats.load(formats)
        self.request_count = 0  #: requests received since start (or the last clear), recorded or not

        self._lock = threading.Lock()
        self._queue: list[Rule] = []
        self._rules: list[Rule] = []
        self._records: deque[RecordedRequest] = deque(maxlen=max(record_limit, 0))
        self._record = record_limit > 0
        self._seq = itertools.count(1)
        routes: dict[str, list[Endpoint]] = {}
        for fmt in self.formats:
            for ep in fmt.endpoints():
                routes.setdefault(ep.method, []).append(ep)
        for eps in routes.values():
            eps.sort(key=lambda e: e.priority, reverse=True)
        self._routes = routes
        self._route_cache: dict[tuple[str, str], Endpoint | None] = {}

        self._runner: web.ServerRunner | None = None
        self._host = "127.0.0.1"
        self.port: int | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------------------------------------ scripting
    def enqueue(self, *replies: ReplySource, path: str | re.Pattern[str] | None = None, model: str | None = None,
                endpoint: str | None = None, match: Callable[[RecordedRequest], bool] | None = None,
                times: int = 1) -> None:
        """Queue one-shot replies, consumed in order by the next matching requests (thread-safe)."""
        items = [Rule(r, path=path, model=model, endpoint=endpoint, match=match)
                 for _ in range(times) for r in replies]
        with self._lock:
            self._queue.extend(items)

    def add_rule(self, reply: ReplySource, *, path: str | re.Pattern[str] | None = None, model: str | None = None,
                 endpoint: str | None = None, match: Callable[[RecordedRequest], bool] | None = None) -> Rule:
        """A persistent reply for every matching request (after the queue, before ``default``). Thread-safe."""
        rule = Rule(reply, path=path, model=model, endpoint=endpoint, match=match)
        rule._mock = self
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove_rule(self, rule: Rule) -> None:
        with self._lock:
            with contextlib.suppress(ValueError):
                self._rules.remove(rule)

    @property
    def pending(self) -> int:
        """How many queued replies have not been consumed yet."""
        return len(self._queue)

    def reset(self) -> None:
        """Forget queue, rules and recordings; back to the ``default`` given to the constructor."""
        with self._lock:
            self._queue.clear()
            self._rules.clear()
            self._records.clear()
            self.request_count = 0
        self.default = self._initial_default

    def _pick(self, rec: RecordedRequest) -> Reply:
        source: ReplySource | None = None
        if self._queue or self._rules:
            with self._lock:
                for i, rule in enumerate(self._queue):
                    if rule.matches(rec):
                        del self._queue[i]
                        source = rule.reply
                        break
                else:
                    for rule in self._rules:
                        if rule.matches(rec):
                            source = rule.reply
                            break
        if source is None:
            source = self.default
        if not isinstance(source, Reply):
            source = source(rec) or Reply()
        return source

    # ------------------------------------------------------------------------------------------------ recording
    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of the recorded requests, oldest first (at most ``record_limit``)."""
        with self._lock:
            return list(self._records)

    @property
    def last_request(self) -> RecordedRequest | None:
        with self._lock:
            return self._records[-1] if self._records else None

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._records.clear()
            self.request_count = 0

    # ------------------------------------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("MockLLM is not started")
        host = self._host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> MockLLM:
        if self._runner is not None:
            raise RuntimeError("MockLLM already started")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        server = web.Server(self._handle, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=self.shutdown_timeout)
        await runner.setup()
        site = web.SockSite(runner, sock, backlog=1024)
        await site.start()
        self._runner = runner
        self._host = host
        self.port = sock.getsockname()[1]
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self.port = None

    async def __aenter__(self) -> MockLLM:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_in_thread(self, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 10.0) -> MockLLM:
        """Serve from a background thread with its own event loop (uvloop when available)."""
        if self._thread is not None:
            raise RuntimeError("MockLLM already running in a thread")
        loop = uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
        thread = threading.Thread(target=self._thread_main, args=(loop,), name="tollgate-mock-llm", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(host, port), loop).result(timeout)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            loop.close()
            raise
        self._thread, self._thread_loop = thread, loop
        return self

    def stop_thread(self, timeout: float = 10.0) -> None:
        thread, loop = self._thread, self._thread_loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            loop.close()
            self._thread = self._thread_loop = None

    @staticmethod
    def _thread_main(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    @classmethod
    @contextlib.contextmanager
    def running_in_thread(cls, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> Iterator[MockLLM]:
        """``with MockLLM.running_in_thread() as mock:`` for sync tests and benchmarks."""
        mock = cls(**kwargs)
        mock.start_in_thread(host, port)
        try:
            yield mock
        finally:
            mock.stop_thread()

    # ------------------------------------------------------------------------------------------------ serving
    def _route(self, method: str, path: str) -> Endpoint | None:
        key = (method, path)
        try:
            return self._route_cache[key]
        except KeyError:
            pass
        found = None
        for ep in self._routes.get(method, ()):
            if ep.matches(path):
                found = ep
                break
        if len(self._route_cache) < 4096:
            self._route_cache[key] = found
        return found

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        raw = await request.content.read()
        received = clock()
        path = request.path
        if self.admin and path.startswith(ADMIN_PREFIX):
            return await handle_admin(self, request, raw)
        method = request.method
        data: Any = None
        bad_json = False
        if raw:
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                bad_json = True
        endpoint = self._route(method, path)
        if endpoint is not None:
            model = endpoint.model_of(path, data)
            wants_stream = endpoint.is_stream(path, data)
        else:
            model = data.get("model") if isinstance(data, dict) and isinstance(data.get("model"), str) else None
            wants_stream = False
        rec = RecordedRequest(method, path, request.query_string, request.headers, raw, data,
                              endpoint.name if endpoint is not None else None, model, wants_stream, received)
        self.request_count += 1
        if self._record:
            self._records.append(rec)
        reply = self._pick(rec)
        rec.reply = reply
        if reply.latency > 0 and await _client_left_during(request, reply.latency):
            rec.disconnected = True           # the caller gave up (and closed the connection) before any answer
            rec.done_at = clock()
            return web.Response()

        stream = wants_stream if reply.stream is None else reply.stream
        fmt = endpoint.format if endpoint is not None else self.formats[0]
        call = Call(self, rec, reply, endpoint, data, model, stream, next(self._seq))
        status = reply.status
        frames: Frames | None = None
        body = b""
        content_type = fmt.json_content_type
        try:
            if status >= 400:
                body = fmt.error_body(call, status, reply.error)
            elif reply.body is not None:
                body = _raw_body(reply.body)
            elif reply.events is not None:
                frames = Frames([], [fmt.frame(e) for e in reply.events], [])
                content_type = fmt.stream_content_type
            elif endpoint is None:
                raise MockError(404, f"Invalid URL ({method} {path})", code=None)
            elif bad_json:
                raise MockError(400, "We could not parse the JSON body of your request.", code=None)
            else:
                if self.validate and endpoint.validate is not None:
                    endpoint.validate(call)
                if stream and endpoint.render_stream is not None:
                    frames = endpoint.render_stream(call)
                    content_type = fmt.stream_content_type
                else:
                    body = endpoint.render(call)
        except MockError as exc:
            status = exc.status
            body = fmt.error_body(call, status, exc.fields or None)
            frames = None
            content_type = fmt.json_content_type

        headers = fmt.headers(call)
        headers["Content-Type"] = reply.content_type or content_type
        if reply.retry_after is not None:
            ra = reply.retry_after
            headers["Retry-After"] = str(int(ra)) if isinstance(ra, float) and ra.is_integer() else str(ra)
        if reply.headers:
            headers.update(reply.headers)
        if reply.gzip:
            headers["Content-Encoding"] = "gzip"
        if frames is not None:
            return await self._send_stream(request, rec, call, fmt, status, headers, frames)
        return await self._send_body(request, rec, reply, fmt, status, headers, body)

    async def _send_body(self, request: web.BaseRequest, rec: RecordedRequest, reply: Reply, fmt: Format,
                         status: int, headers: dict[str, str], body: bytes) -> web.StreamResponse:
        if reply.malformed:
            body = fmt.malform(body)
        if reply.gzip:
            body = _gzip.compress(body, compresslevel=1)
        cut = reply.disconnect_after
        if cut is not None:
            rec.disconnected = True
            if cut <= 0:  # drop the connection without answering
                _close(request)
                rec.done_at = clock()
                return web.Response()
            resp = web.StreamResponse(status=status, headers=headers)
            resp.content_length = len(body)
            await resp.prepare(request)
            rec.status, rec.headers_at = status, clock()
            with contextlib.suppress(ConnectionError):
                await resp.write(body[: len(body) // 2])
            _close(request)
            rec.done_at = clock()
            return resp
        rec.status = status
        rec.headers_at = rec.done_at = clock()
        return web.Response(body=body, status=status, headers=headers)

    async def _send_stream(self, request: web.BaseRequest, rec: RecordedRequest, call: Call, fmt: Format,
                           status: int, headers: dict[str, str], frames: Frames) -> web.StreamResponse:
        reply = call.reply
        if reply.malformed:
            frames = fmt.malform_stream(frames)
        compressor = zlib.compressobj(1, zlib.DEFLATED, 31) if reply.gzip else None

        def enc(data: bytes) -> bytes:
            if compressor is None:
                return data
            return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)

        headers.setdefault("Cache-Control", "no-cache")
        resp = web.StreamResponse(status=status, headers=headers)
        loop = asyncio.get_running_loop()
        try:
            await resp.prepare(request)
            rec.status = status
            rec.headers_at = clock()
            if frames.head:
                await resp.write(enc(b"".join(frames.head)))
            start = loop.time()
            interval = reply.interval
            cut = reply.disconnect_after
            err_at = reply.error_after
            stop_at = len(frames.body)
            if cut is not None:
                stop_at = min(stop_at, max(cut, 0))
            if err_at is not None and (cut is None or err_at < cut):
                stop_at = min(stop_at, max(err_at, 0))
                cut = None
            chunk_times = rec.chunk_times
            for i in range(stop_at):
                if interval > 0:
                    delay = start + interval * (i + 1) - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await resp.write(enc(frames.body[i]))
                chunk_times.append(clock())
            if cut is not None:
                rec.disconnected = True
                rec.done_at = clock()
                _close(request)
                return resp
            if err_at is not None:
                await resp.write(enc(fmt.stream_error(call, reply.error)))
            elif frames.tail:
                await resp.write(enc(b"".join(frames.tail)))
            if compressor is not None:
                await resp.write(compressor.flush())
            await resp.write_eof()
        except ConnectionError:
            rec.disconnected = True
        rec.done_at = clock()
        return resp


async def _client_left_during(request: web.BaseRequest, seconds: float) -> bool:
    """Wait ``seconds`` (on a fixed schedule); True as soon as the client closes the connection meanwhile."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        left = end - loop.time()
        if left <= 0:
            return False
        await asyncio.sleep(min(left, 0.05))
        transport = request.transport
        if transport is None or transport.is_closing():
            return True


def _close(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


def _raw_body(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return orjson.dumps(body)

"""The relay's HTTP/1.1 server against real sockets: keep-alive, pipelining, request bodies (chunked, 100-continue,
over the cap), malformed and oversized heads, a client leaving, back-pressure both ways, idle and graceful close,
and the same bytes on the wire as aiohttp's server for the answers the relay sends."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import aiohttp
import pytest
from aiohttp import web as aioweb

from tollgate.http1 import server as server_module
from tollgate.http1.incoming import RequestBodyTooLarge
from tollgate.relay import web

from .servers import wait_for


class Answer:
    def __init__(self, line: bytes, headers: dict[str, str], body: bytes):
        self.line, self.headers, self.body = line, headers, body

    @property
    def status(self) -> int:
        return int(self.line.split()[1])


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """One answer off the socket: its status line, headers (lower-case names) and body (de-chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    line, *fields = head[:-4].split(b"\r\n")
    headers = {}
    for field in fields:
        name, _, value = field.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readexactly(2)
    else:
        body = b""
    return Answer(line, headers, body)


async def closed(reader: asyncio.StreamReader) -> bool:
    """The server closed the connection (nothing more comes)."""
    async with asyncio.timeout(5):
        return await reader.read() == b""


class Serving:
    """The server on a loopback port, with the handler a test gives."""

    def __init__(self, handler, **options):
        self.handler = handler
        self.options = {"max_body": 1 << 20, **options}
        self.server: web.Server | None = None
        self.port = 0

    async def __aenter__(self) -> "Serving":
        self.server = web.Server(lambda request: self.handler(request), **self.options)
        listener = await self.server.listen("127.0.0.1", 0)
        self.port = listener.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        await self.server.shutdown(timeout=1)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


async def echo(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    return web.Response(body=f"{request.method} {request.path}?{request.query_string} {len(body)}:".encode() + body,
                        content_type="text/plain")


def get(path: str = "/", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: relay\r\n{extra}\r\n".encode()


async def test_keep_alive_serves_requests_one_after_another_on_one_connection():
    async with Serving(echo) as serving:
        reader, writer = await serving.connect()
        for i in range(3):
            writer.write(get(f"/n{i}?q=1"))
            got = await read_answer(reader)
            assert (got.status, got.body) == (200, f"GET /n{i}?q=1 0:".encode())
            assert "connection" not in got.headers
        assert len(serving.server.connections) == 1
        writer.write(get("/last", "Connection: close\r\n"))
        got = await read_answer(reader)
        assert got.headers["connection"] == "close" and await closed(reader)


async def test_requests_shaped_as_kongs_nginx_sends_them_keep_their_connection():
    """Kong 3.9.3's proxy locations (templates/nginx_kong.lua): HTTP/1.1, ``Connection: keep-alive``
    ($upstream_connection), buffered bodies with a Content-Length, unbuffered ones chunked as the client sent them."""
    head = ("POST /chat/v1/chat/completions HTTP/1.1\r\nHost: relay:8800\r\nX-Real-IP: 127.0.0.1\r\n"
            "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: gateway\r\n"
            "X-Forwarded-Port: 8000\r\nX-Forwarded-Path: /chat/v1/chat/completions\r\nConnection: keep-alive\r\n"
            "Content-Type: application/json\r\nX-Tollgate-Attachment: token\r\n")
    body = b'{"messages": [{"role": "user", "content": "hi"}]}'
    async with Serving(echo) as serving:
        reader, writer = await serving.connect()
        writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        buffered = await read_answer(reader)
        writer.write(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode()
                     + b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body))
        unbuffered = await read_answer(reader)
        expected = b"POST /chat/v1/chat/completions? %d:%b" % (len(body), body)
        assert (buffered.status, buffered.body) == (unbuffered.status, unbuffered.body) == (200, expected)
        assert "connection" not in buffered.headers and "connection" not in unbuffered.headers
        assert len(serving.server.connections) == 1


async def test_pipelined_requests_are_answered_one_at_a_time_in_order():
    running, most = 0, 0

    async def slow(request):
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05 if request.path == "/a" else 0)
        running -= 1
        return await echo(request)

    async with Serving(slow) as serving:
        reader, writer = await serving.connect()
        body = b'{"x": 1}'
        writer.write(get("/a") + b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body) + get("/c"))
        answers = [await read_answer(reader) for _ in range(3)]
        assert [a.body for a in answers] == [b"GET /a? 0:", b"POST /b? 8:" + body, b"GET /c? 0:"]
        assert most == 1


async def test_a_chunked_body_arriving_in_parts_is_read_whole():
    async with Serving(echo) as serving:
        reader, writer = await serving.connect()
        writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await asyncio.sleep(0.05)
        writer.write(b"6\r\n world\r\n0\r\n\r\n")
        got = await read_answer(reader)
        assert got.body == b"POST /up? 11:hello world"
        writer.write(get("/again"))                 # the connection is reusable after a chunked body
        assert (await read_answer(reader)).body == b"GET /again? 0:"


async def test_expect_100_continue_is_answered_when_the_handler_waits_for_the_body():
    async with Serving(echo) as serving:
        reader, writer = await serving.connect()
        writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"body")
        assert (await read_answer(reader)).body == b"POST /up? 4:body"

    async def refuse(request):
        return web.Response(status=403)

    async with Serving(refuse) as serving:                 # refused before the body: no 100, the refusal only
        reader, writer = await serving.connect()
        writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        got = await read_answer(reader)
        assert got.status == 403 and got.headers["connection"] == "close" and await closed(reader)


async def test_a_body_over_the_cap_fails_its_reader_and_the_connection_closes():
    failed = []

    async def capped(request):
        try:
            await request.read()
        except RequestBodyTooLarge as exc:
            failed.append(exc.limit)
            return web.Response(status=413)
        return web.Response()

    async with Serving(capped, max_body=1000) as serving:
        reader, writer = await serving.connect()
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"3e8\r\n" + b"x" * 1000 + b"\r\n")
        writer.write(b"1\r\nx\r\n0\r\n\r\n")
        got = await read_answer(reader)
        assert got.status == 413 and failed == [1000] and await closed(reader)


@pytest.mark.parametrize("data, status", [
    (b"NOT HTTP AT ALL\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
    (b"GET http://elsewhere/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),                                     # no Host
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),                  # TLS
    (get("/" + "a" * (server_module.MAX_HEAD + 10)), 431),
    (get("/", "".join(f"X-H{i}: v\r\n" for i in range(server_module.MAX_HEADERS + 1))), 431),
    (get("/", "X-Big: " + "v" * (server_module.MAX_HEAD + 10) + "\r\n"), 431),
])
async def test_a_malformed_or_oversized_request_is_refused_and_closed(data, status):
    async with Serving(echo) as serving:
        reader, writer = await serving.connect()
        writer.write(data)
        got = await read_answer(reader)
        assert got.status == status and got.headers["connection"] == "close" and await closed(reader)


async def test_a_head_sent_without_end_is_refused_at_the_cap():
    async with Serving(echo) as serving:
        reader, writer = await serving.connect()
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        for _ in range(server_module.MAX_HEAD // 4096 + 2):
            writer.write(b"v" * 4096)
            await asyncio.sleep(0)
        assert (await read_answer(reader)).status == 431 and await closed(reader)


async def test_the_requests_before_a_malformed_one_are_answered_first():
    async with Serving(echo) as serving:
        reader, writer = await serving.connect()
        writer.write(get("/fine") + b"BROKEN\r\n\r\n")
        assert (await read_answer(reader)).body == b"GET /fine? 0:"
        assert (await read_answer(reader)).status == 400 and await closed(reader)


async def test_a_client_that_leaves_cancels_its_handler():
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def forever(request):
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return web.Response()

    async with Serving(forever) as serving:
        reader, writer = await serving.connect()
        writer.write(get())
        await asyncio.wait_for(started.wait(), 5)
        writer.close()
        await asyncio.wait_for(cancelled.wait(), 5)
        await wait_for(lambda: not serving.server.connections)


async def test_a_stream_reaches_a_slow_client_event_by_event():
    sent = asyncio.Queue()

    async def events(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        while (event := await sent.get()) is not None:
            await response.write(event)
        await response.write_eof()
        return response

    async with Serving(events) as serving:
        reader, writer = await serving.connect()
        writer.write(get())
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head and b"Content-Type: text/event-stream" in head
        for i in range(3):                                       # each event arrives before the next is written
            event = f"data: {i}\n\n".encode()
            await sent.put(event)
            assert await asyncio.wait_for(reader.readexactly(len(event) + 5), 5) == b"%x\r\n%b\r\n" % (len(event),
                                                                                                          event)
        await sent.put(None)
        assert await reader.readexactly(5) == b"0\r\n\r\n"


async def test_writes_wait_while_the_client_does_not_read():
    written = 0
    done = asyncio.Event()

    async def flood(request):
        nonlocal written
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(256):
            await response.write(b"x" * 65536)
            written += 65536
        await response.write_eof()
        done.set()
        return response

    async with Serving(flood) as serving:
        sock = socket.create_connection(("127.0.0.1", serving.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(get())
        await asyncio.sleep(0.5)
        assert not done.is_set() and written < 16 * 1024 * 1024      # held back: not all 16 MiB went out
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        received = 0
        while not done.is_set() or received < written:
            data = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 5)
            if not data:
                break
            received += len(data)
        assert done.is_set() and received > 16 * 1024 * 1024
        sock.close()


async def test_the_socket_is_not_read_while_a_body_waits_untaken():
    release = asyncio.Event()

    async def late_reader(request):
        await release.wait()
        return web.Response(body=b"%d" % len(await request.read()))

    async with Serving(late_reader, max_body=64 << 20) as serving:
        reader, writer = await serving.connect()
        size = 32 << 20
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        writer.write(b"x" * size)
        with pytest.raises(TimeoutError):                     # the client cannot send it all: the server stopped
            await asyncio.wait_for(writer.drain(), 0.5)
        connection = next(iter(serving.server.connections))
        assert connection._read_paused and connection._parsing.content._buffered <= 2 * server_module.HIGH_WATER
        release.set()
        await writer.drain()
        assert (await read_answer(reader)).body == b"%d" % size


async def test_a_handlers_failure_is_a_500_and_the_connection_closes():
    async def broken(request):
        raise ValueError("bug")

    async with Serving(broken) as serving:
        reader, writer = await serving.connect()
        writer.write(get())
        got = await read_answer(reader)
        assert got.status == 500 and got.body == b"500 Internal Server Error\n\nServer got itself in trouble"
        assert await closed(reader)


async def test_a_header_with_a_line_break_is_never_sent():
    async def injecting(request):
        return web.Response(headers={"X-Echo": "a\r\nSet-Cookie: stolen=1"})

    async with Serving(injecting) as serving:
        reader, writer = await serving.connect()
        writer.write(get())
        got = await read_answer(reader)
        assert got.status == 500 and "set-cookie" not in got.headers and await closed(reader)


async def test_an_idle_connection_closes_after_the_keepalive_timeout():
    async with Serving(echo, keepalive_timeout=0.2) as serving:
        reader, writer = await serving.connect()
        writer.write(get())
        await read_answer(reader)
        assert await closed(reader)


async def test_shutdown_lets_the_answers_under_way_finish_and_closes_the_rest():
    started = asyncio.Event()

    async def slow(request):
        started.set()
        await asyncio.sleep(0.3)
        return web.Response(body=b"finished")

    async with Serving(slow) as serving:
        busy_reader, busy_writer = await serving.connect()
        idle_reader, _ = await serving.connect()
        busy_writer.write(get())
        await asyncio.wait_for(started.wait(), 5)
        stopping = asyncio.ensure_future(serving.server.shutdown(timeout=5))
        assert await closed(idle_reader)                          # idle: closed at once
        got = await read_answer(busy_reader)
        assert got.body == b"finished" and got.headers["connection"] == "close" and await closed(busy_reader)
        await stopping
        with pytest.raises(OSError):                               # no longer listening
            await serving.connect()


async def test_shutdown_cancels_what_outlives_its_timeout():
    cancelled = asyncio.Event()

    async def stuck(request):
        try:
            await asyncio.sleep(60)
        finally:
            cancelled.set()

    async with Serving(stuck) as serving:
        reader, writer = await serving.connect()
        writer.write(get())
        await wait_for(lambda: any(c.busy for c in serving.server.connections))
        await serving.server.shutdown(timeout=0.1)
        assert cancelled.is_set() and await closed(reader)


@contextlib.asynccontextmanager
async def both(ours_handler, theirs_handler):
    """``exchange(request) -> (our bytes, aiohttp's bytes)``: one request sent to this server and to aiohttp's."""
    runner = aioweb.ServerRunner(aioweb.Server(theirs_handler), handle_signals=False)
    await runner.setup()
    await aioweb.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with Serving(ours_handler) as serving:
            async def exchange(request: str) -> tuple[bytes, bytes]:
                data = request.encode()
                return await raw_exchange(serving.port, data), await raw_exchange(runner.addresses[0][1], data)
            yield exchange
    finally:
        await runner.cleanup()


TARGETS = ["/plain?a=1&b=2", "/a%20b/c%2Fd?x=%41+y&z", "/p%C3%A9?q=%zz", "/v1/x:y", "/a#frag?b", "/a?b#c",
           "/../etc/%2e%2e/passwd", "/%7Euser?"]


async def test_path_and_query_are_read_as_aiohttp_reads_them():
    async def report(request):
        seen = [request.path, request.query_string, request.rel_url.raw_path, request.rel_url.raw_query_string]
        return (aioweb if isinstance(request, aioweb.BaseRequest) else web).json_response(seen)

    async with both(report, report) as exchange:
        for target in TARGETS:
            ours, theirs = await exchange(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert ours.partition(b"\r\n\r\n")[2] == theirs.partition(b"\r\n\r\n")[2], target


# -- the same bytes as aiohttp's server -----------------------------------------------------------------------------

def answers(lib):
    """Each answer shape the relay sends, built with ``lib`` (aiohttp.web or tollgate.relay.web)."""
    async def stream(request, length=None, status=200):
        response = lib.StreamResponse(status=status, headers={"Content-Type": "text/event-stream",
                                                              "X-Tollgate": "1"})
        if length is not None:
            response.content_length = length
        await response.prepare(request)
        await response.write(b"data: 1\n\n")
        await response.write(b"")
        await response.write(b"data: 2\n\n"[:length - 9] if length else b"data: 2\n\n")
        await response.write_eof()
        return response

    async def unfinished_stream(request):
        response = lib.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: 1\n\n")
        return response                                  # the server ends it

    return {
        "/json": lambda r: lib.Response(status=429, body=b'{"e":1}', content_type="application/json",
                                        headers={"Retry-After": "3"}),
        "/helper": lambda r: lib.json_response({"status": "ok"}),
        "/bytes": lambda r: lib.Response(body=b"raw", headers={"X-A": "b"}),
        "/empty": lambda r: lib.Response(status=202),
        "/no-content": lambda r: lib.Response(status=204, headers={"Content-Type": "application/json"}),
        "/405": lambda r: lib.Response(status=405, headers={"Allow": "POST, DELETE"}),
        "/reason": lambda r: lib.Response(status=502, reason="Bad Gateway Here", body=b"x"),
        "/unknown": lambda r: lib.Response(status=499),
        "/stream": stream,
        "/stream-length": lambda r: stream(r, length=18),
        "/stream-unfinished": unfinished_stream,
    }


async def raw_exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        out = b""
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 0.3)
            if not chunk:
                break
            out += chunk
    except TimeoutError:
        pass
    writer.close()
    return out


def comparable(raw: bytes) -> bytes:
    lines = [line for line in raw.split(b"\r\n") if not line.startswith((b"Date:", b"Server:"))]
    return b"\r\n".join(lines)


@pytest.mark.parametrize("method, version", [("GET", "1.1"), ("HEAD", "1.1"), ("GET", "1.0")])
async def test_the_wire_is_aiohttps_for_every_answer_shape(method, version):
    theirs_table, ours_table = answers(aioweb), answers(web)

    async def theirs_handler(request):
        made = theirs_table[request.path](request)
        return await made if asyncio.iscoroutine(made) else made

    async def ours_handler(request):
        made = ours_table[request.path](request)
        return await made if asyncio.iscoroutine(made) else made

    async with both(ours_handler, theirs_handler) as exchange:
        for path in ours_table:
            ours, theirs = await exchange(f"{method} {path} HTTP/{version}\r\nHost: x\r\n\r\n")
            if method == "HEAD":     # aiohttp writes a StreamResponse's bytes even after a HEAD's head
                ours, theirs = ours.partition(b"\r\n\r\n")[0], theirs.partition(b"\r\n\r\n")[0]
            assert comparable(ours) == comparable(theirs), path
            assert (b"\r\nDate: " in ours) == (b"\r\nDate: " in theirs)


async def test_an_aiohttp_client_talks_to_it():
    async with Serving(echo) as serving:
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.post(f"http://127.0.0.1:{serving.port}/x?y=1", data=b"abc") as got:
                    assert (got.status, await got.read()) == (200, b"POST /x?y=1 3:abc")
        assert len(serving.server.connections) <= 1

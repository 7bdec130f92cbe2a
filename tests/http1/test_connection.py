"""One connection against servers that misbehave (timeouts, refused connections, cut and malformed answers), and
cancellation, back-pressure and TLS."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tollgate import http1
from tollgate.http1.connection import HIGH_WATER

from .servers import RawServer, answer, serve_forever, wait_for


async def test_read_timeouts_between_data_and_for_the_whole_call(client):
    async def handle(reader, writer):
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(5)

    async with RawServer(handle) as server:
        with pytest.raises(http1.ReadTimeout):
            async with asyncio.timeout(5):
                got = await client.request("GET", server.url, timeout=http1.Timeouts(read=0.2))
                await got.read()
        await wait_for(lambda: server.open == 0)            # a timed-out connection is closed

        async def drip(reader, writer):
            await server.request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            for _ in range(100):
                await asyncio.sleep(0.05)
                writer.write(b"x")
                await writer.drain()

        server.handle = drip
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            got = await client.request("GET", server.url, timeout=http1.Timeouts(read=1, total=0.4))
            await got.read()
        assert asyncio.get_running_loop().time() - started < 1.5

        async def silent(reader, writer):
            await server.request(reader)
            await asyncio.sleep(5)

        server.handle = silent
        with pytest.raises(http1.ReadTimeout):
            await client.request("GET", server.url, timeout=http1.Timeouts(read=0.2))


async def test_a_refused_connection_is_a_connect_error(client):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(http1.ConnectError) as caught:
        await client.request("GET", f"http://127.0.0.1:{port}/")
    assert not isinstance(caught.value, TimeoutError)


async def test_a_body_cut_short_is_a_broken_body(client):
    async def handle(reader, writer):
        await server.request(reader)
        writer.write(server.cut)
        await writer.drain()

    async with RawServer(handle) as server:
        for server.cut in (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
                           b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                           b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"):
            got = await client.request("GET", server.url)
            with pytest.raises(http1.BrokenBody):
                await got.read()
            got = await client.request("GET", server.url)
            with pytest.raises(http1.BrokenBody):
                async for _ in got.content.iter_any():
                    pass
        server.cut = b""
        with pytest.raises(http1.Disconnected):
            await client.request("GET", server.url)


@pytest.mark.parametrize("head", [b"HTTP/1.1 abc OK\r\n\r\n", b"SMTP ready\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                                  b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                  b"Connection: Upgrade\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * 300 + b"\r\n"],
                         ids=["status", "not-http", "header", "two-lengths", "upgrade", "huge-header",
                              "many-headers"])
async def test_a_malformed_answer_is_an_invalid_response(client, head):
    async def handle(reader, writer):
        await server.request(reader)
        writer.write(head)
        await writer.drain()
        await asyncio.sleep(1)

    async with RawServer(handle) as server:
        with pytest.raises(http1.InvalidResponse):
            await client.request("GET", server.url)


async def test_informational_answers_are_skipped(client):
    async def handle(reader, writer):
        await serve_forever(server, reader, writer, lambda *_: b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                            + answer(b"final", headers="Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n"))

    async with RawServer(handle) as server:
        got = await client.request("GET", server.url)
        assert got.status == 200 and got.reason == "OK" and "Link" not in got.headers
        assert got.headers.getall("set-cookie") == ["a=1", "b=2"]
        assert await got.read() == b"final"
        assert await got.read() == b"final"


async def test_data_after_a_complete_answer_keeps_it_readable_but_not_the_connection(client):
    async def handle(reader, writer):
        await serve_forever(server, reader, writer, lambda *_: answer() + answer(b"unasked"))

    async with RawServer(handle) as server:
        assert await (await client.request("GET", server.url)).read() == b"ok"
        assert await (await client.request("GET", server.url)).read() == b"ok"
        assert server.connections == 2


async def test_cancelling_a_waiting_call_closes_its_connection(client):
    async def handle(reader, writer):
        await server.request(reader)
        if server.connections == 2:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\nfirst\r\n")
            await writer.drain()
        assert await reader.read() == b""     # waits until the client closes
        server.saw_close += 1

    async with RawServer(handle) as server:
        server.saw_close = 0
        waiting = asyncio.create_task(client.request("POST", server.url, data=b"{}"))
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await wait_for(lambda: server.saw_close == 1)

        got = await client.request("POST", server.url, data=b"{}")
        chunks = got.content.iter_any()
        assert await chunks.__anext__() == b"first"
        reading = asyncio.create_task(chunks.__anext__())
        await asyncio.sleep(0.1)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        await wait_for(lambda: server.saw_close == 2)


async def test_a_large_stream_is_read_with_back_pressure(client):
    total = 24 * 1024 * 1024
    piece = bytes(range(256)) * 256             # 64 KiB

    async def handle(reader, writer):
        await server.request(reader)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n".encode())
        for _ in range(total // len(piece)):
            writer.write(piece)
            await writer.drain()
            server.sent += len(piece)

    async with RawServer(handle) as server:
        server.sent = 0
        got = await client.request("GET", server.url)
        first = await got.content.readany()
        await asyncio.sleep(0.5)                # the reader stalls: the server must stall too
        conn = got._conn
        assert conn is not None and conn._paused
        assert conn._buffered <= HIGH_WATER + 512 * 1024
        assert server.sent < total
        received, marks = len(first), first.count(b"\xff")
        async for data in got.content.iter_any():
            received += len(data)
            marks += data.count(b"\xff")
        assert received == total and server.sent == total
        assert marks == total // 256            # every byte, in order of pieces


async def test_tls_with_sni_against_a_self_signed_server(tmp_path):
    import ssl

    from .certs import self_signed

    cert, key = self_signed(tmp_path, "localhost")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    names = []
    server_tls.sni_callback = lambda sock, name, ctx: names.append(name)

    async def handle(reader, writer):
        await serve_forever(server, reader, writer, lambda *_: answer(b"secure"))

    async with RawServer(handle, tls=server_tls) as server:
        trusting = http1.Client(ssl=ssl.create_default_context(cafile=str(cert)))
        default = http1.Client()
        try:
            url = f"https://localhost:{server.port}/v1"
            for _ in range(3):
                async with await trusting.request("GET", url) as got:
                    assert await got.read() == b"secure"
            assert server.connections == 1 and names == ["localhost"]
            assert server.requests[0][1]["host"] == f"localhost:{server.port}"
            with pytest.raises(http1.ConnectError, match="certificate"):
                await default.request("GET", url)          # not a CA the system trusts
        finally:
            await trusting.close()
            await default.close()


async def test_one_read_timer_serves_calls_with_different_timeouts_on_a_reused_connection(client):
    async def handle(reader, writer):
        while (got := await server.request(reader)) is not None:
            await asyncio.sleep(float(got[1].get("x-delay", "0")))
            writer.write(answer())
            await writer.drain()

    async with RawServer(handle) as server:
        async def call(delay: float, read: float | None) -> bytes:
            got = await client.request("GET", server.url, headers={"X-Delay": str(delay)},
                                       timeout=http1.Timeouts(read=read))
            return await got.read()

        assert await call(0, 0.2) == b"ok"      # arms the timer for 0.2 s from now
        assert await call(0.5, 2) == b"ok"      # it fires before this answer: re-armed, not a timeout
        assert await call(0, 0.2) == b"ok"
        assert await call(0.5, None) == b"ok"   # no bound at all
        assert await call(0, 60) == b"ok"       # arms it for 60 s
        started = asyncio.get_running_loop().time()
        with pytest.raises(http1.ReadTimeout):
            await call(3, 0.2)                  # an earlier bound than the armed one
        assert asyncio.get_running_loop().time() - started < 1.5
        assert server.connections == 1

"""Answers read whole or in pieces: body framings, and what is (never) reused after a partial read."""

from __future__ import annotations

from aiohttp import web

from .servers import RawServer, answer, serve_forever, wait_for, web_server


async def test_chunked_content_length_and_read_until_close_bodies(client):
    async def chunked(request):
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"one ", b"two ", b"three"):
            await response.write(part)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/chunked", chunked)
    async def length(request):
        return web.Response(body=b"x" * 100_000)

    app.router.add_get("/length", length)
    runner, url = await web_server(app)
    try:
        got = await client.request("GET", url + "/chunked")
        assert got.headers["Transfer-Encoding"] == "chunked"
        assert await got.read() == b"one two three"
        got = await client.request("GET", url + "/length")
        assert got.headers["Content-Length"] == "100000"
        assert await got.read() == b"x" * 100_000
    finally:
        await runner.cleanup()

    async def until_close(reader, writer):
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it, ")
        await writer.drain()
        writer.write(b"until the end")

    async with RawServer(until_close) as server:
        got = await client.request("GET", server.url)
        assert await got.read() == b"all of it, until the end"
        async with await client.request("GET", server.url) as again:   # never reused: a new connection
            assert await again.read() == b"all of it, until the end"
        assert server.connections == 2


async def test_a_half_read_answer_is_never_reused(client):
    async def handle(reader, writer):
        await serve_forever(server, reader, writer, lambda *_: answer(b"y" * 2_000_000))

    async with RawServer(handle) as server:
        got = await client.request("GET", server.url)
        assert await got.content.readany()
        got.release()                       # not whole: closed, not pooled
        await wait_for(lambda: server.open == 0)
        got = await client.request("GET", server.url)
        assert await got.content.readany()
        got.close()
        await wait_for(lambda: server.open == 0)
        async with await client.request("GET", server.url) as got:
            assert len(await got.read()) == 2_000_000
        async with await client.request("GET", server.url) as got:
            assert len(await got.read()) == 2_000_000
        assert server.connections == 3      # the last two calls shared one


async def test_a_whole_answer_released_unread_leaves_its_connection_reusable(client):
    async def handle(reader, writer):
        await serve_forever(server, reader, writer, lambda *_: answer(b"z" * 1000))

    async with RawServer(handle) as server:
        for _ in range(3):
            got = await client.request("GET", server.url)
            await wait_for(lambda: got._conn is None or got._conn.complete)
            got.release()                   # whole but not read: pooled, not closed
        async with await client.request("GET", server.url) as got:
            assert await got.read() == b"z" * 1000
        assert server.connections == 1

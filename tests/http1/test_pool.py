"""The per-origin pool: the limit per host, idle connections closed by the server or after the idle timeout."""

from __future__ import annotations

import asyncio

from tollgate import http1

from .servers import RawServer, answer, serve_forever, wait_for


async def test_concurrent_calls_open_at_most_the_limit_per_host():
    async def handle(reader, writer):
        while (await server.request(reader)) is not None:
            await asyncio.sleep(0.05)
            writer.write(answer())

    limited = http1.Client(limit_per_host=2)
    try:
        async with RawServer(handle) as server:
            async def one():
                async with await limited.request("GET", server.url) as got:
                    return await got.read()

            assert await asyncio.gather(*(one() for _ in range(6))) == [b"ok"] * 6
            assert server.connections == 2 and server.most_open == 2
    finally:
        await limited.close()


async def test_an_idle_connection_the_server_closes_leaves_the_pool(client):
    async def handle(reader, writer):
        await server.request(reader)
        writer.write(answer())
        await writer.drain()
        await asyncio.sleep(0.05)          # then closes: its keep-alive timeout

    async with RawServer(handle) as server:
        assert await (await client.request("POST", server.url, data=b"{}")).read() == b"ok"
        pool = client._pools[("http", "127.0.0.1", server.port)]
        await wait_for(lambda: pool.size == 0 and pool.idle_count == 0)
        # A POST is never re-sent: it must go out on a live connection, not the closed one.
        assert await (await client.request("POST", server.url, data=b"{}")).read() == b"ok"
        assert server.connections == 2


async def test_a_connection_idle_past_the_idle_timeout_is_closed():
    async def handle(reader, writer):
        await serve_forever(server, reader, writer, lambda *_: answer())

    brief = http1.Client(idle_timeout=0.2)
    try:
        async with RawServer(handle) as server:
            await (await brief.request("GET", server.url)).read()
            assert server.open == 1
            await wait_for(lambda: server.open == 0, 3)   # our side closed it
    finally:
        await brief.close()


async def test_a_call_waiting_for_a_free_connection_ends_at_its_deadline():
    async def handle(reader, writer):
        while (await server.request(reader)) is not None:
            await asyncio.sleep(1)
            writer.write(answer())

    limited = http1.Client(limit_per_host=1)
    try:
        async with RawServer(handle) as server:
            holding = asyncio.create_task(limited.request("GET", server.url))
            await asyncio.sleep(0.05)
            started = asyncio.get_running_loop().time()
            try:
                await limited.request("GET", server.url, timeout=http1.Timeouts(total=0.2))
            except http1.ConnectTimeout:
                pass
            else:
                raise AssertionError("the call waited past its deadline")
            assert asyncio.get_running_loop().time() - started < 0.6
            async with await holding as got:     # the turn goes on to the next caller as before
                assert await got.read() == b"ok"
    finally:
        await limited.close()

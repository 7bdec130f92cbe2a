"""The client against real local servers: keep-alive reuse, re-sending on a stale connection, closing."""

from __future__ import annotations

import pytest

from tollgate import http1

from .servers import RawServer, answer, serve_forever, wait_for


async def test_calls_share_one_keep_alive_connection(client):
    async def handle(reader, writer):
        await serve_forever(server, reader, writer, lambda line, headers, body: answer(b"echo:" + body))

    async with RawServer(handle) as server:
        for i in range(5):
            async with await client.request("POST", server.url + "/v1/x?a=1", data=f"n{i}".encode(),
                                            headers={"Content-Type": "application/json"}) as got:
                assert got.status == 200
                assert await got.read() == f"echo:n{i}".encode()
        assert server.connections == 1
        line, headers, _ = server.requests[0]
        assert line == b"POST /v1/x?a=1 HTTP/1.1"
        assert headers["host"] == f"127.0.0.1:{server.port}"
        assert headers["content-type"] == "application/json"
        assert "accept-encoding" not in headers and "user-agent" not in headers


async def test_a_stale_connection_is_retried_for_idempotent_methods_only(client):
    async def handle(reader, writer):
        await server.request(reader)
        writer.write(answer())
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")   # a second request on this connection: closed without an answer

    async with RawServer(handle) as server:
        await (await client.request("GET", server.url)).read()
        async with await client.request("GET", server.url) as got:  # re-sent on a new connection
            assert await got.read() == b"ok"
        with pytest.raises(http1.Disconnected):
            await client.request("POST", server.url, data=b"{}")
        assert server.connections == 2


async def test_a_closed_client_refuses_calls_and_closes_its_connections():
    async def handle(reader, writer):
        await serve_forever(server, reader, writer, lambda *_: answer())

    closing = http1.Client()
    async with RawServer(handle) as server:
        await (await closing.request("GET", server.url)).read()
        await closing.close()
        await wait_for(lambda: server.open == 0)
        with pytest.raises(http1.ClientClosed):
            await closing.request("GET", server.url)

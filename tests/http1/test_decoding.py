"""Content-Encoding: gzip and deflate inflated (also as a stream), anything else refused."""

from __future__ import annotations

import gzip
import zlib

import pytest
from aiohttp import web

from tollgate import http1

from .servers import RawServer, answer, serve_forever, web_server


async def test_gzip_and_deflate_answers_arrive_inflated(client):
    text = b'{"answer": "' + b"compressible " * 2000 + b'"}'
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    bodies = {"gzip": gzip.compress(text), "deflate": zlib.compress(text),
              "raw-deflate": raw.compress(text) + raw.flush()}

    async def handle(request):
        kind = request.match_info["kind"]
        response = web.StreamResponse(headers={"Content-Encoding": kind.removeprefix("raw-")})
        response.enable_chunked_encoding()
        await response.prepare(request)
        body = bodies[kind]
        for i in range(0, len(body), 100):        # many small chunks: inflated as they come
            await response.write(body[i:i + 100])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/{kind}", handle)
    runner, url = await web_server(app)
    try:
        for kind in bodies:
            got = await client.request("GET", f"{url}/{kind}")
            assert await got.read() == text, kind
            streamed = await client.request("GET", f"{url}/{kind}")
            assert b"".join([data async for data in streamed.content.iter_any()]) == text, kind
    finally:
        await runner.cleanup()


async def test_an_encoding_it_cannot_inflate_is_an_undecodable_body(client):
    async def handle(reader, writer):
        await serve_forever(server, reader, writer, lambda *_: answer(b"\x00\x01", headers="Content-Encoding: br\r\n"))

    async with RawServer(handle) as server:
        got = await client.request("GET", server.url)
        assert got.status == 200 and got.headers["Content-Encoding"] == "br"
        with pytest.raises(http1.UndecodableBody, match="'br'"):
            await got.read()
        corrupt = answer(b"not gzip at all", headers="Content-Encoding: gzip\r\n")

        async def handle_corrupt(reader, writer):
            await serve_forever(server, reader, writer, lambda *_: corrupt)

        server.handle = handle_corrupt
        fresh = http1.Client()
        try:
            with pytest.raises(http1.UndecodableBody, match="gzip"):
                await (await fresh.request("GET", server.url)).read()
        finally:
            await fresh.close()


def test_deflate_is_read_wrapped_or_raw_even_split_byte_by_byte():
    from tollgate.http1.decoding import inflater

    text = b"hello deflate " * 50
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    for body in (zlib.compress(text), raw.compress(text) + raw.flush()):
        decoder = inflater("deflate")
        assert decoder is not None
        out = b"".join(decoder.decode(body[i:i + 1]) for i in range(len(body))) + decoder.flush()
        assert out == text
    assert inflater(None) is None and inflater("identity") is None
    with pytest.raises(http1.UndecodableBody):
        inflater("gzip, br")

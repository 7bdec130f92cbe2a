"""store/resp.py against a server that answers anything: a value, the server's error, or the connection closed with
a named ConnectionError, within the socket timeout, holding no more than the reply limit."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from contextlib import asynccontextmanager

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from redis import exceptions as rex

from tollgate.store import resp
from tollgate.store.resp import RespClient

TIMEOUT = 0.5


@asynccontextmanager
async def server_answering(chunks: list[bytes], close: bool = True):
    """A one-shot server: reads one command, writes ``chunks``, then closes (or keeps the connection open)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n")
        try:
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
            if not close:
                await asyncio.sleep(5)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = RespClient(host="127.0.0.1", port=port, connect_timeout=TIMEOUT, socket_timeout=TIMEOUT)
    try:
        yield client
    finally:
        client.close()
        server.close()


async def outcome(chunks: list[bytes], close: bool = True) -> object:
    async with server_answering(chunks, close) as client:
        started = time.monotonic()
        try:
            return await asyncio.wait_for(client.execute("PING"), 4 * TIMEOUT)
        except (rex.ResponseError, rex.ConnectionError, rex.TimeoutError) as exc:
            return exc
        finally:
            assert time.monotonic() - started < 4 * TIMEOUT


RESP_PIECES = st.sampled_from([b"+OK\r\n", b"-ERR no\r\n", b":12\r\n", b"$3\r\nabc\r\n", b"$-1\r\n", b"*2\r\n",
                               b"*-1\r\n", b"*0\r\n", b"$99999999999\r\n", b"*99999999\r\n", b":x\r\n", b"\r\n",
                               b"$5\r\nab\r\n", b"%1\r\n", b"_\r\n", b"$1_0\r\n"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(RESP_PIECES | st.binary(max_size=30), max_size=10), st.lists(st.integers(1, 40), max_size=3))
async def test_any_reply_is_a_value_or_a_named_redis_error(pieces, cuts):
    data = b"".join(pieces)
    chunks, start = [], 0
    for cut in cuts:
        chunks.append(data[start:start + cut])
        start += cut
    chunks.append(data[start:])
    result = await outcome([c for c in chunks if c])
    assert not isinstance(result, Exception) or isinstance(result, (rex.ResponseError, rex.ConnectionError,
                                                                    rex.TimeoutError))


@pytest.mark.parametrize("reply, reason", [
    (b"*1\r\n" * 33 + b":1\r\n", "arrays nested deeper than 32 levels"),
    (b"*1\r\n" * 5000 + b":1\r\n", "arrays nested deeper than 32 levels"),
    (b"$99999999999\r\n", "a bulk string of 99999999999 bytes, over the limit"),
    (b"*2000000\r\n", "an array of 2000000 items, over the limit"),
    (b"?what\r\n", "unexpected reply type '?'"),
    (b":12x\r\n", "invalid literal"),
])
async def test_hostile_replies_close_the_connection_with_a_named_error_at_once(reply, reason):
    started = time.monotonic()
    result = await outcome([reply], close=False)   # the server stays: only the parser can end this early
    assert isinstance(result, rex.ConnectionError) and reason in str(result), result
    assert time.monotonic() - started < TIMEOUT


async def test_a_reply_to_no_command_closes_the_connection_and_the_next_command_opens_a_new_one():
    async with server_answering([b"+OK\r\n+EXTRA\r\n"], close=False) as client:
        assert await client.execute("PING") == b"OK"
        await asyncio.sleep(0.05)
        assert client._connection is not None and client._connection.closed


async def test_the_buffer_stops_at_the_reply_limit(monkeypatch):
    monkeypatch.setattr(resp, "MAX_REPLY", 1 << 20)
    chunk = b"$1000\r\n" + b"z" * 1000 + b"\r\n"
    tracemalloc.start()
    result = await outcome([b"*1000000\r\n", *[chunk * 64] * 40], close=False)    # ~2.6 MB of a huge array
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert isinstance(result, rex.ConnectionError) and "a reply larger than 1048576 bytes" in str(result)
    assert peak < 8 << 20, peak


async def test_a_good_reply_split_anywhere_is_read_whole():
    reply = b"*3\r\n:1\r\n$5\r\nhello\r\n*2\r\n$-1\r\n+OK\r\n"
    for cut in range(1, len(reply)):
        assert await outcome([reply[:cut], reply[cut:]]) == [1, b"hello", [None, b"OK"]]

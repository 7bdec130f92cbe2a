"""Statuses, error bodies, timing and transport faults of the mock, checked with a raw aiohttp client."""

from __future__ import annotations

import gzip
import json
import time
import zlib

import aiohttp
import pytest

from tollgate.mock import Reply, clock

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello mock"}]}
STREAM = {**CHAT, "stream": True}


def sse_data(raw: bytes) -> list[str]:
    return [e[len("data: "):] for e in raw.decode().split("\n\n") if e]


@pytest.mark.parametrize("status, etype, code", [
    (400, "invalid_request_error", None),
    (401, "invalid_request_error", "invalid_api_key"),
    (403, "invalid_request_error", None),
    (404, "invalid_request_error", "model_not_found"),
    (429, "requests", "rate_limit_exceeded"),
    (500, "server_error", None),
    (503, "server_error", None),
])
async def test_error_statuses_have_openai_error_bodies(mock, http, status, etype, code):
    mock.enqueue(Reply(status=status))
    async with http.post(mock.url + "/v1/chat/completions", json=STREAM) as resp:
        assert resp.status == status
        assert resp.content_type == "application/json"  # errors are JSON even when a stream was asked for
        body = await resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == etype and err["code"] == code and err["param"] is None
    assert isinstance(err["message"], str) and err["message"]


async def test_retry_after_and_custom_error(mock, http):
    mock.enqueue(Reply.fail(429, "slow down", retry_after=7, headers={"x-ratelimit-remaining-requests": "0"}))
    mock.enqueue(Reply(status=400, error={"message": "context too long", "param": "messages",
                                          "code": "context_length_exceeded"}))
    async with http.post(mock.url + "/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "7"
        assert resp.headers["x-ratelimit-remaining-requests"] == "0"
        assert (await resp.json())["error"]["message"] == "slow down"
    async with http.post(mock.url + "/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == {"message": "context too long", "type": "invalid_request_error",
                                                "param": "messages", "code": "context_length_exceeded"}


async def test_request_validation(mock, http):
    async with http.post(mock.url + "/v1/chat/completions", data=b"{not json") as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "invalid_request_error"
    async with http.post(mock.url + "/v1/chat/completions", json={"model": "x"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == "messages"
    async with http.post(mock.url + "/v1/embeddings", json={"model": "x", "input": "a", "encoding_format": "hex"}) \
            as resp:
        assert resp.status == 400
    async with http.post(mock.url + "/v1/nowhere", json=CHAT) as resp:
        assert resp.status == 404
        assert "Invalid URL" in (await resp.json())["error"]["message"]
    assert [r.status for r in mock.requests] == [400, 400, 400, 404]


async def test_any_path_prefix_is_accepted(mock, http):
    for path in ("/chat/completions", "/v1/chat/completions", "/openai/v1/chat/completions",
                 "/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21"):
        body = dict(CHAT)
        if "deployments" in path:
            body.pop("model")
        async with http.post(mock.url + path, json=body) as resp:
            assert resp.status == 200, path
            data = await resp.json()
            assert data["object"] == "chat.completion"
    assert data["model"] == "my-gpt"
    assert mock.requests[-1].query == {"api-version": "2024-10-21"}
    async with http.post(mock.url + "/completions", json={"model": "m", "prompt": "p"}) as resp:
        assert (await resp.json())["object"] == "text_completion"


async def test_latency_before_headers(mock, http):
    mock.enqueue(Reply(latency=0.3))
    t0 = time.perf_counter()
    async with http.post(mock.url + "/v1/chat/completions", json=CHAT) as resp:
        assert time.perf_counter() - t0 >= 0.29
        assert resp.status == 200
    rec = mock.requests[-1]
    assert rec.headers_at - rec.received_at >= 0.29


async def test_chunk_timing_spread_and_recorded(mock, http):
    mock.enqueue(Reply(content=" ".join(f"w{i}" for i in range(20)), chunks=20, interval=0.1))
    t0 = time.perf_counter()
    arrivals = []
    async with http.post(mock.url + "/v1/chat/completions", json=STREAM) as resp:
        buf = b""
        async for data in resp.content.iter_any():
            buf += data
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                payload = event[len(b"data: "):]
                if payload != b"[DONE]" and json.loads(payload)["choices"][0]["delta"].get("content"):
                    arrivals.append(time.perf_counter() - t0)
    assert len(arrivals) == 20
    assert 0.08 <= arrivals[0] <= 0.3, arrivals[0]  # the first chunk comes one interval after the headers
    assert 1.9 <= arrivals[-1] <= 2.5, arrivals[-1]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert min(gaps) > 0.03 and max(gaps) < 0.25, gaps
    rec = mock.requests[-1]
    assert len(rec.chunk_times) == 20
    rec_gaps = [b - a for a, b in zip(rec.chunk_times, rec.chunk_times[1:])]
    assert all(0.03 < g < 0.25 for g in rec_gaps), rec_gaps
    assert 0.08 < rec.chunk_times[0] - rec.headers_at < 0.25
    assert abs(sum(rec_gaps) / len(rec_gaps) - 0.1) < 0.01  # on a fixed schedule: no drift
    assert rec.done_at >= rec.chunk_times[-1] and rec.received_at <= clock()


async def test_disconnect_mid_stream(mock, http):
    mock.enqueue(Reply(content="a b c d e f", disconnect_after=3))
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(mock.url + "/v1/chat/completions", json=STREAM) as resp:
            assert resp.status == 200
            async for data in resp.content.iter_any():
                received += data
    events = sse_data(received)
    assert len(events) == 4  # role chunk + 3 content chunks, then the connection closed
    assert "[DONE]" not in events
    rec = mock.requests[-1]
    assert rec.disconnected and len(rec.chunk_times) == 3
    # the server survives and keeps serving
    async with http.post(mock.url + "/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 200


async def test_disconnect_without_response_and_mid_body(mock, http):
    mock.enqueue(Reply(disconnect_after=0))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.post(mock.url + "/v1/chat/completions", json=CHAT) as resp:
            await resp.read()
    assert mock.requests[-1].status is None
    mock.enqueue(Reply(disconnect_after=1, size=10_000))
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(mock.url + "/v1/chat/completions", json=CHAT) as resp:
            assert resp.status == 200
            await resp.read()


async def test_client_going_away_is_recorded(mock, http):
    mock.enqueue(Reply(content="a b c d e f g h", chunks=8, interval=0.05))
    async with http.post(mock.url + "/v1/chat/completions", json=STREAM) as resp:
        await resp.content.readuntil(b"\n\n")
        await resp.content.readuntil(b"\n\n")
        resp.connection.transport.abort()
    import asyncio

    for _ in range(50):
        rec = mock.requests[-1]
        if rec.done_at is not None:
            break
        await asyncio.sleep(0.02)
    assert rec.disconnected and len(rec.chunk_times) < 8


async def test_malformed_json_body(mock, http):
    mock.enqueue(Reply(malformed=True))
    async with http.post(mock.url + "/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        raw = await resp.read()
    assert raw.startswith(b'{"id":"chatcmpl-')
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)


async def test_malformed_sse(mock, http):
    mock.enqueue(Reply(content="one two three", malformed=True))
    async with http.post(mock.url + "/v1/chat/completions", json=STREAM) as resp:
        events = sse_data(await resp.read())
    bad = []
    for e in events:
        if e == "[DONE]":
            continue
        try:
            json.loads(e)
        except json.JSONDecodeError:
            bad.append(e)
    assert len(bad) == 1 and bad[0].startswith('{"id":"chatcmpl-')


async def test_gzip_json_and_stream(mock, http):
    mock.enqueue(Reply(content="zipped answer", gzip=True))
    async with http.post(mock.url + "/v1/chat/completions", json=CHAT, auto_decompress=False) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        raw = await resp.read()
    assert json.loads(gzip.decompress(raw))["choices"][0]["message"]["content"] == "zipped answer"

    mock.enqueue(Reply(content="zipped stream of words", gzip=True))
    async with http.post(mock.url + "/v1/chat/completions", json=STREAM) as resp:  # auto-decompressed
        assert resp.headers["Content-Encoding"] == "gzip"
        events = sse_data(await resp.read())
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1]) \
        == "zipped stream of words"

    # each event is flushed on its own: the first compressed piece already decodes to the role chunk
    mock.enqueue(Reply(content="x y", gzip=True, interval=0.2))
    async with http.post(mock.url + "/v1/chat/completions", json=STREAM, auto_decompress=False) as resp:
        first = await resp.content.readany()
        d = zlib.decompressobj(31)
        assert b'"role":"assistant"' in d.decompress(first)
        await resp.read()


async def test_huge_body(mock, http):
    mock.enqueue(Reply(size=5_000_000))
    async with http.post(mock.url + "/v1/chat/completions", json=CHAT) as resp:
        raw = await resp.read()
    assert len(raw) > 5_000_000
    content = json.loads(raw)["choices"][0]["message"]["content"]
    assert len(content) == 5_000_000

    mock.enqueue(Reply(size=5_000_000))
    async with http.post(mock.url + "/v1/chat/completions", json=STREAM) as resp:
        events = sse_data(await resp.read())
    parts = [json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1]]
    assert sum(map(len, parts)) == 5_000_000
    assert len(parts) <= 256 + 2


async def test_raw_body_and_raw_events(mock, http):
    mock.enqueue(Reply(body={"anything": [1, 2, 3]}))
    mock.enqueue(Reply(body=b"plain bytes", content_type="text/plain", status=202))
    mock.enqueue(Reply(events=[{"a": 1}, "not json", b"event: custom\ndata: x\n\n"], interval=0.01))
    async with http.post(mock.url + "/v1/chat/completions", json=CHAT) as resp:
        assert await resp.json() == {"anything": [1, 2, 3]}
    async with http.post(mock.url + "/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 202 and resp.content_type == "text/plain" and await resp.read() == b"plain bytes"
    async with http.post(mock.url + "/v1/chat/completions", json=STREAM) as resp:
        assert await resp.read() == b'data: {"a":1}\n\ndata: not json\n\nevent: custom\ndata: x\n\n'
    assert len(mock.requests[-1].chunk_times) == 3

"""What the network and a provider's server can do to one attempt, through the relay over real HTTP to raw local
servers: each is classified as the failover criteria name it (``invalid_header`` for an answer that is not readable
HTTP, ``error`` for a cut body or a server that hung up), fails over, and reaches a lone target's client with its
own code. Compressed answers arrive inflated."""

from __future__ import annotations

import pytest

from tests.http1.servers import RawServer, answer
from tollgate.mock import Reply

from .helpers import chat_config, openai_target, post, sse_events

CHAT = "/v1/chat/completions"
CHAT_ANSWER = (b'{"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini", "choices": '
               b'[{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}], '
               b'"usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}')
CUT = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"id\": \"chatcmpl-1\""


@pytest.mark.parametrize("reply,code", [
    (b"SMTP ready\r\n\r\n", "upstream_unreadable"),                                      # not HTTP
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "upstream_unreadable"),
    (answer(b'{"id": 1}', headers="Content-Encoding: br\r\n"), "upstream_unreadable"),  # an encoding not decoded
    (CUT, "upstream_broken"),                                                            # the body broke off
    (b"", "upstream_unreachable"),                                                       # hung up, no answer
])
async def test_a_broken_answer_is_classified_and_fails_over(mock, relay, reply, code):
    async def handle(reader, writer):
        await server.request(reader)
        writer.write(reply)
        await writer.drain()

    async with RawServer(handle) as server:
        lone = await relay(chat_config([openai_target(server.url, "primary")]))
        result = await post(lone.url)
        assert result.status == 502, result.text
        assert result.json()["error"]["code"] == code
        assert "sk-primary" not in result.text

        both = await relay(chat_config([openai_target(server.url, "primary"),
                                        openai_target(mock.url, "secondary", priority=2)],
                                       balancer={"algorithm": "priority"}))
        result = await post(both.url)
        assert result.status == 200 and result.target == "secondary", result.text


async def test_gzip_answers_and_streams_arrive_inflated(mock, relay):
    r = await relay(chat_config([openai_target(mock.url, "primary")], response_streaming="allow"))
    mock.enqueue(Reply(content="a zipped hello", gzip=True), path="/primary" + CHAT)
    result = await post(r.url)
    assert result.status == 200, result.text
    assert result.json()["choices"][0]["message"]["content"] == "a zipped hello"

    mock.enqueue(Reply(content="a zipped stream of words", gzip=True), path="/primary" + CHAT)
    result = await post(r.url, {"messages": [{"role": "user", "content": "hi"}], "stream": True})
    events = sse_events(result.text)
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e.get("choices"))
    assert text == "a zipped stream of words"


async def test_calls_through_the_relay_share_one_keep_alive_connection(relay):
    async def handle(reader, writer):
        while (await server.request(reader)) is not None:
            writer.write(answer(CHAT_ANSWER, headers="Content-Type: application/json\r\n"))
            await writer.drain()

    async with RawServer(handle) as server:
        r = await relay(chat_config([openai_target(server.url, "primary")]))
        for _ in range(3):
            result = await post(r.url)
            assert result.status == 200 and result.json()["choices"][0]["message"]["content"] == "hi", result.text
        assert server.connections == 1 and len(server.requests) == 3
        line, headers, _ = server.requests[0]
        assert line == b"POST /primary/v1/chat/completions HTTP/1.1"
        assert headers["authorization"] == "Bearer sk-primary-0123456789abcdef"


async def test_a_stream_that_started_in_time_may_outlast_the_timeout_but_a_plain_answer_may_not(mock, relay):
    r = await relay(chat_config([openai_target(mock.url, "primary")], response_streaming="allow", timeout=0.8))
    mock.enqueue(Reply(content="one two three four five six", chunks=6, interval=0.25), path="/primary" + CHAT)
    result = await post(r.url, {"messages": [{"role": "user", "content": "hi"}], "stream": True})
    events = sse_events(result.text)
    assert result.status == 200 and result.elapsed > 1.4 and events[-1] == "[DONE]", result.text
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e.get("choices"))
    assert text == "one two three four five six"

    mock.enqueue(Reply(content="too late", latency=1.5), path="/primary" + CHAT)
    result = await post(r.url)
    assert result.status == 504 and result.elapsed < 1.4, result.text
    assert result.json()["error"]["code"] == "upstream_timeout"

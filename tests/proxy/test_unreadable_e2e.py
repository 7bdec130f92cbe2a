"""The unreadable-answer rule and Cohere v1 end to end: real SDK clients -> the Kong double -> ``tollgate serve``
(plugin server + relay) -> the mock LLM. What the client, the process log and the analytics line each see."""

from __future__ import annotations

import time

import openai
import pytest

from tollgate.mock import Reply

from .e2e import PROVIDER_KEYS, Env, env, fresh_mock  # noqa: F401 (the module's environment)
from .helpers import MESSAGES, post

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHAT = "/v1/chat/completions"


def _lines(env: Env, msg: str, where=lambda line: True, deadline: float = 5) -> list[dict]:
    """Log lines with ``msg`` (that ``where`` accepts); they leave the process at the end of its loop turn, so
    allow a moment."""
    until = time.monotonic() + deadline
    while True:
        found = [line for line in env.log_lines(msg) if where(line)]
        if found or time.monotonic() > until:
            return found
        time.sleep(0.02)


async def test_an_unreadable_answer_is_a_502_through_kong_and_logged_scrubbed(env: Env):
    key = PROVIDER_KEYS["anthropic"]
    env.mock.enqueue(Reply(body=b'{"type": "message", "content": "not a list", "echo": "' + key.encode() + b'"}',
                           content_type="application/json"))
    answer = await post(env.kong.url, {"messages": MESSAGES}, path=f"/chat-anthropic{CHAT}")
    assert answer.status == 502
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "upstream_unexpected_shape")
    assert error["message"].startswith("anthropic answered in a form Tollgate cannot read")
    logged = _lines(env, "unreadable provider answer")
    assert logged and logged[-1]["provider"] == "anthropic"
    assert logged[-1]["first_bytes"].startswith('{"type": "message", "content": "not a list"')
    assert key not in env.stderr() and key not in answer.text


async def test_a_broken_frame_mid_stream_ends_with_an_error_event_and_no_done(env: Env):
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"}, "finish_reason": None}]}
    env.mock.enqueue(Reply(events=[chunk, '{"choices": [{"delta": {"content": "cut'], content_type="text/event-stream",
                           interval=0.1))
    stream = await openai.AsyncOpenAI(base_url=env.base("chat-openai"), api_key="x", max_retries=0
                                      ).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        async for piece in stream:
            received.append(piece)
    assert received[0].choices[0].delta.content == "Hello"        # what was readable reached the client
    assert "openai answered in a form Tollgate cannot read" in str(caught.value)


async def test_unreadable_usage_is_estimated_in_the_answer_and_the_analytics(env: Env):
    env.mock.enqueue(Reply(content="five words of plain text", usage={"input_tokens": "many", "output_tokens": 5}))
    answer = await openai.AsyncOpenAI(base_url=env.base("chat-anthropic"), api_key="x", max_retries=0
                                      ).chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES)
    assert answer.usage.model_extra.get("estimated") is True and answer.usage.completion_tokens > 0
    await env.kong.settle()
    route = next(r.id for r in env.kong.declarative.routes if r.name == "chat-anthropic")
    lines = _lines(env, "ai request", lambda line: line.get("route_id") == route and line.get("status") == 200)
    usage = lines[-1]["ai"]["proxy"]["usage"]
    assert usage["estimated"] is True and usage["total_tokens"] == answer.usage.total_tokens


async def test_cohere_v1_through_kong_streamed_and_not(env: Env):
    client = openai.AsyncOpenAI(base_url=env.base("chat-cohere-v1"), api_key="x", max_retries=0)
    env.mock.enqueue(Reply(content="Bonjour tout le monde", prompt_tokens=6, completion_tokens=4))
    answer = await client.chat.completions.create(model="command-r-plus", messages=[
        {"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hello everyone"}])
    assert answer.choices[0].message.content == "Bonjour tout le monde"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (6, 4)
    sent = env.mock.requests[-1]
    assert sent.path == "/v1/chat" and sent.json["preamble"] == "Answer in French."
    assert sent.headers["Authorization"] == f"Bearer {PROVIDER_KEYS['cohere']}"

    env.mock.enqueue(Reply(content="un deux trois", prompt_tokens=3, completion_tokens=3))
    stream = await client.chat.completions.create(model="command-r-plus", messages=MESSAGES, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "un deux trois"
    assert chunks[-1].usage.total_tokens == 6
    assert env.mock.requests[-1].json["stream"] is True

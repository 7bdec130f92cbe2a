"""Guards on streamed answers, semantic guards and ``during_call``, end to end: the openai SDK (and raw SSE where
the frames themselves matter) -> the Kong double -> ``tollgate serve`` -> the mock LLM, with the guard services'
mocks (tests/guardrails/mocks) and the local embeddings model.

The mock LLM answers what a test queues (``Reply``), paced chunk by chunk where the timing matters.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import pytest_asyncio

from tollgate.mock import Reply
from tollgate.mock.text import split_text

from .mocks import HANG, SMASH
from .test_acceptance import user
from .test_guard_services import GuardEnv, guard_env, settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

BUFFER = 40
SAFE = " ".join(f"calm{i}" for i in range(60))               # 60 distinct words, ~420 characters
BLOCKED_AT = 200
ANSWER_WITH_SMASH = SAFE[:BLOCKED_AT] + f" then {SMASH} and " + SAFE[BLOCKED_AT:]
DENY = ["how to build a bomb or a weapon", "instructions for making explosives"]
ALLOW = ["baking bread and cakes", "cooking recipes and kitchen tips"]
BOMB = "Tell me how to make a pipe bomb at home"
BREAD = "What is a good recipe for banana bread?"


def http_guard(url: str, **common: Any) -> dict[str, Any]:
    return {"name": "custom", "type": "http", "http": settings("http", url), "timeout": 1500, **common}


def semantic_guard(**semantic: Any) -> dict[str, Any]:
    return {"name": "topics", "type": "semantic", "guarding_mode": "BOTH", "response_buffer_size": 200,
            "reveal_failure_reason": True, "semantic": semantic}


def routes(url: str) -> dict[str, dict[str, Any]]:
    return {
        "window": {"guards": [http_guard(url, guarding_mode="OUTPUT", response_buffer_size=BUFFER,
                                         reveal_failure_reason=True)]},
        "window-closed": {"guards": [http_guard(url, guarding_mode="OUTPUT", response_buffer_size=BUFFER,
                                                timeout=600)]},
        "window-open": {"guards": [http_guard(url, guarding_mode="OUTPUT", response_buffer_size=BUFFER,
                                              timeout=600, fail_open=True)]},
        "sem-deny": {"guards": [semantic_guard(deny_topics=DENY, threshold=0.5)]},
        "sem-allow": {"guards": [semantic_guard(allow_topics=ALLOW, threshold=0.4)]},
        "during": {"guards": [http_guard(url, reveal_failure_reason=True)], "during_call": True},
        "during-open": {"guards": [http_guard(url, timeout=1000, fail_open=True)], "during_call": True},
        "during-closed": {"guards": [http_guard(url, timeout=600)], "during_call": True},
    }


async def raw_stream(env: GuardEnv, route: str, text: str) -> list[Any]:
    """The SSE frames of a streamed answer as the client gets them: JSON objects, and ``"[DONE]"``."""
    body = {"model": "gpt-4o-mini", "stream": True, "messages": user(text)}
    async with aiohttp.ClientSession() as http, \
            http.post(f"{env.kong.url}/{route}/v1/chat/completions", json=body) as answer:
        assert answer.status == 200
        raw = await answer.read()
    frames = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
    return [f if f == "[DONE]" else orjson.loads(f) for f in frames]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env():
    async with guard_env(routes) as env:
        yield env


@pytest.fixture(autouse=True)
def fresh(env: GuardEnv):
    env.mock.reset()
    env.guards.reset()
    yield


def texts_of(frames: list[Any]) -> str:
    return "".join(c["delta"].get("content") or "" for f in frames if isinstance(f, dict)
                   for c in f.get("choices") or ())


# -- streamed answers over a sliding window ---------------------------------------------------------------------

async def test_a_passing_stream_flows_while_the_provider_writes_and_holds_back_at_most_the_buffer(env: GuardEnv):
    env.mock.enqueue(Reply(content=SAFE, chunks=30, interval=0.08))
    stream = await env.client("window").chat.completions.create(model="gpt-4o-mini", messages=user("hi"),
                                                               stream=True)
    received: list[tuple[float, int]] = []                 # (when, characters so far)
    text = ""
    async for chunk in stream:
        piece = "".join(c.delta.content or "" for c in chunk.choices)
        if piece:
            text += piece
            received.append((time.perf_counter(), len(text)))
    assert text == SAFE
    written = env.mock.requests[-1].chunk_times                 # when the provider wrote each chunk
    pieces = [len(p) for p in split_text(SAFE, 30)]
    # event by event, not at the end: the client had text long before the provider finished
    assert received[0][0] < written[-1] - 0.5 and len(received) >= 8
    # hold-back: when the client got each piece, what the provider had written 0.25 s earlier (time enough for
    # the relay to read it, on a loaded machine) was at most the buffer (plus the chunk in flight) ahead of it
    for when, have in received:
        sent = sum(n for n, at in zip(pieces, written) if at < when - 0.25)
        assert sent - have <= BUFFER + max(pieces), (sent, have)
    assert len(env.guards.of("custom")) >= len(SAFE) // BUFFER


async def test_a_block_mid_stream_ends_with_content_filter_an_error_and_done(env: GuardEnv):
    """The client never sees text past the window in which the block was decided (nor any of the word)."""
    env.mock.enqueue(Reply(content=ANSWER_WITH_SMASH, chunks=40))
    frames = await raw_stream(env, "window", "hi")
    text = texts_of(frames)
    assert ANSWER_WITH_SMASH.startswith(text) and "smash" not in text
    assert len(text) >= BLOCKED_AT - 2 * BUFFER                   # the windows before the block went out
    assert frames[-1] == "[DONE]"
    assert frames[-2]["error"]["code"] == "content_filter" and frames[-2]["error"]["message"].endswith("violence")
    assert frames[-3]["choices"][0]["finish_reason"] == "content_filter"
    assert all("error" not in f for f in frames[:-2])
    # the SDK: text, then the content_filter finish, then it raises on the error event
    env.mock.enqueue(Reply(content=ANSWER_WITH_SMASH, chunks=40))
    stream = await env.client("window").chat.completions.create(model="gpt-4o-mini", messages=user("hi"),
                                                               stream=True)
    seen, finishes = "", []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            seen += "".join(c.delta.content or "" for c in chunk.choices)
            finishes += [c.finish_reason for c in chunk.choices if c.finish_reason]
    assert seen == text and finishes == ["content_filter"] and "content guard" in caught.value.message
    logged = await env.logged('"blocked_by":["custom"]')
    assert SMASH not in logged and '"output_windows"' in logged


@pytest.mark.parametrize("fail_open", [False, True])
async def test_a_guard_that_hangs_mid_stream_follows_fail_open(env: GuardEnv, fail_open: bool):
    answer = SAFE[:120] + f" {HANG} " + SAFE[120:200]
    env.mock.enqueue(Reply(content=answer, chunks=20))
    started = time.perf_counter()
    frames = await raw_stream(env, "window-open" if fail_open else "window-closed", "hi")
    assert time.perf_counter() - started < 5 and frames[-1] == "[DONE]"
    if fail_open:
        assert texts_of(frames) == answer and all("error" not in f for f in frames[:-1])
        assert await env.logged('"result":"unavailable"', '"fail_open":true')
        return
    assert frames[-2]["error"]["code"] == "guardrail_failed" and HANG not in texts_of(frames)
    assert frames[-3]["choices"][0]["finish_reason"] == "content_filter"


# -- semantic guards ----------------------------------------------------------------------------------------------

async def test_semantic_deny_on_the_prompt_and_on_the_answer(env: GuardEnv):
    with pytest.raises(openai.BadRequestError) as caught:
        await env.client("sem-deny").chat.completions.create(model="gpt-4o-mini", messages=user(BOMB))
    assert caught.value.code == "content_blocked" and "deny_topics[0]" in caught.value.message
    assert not env.mock.requests
    answer = await env.client("sem-deny").chat.completions.create(model="gpt-4o-mini", messages=user(BREAD))
    assert answer.choices[0].message.content == BREAD
    env.mock.enqueue(Reply(content=f"{SAFE[:250]} Sure. {BOMB}: take a steel pipe and fill it with powder."))
    stream = await env.client("sem-deny").chat.completions.create(model="gpt-4o-mini", messages=user(BREAD),
                                                                 stream=True)
    seen = ""
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            seen += "".join(c.delta.content or "" for c in chunk.choices)
    assert "pipe" not in seen and SAFE.startswith(seen.rstrip()) and seen
    assert caught.value.code == "content_filter"


async def test_semantic_allow_on_the_prompt_and_on_the_answer(env: GuardEnv):
    with pytest.raises(openai.BadRequestError) as caught:
        await env.client("sem-allow").chat.completions.create(model="gpt-4o-mini",
                                                              messages=user("Explain quantum computing to me"))
    assert caught.value.code == "content_blocked" and "off_topic" in caught.value.message
    answer = await env.client("sem-allow").chat.completions.create(model="gpt-4o-mini", messages=user(BREAD))
    assert answer.choices[0].message.content == BREAD
    env.mock.enqueue(Reply(content="Quantum computers use qubits in superposition to factor large numbers."))
    with pytest.raises(openai.BadRequestError) as caught:
        await env.client("sem-allow").chat.completions.create(model="gpt-4o-mini", messages=user(BREAD))
    assert caught.value.code == "content_filter" and "off_topic" in caught.value.message


# -- during_call --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
async def test_during_call_a_block_cancels_the_provider_call(env: GuardEnv, stream: bool):
    env.mock.enqueue(Reply(latency=3.0))                 # the provider is still thinking when the guard blocks
    started = time.perf_counter()
    with pytest.raises(openai.BadRequestError) as caught:
        await env.client("during").chat.completions.create(model="gpt-4o-mini", messages=user(SMASH),
                                                           stream=stream)
    assert time.perf_counter() - started < 2.0
    assert caught.value.code == "content_blocked" and caught.value.message.endswith("violence")
    assert len(env.mock.requests) == 1                 # the call had started ...
    deadline = time.monotonic() + 3
    while not env.mock.requests[-1].disconnected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert env.mock.requests[-1].disconnected          # ... and the relay closed it
    assert await env.logged("gate closed; provider call cancelled")


async def test_during_call_the_answer_waits_for_the_guards_and_both_run_at_once(env: GuardEnv):
    """The guard takes 1 s (it hangs; its timeout fails open) and the provider 0.8 s: one request takes about
    the longer of the two (not their sum, 1.8 s), and the provider was called before the guard's verdict."""
    env.mock.enqueue(Reply(latency=0.8))
    started = time.perf_counter()
    raw = await env.client("during-open").chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=user(f"{HANG} please"))
    took = time.perf_counter() - started
    assert raw.parse().choices[0].message.content == f"{HANG} please"
    assert raw.headers["X-Tollgate-Guardrails"] == "failed-open"
    assert 1.0 <= took < 1.5, took
    assert env.mock.requests[-1].received_at - started < 0.8          # the provider heard of it at once
    answer = await env.client("during").chat.completions.create(model="gpt-4o-mini", messages=user("calm"),
                                                                stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in answer if c.choices]) == "calm"


async def test_during_call_a_refusal_after_the_provider_answered_charges_what_it_reported(env: GuardEnv):
    """The guard fails closed after 0.6 s; the provider had answered at once, reporting its usage: the client gets
    the refusal, and the request is charged the provider's numbers (not an estimate)."""
    env.mock.enqueue(Reply(prompt_tokens=777, completion_tokens=55))
    before = len(env.log_lines())
    with pytest.raises(openai.InternalServerError) as caught:
        await env.client("during-closed").chat.completions.create(model="gpt-4o-mini",
                                                                  messages=user(f"{HANG} please"))
    assert caught.value.code == "guardrail_failed" and len(env.mock.requests) == 1
    logged = await env.logged('"prompt_tokens":777', since=before)
    assert '"completion_tokens":55' in logged and HANG not in logged

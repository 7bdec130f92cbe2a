"""tollgate-proxy end to end: real SDK clients -> the Kong double -> ``tollgate serve`` (plugin server + relay) ->
the mock LLM in each provider's wire format. One process, one double and one mock for the whole module."""

from __future__ import annotations

import asyncio
import time
import json
from collections import Counter

import openai
import pytest

from tollgate.mock import Reply, ToolCall

from .e2e import (ALL_KEYS, BEDROCK_SECRET, CHAT_PROVIDERS, EMBEDDING_PROVIDERS, PROVIDER_KEYS, Env, env,  # noqa: F401
                  fresh_mock, path_re)
from .helpers import MESSAGES, post

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHAT = "/v1/chat/completions"


def client(env: Env, route: str, **kwargs) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=env.base(route), api_key="client-side-dummy", max_retries=0, **kwargs)


def sync_client(env: Env, route: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=env.base(route), api_key="client-side-dummy", max_retries=0)


async def chat(env: Env, route: str, body=None, headers=None):
    return await post(env.kong.url, body, headers=headers, path=f"/{route}{CHAT}")


# -- failover --------------------------------------------------------------------------------------------------------

async def test_primary_429_then_500_the_secondary_answers(env: Env):
    env.mock.enqueue(Reply.fail(429, retry_after=5), Reply.fail(500), path="/primary" + CHAT)
    answers = [await client(env, "failover").chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES) for _ in range(2)]
    for raw in answers:
        assert raw.headers["X-Tollgate-Target"] == "secondary" and raw.headers["X-Tollgate-Attempts"] == "2"
        assert raw.parse().choices[0].message.content == "hello there"
    assert [r.path.split("/")[1] for r in env.mock.requests] == ["primary", "secondary"] * 2
    assert env.mock.requests[1].headers["Authorization"] == "Bearer sk-secondary-0123456789abcdef"


async def test_every_target_down_is_a_502_well_within_the_timeout(env: Env):
    env.mock.add_rule(Reply.fail(503, "upstream overloaded"), path=path_re("down-a"))
    env.mock.add_rule(Reply.fail(500, "upstream broke"), path=path_re("down-b"))
    with pytest.raises(openai.APIStatusError) as caught:
        await client(env, "down").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == 502
    message = caught.value.body["message"]
    assert "every target failed" in message and ("503" in message or "500" in message)


async def test_every_target_slow_is_answered_within_the_timeout(env: Env):
    env.mock.add_rule(Reply(latency=5))
    result = await chat(env, "slow")
    assert result.status == 504 and result.elapsed < 1.8                    # timeout: 1 s for everything
    assert result.json()["error"]["code"] == "upstream_timeout"


# -- routing ---------------------------------------------------------------------------------------------------------

async def test_1000_requests_over_weights_3_to_1(env: Env):
    async def one(_):
        return (await chat(env, "weights")).headers.get("X-Tollgate-Target")

    picks: Counter = Counter()
    for batch in range(10):
        picks.update(await asyncio.gather(*(one(i) for i in range(100))))
    assert sum(picks.values()) == 1000
    assert abs(picks["w-a"] / 1000 - 0.75) <= 0.05 and abs(picks["w-b"] / 1000 - 0.25) <= 0.05, picks


async def test_lowest_latency_sends_most_requests_to_the_faster_mock(env: Env):
    env.mock.add_rule(Reply(latency=0.08), path=path_re("lat-slow"))
    env.mock.add_rule(Reply(latency=0.005), path=path_re("lat-fast"))
    for _ in range(6):                                                      # warm-up
        await chat(env, "latency")
        await asyncio.sleep(0.02)
    picks = Counter([(await chat(env, "latency")).headers["X-Tollgate-Target"] for _ in range(60)])
    assert picks["lat-fast"] / 60 >= 0.9, picks


async def test_rules_on_header_consumer_and_prompt_size_pick_the_configured_target(env: Env):
    long_prompt = {"messages": [{"role": "user", "content": "lorem ipsum dolor " * 150}]}
    cases = [({}, None, "default"), ({"X-Tier": "premium"}, None, "premium"), ({"X-Tier": "basic"}, None, "default"),
             ({"apikey": "alice-key"}, None, "team"), ({"apikey": "bob-key"}, None, "default"),
             ({}, long_prompt, "large")]
    for headers, body, expected in cases:
        result = await chat(env, "rules", body, headers)
        assert result.status == 200 and result.headers["X-Tollgate-Target"] == expected, (headers, result.text)


# -- the pinned model --------------------------------------------------------------------------------------------------

async def test_a_pinned_model_cannot_be_escaped(env: Env):
    sdk = client(env, "pinned", default_headers={"X-Kong-LLM-Model": "openai/gpt-4o", "X-Model": "gpt-4o"})
    with pytest.raises(openai.BadRequestError, match="not available on this route"):
        await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    answer = await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                               extra_query={"model": "gpt-4o", "deployment": "gpt-4o"},
                                               extra_body={"engine": "gpt-4o"})
    assert answer.model == "gpt-4o-mini"
    (sent,) = env.mock.requests
    assert sent.json["model"] == "gpt-4o-mini" and sent.path == "/pinned" + CHAT and not sent.query_string
    assert sent.headers["Authorization"] == "Bearer sk-primary-0123456789abcdef"   # not the client's key


async def test_uri_captures_choose_the_model_where_the_route_says_so(env: Env):
    result = await post(env.kong.url, path="/captures/gpt-4o/v1/chat/completions")
    assert result.status == 200 and result.headers["X-Kong-LLM-Model"] == "openai/gpt-4o"
    assert env.mock.last_request.json["model"] == "gpt-4o"


# -- Kong's side: ai.proxy.meta and round trips ------------------------------------------------------------------------

async def test_access_sets_ai_proxy_meta_in_one_call(env: Env):
    await chat(env, "pinned")     # an instance's first request also asks Kong for its route's name (route_names.py)
    await chat(env, "pinned")
    await env.kong.settle()
    stats = env.kong.stats.last
    assert stats.pdk_calls[("tollgate-proxy", "kong.log.set_serialize_value")] == 1
    assert stats.by_phase[("tollgate-proxy", "access")] == 4   # HandleEvent, consumer, attachment, ai.proxy.meta
    meta = env.logs.entries[-1]["ai"]["proxy"]["meta"]
    assert meta["provider_name"] == "openai" and meta["request_model"] == "gpt-4o-mini" and meta["plugin_id"]


async def test_without_kong_analytics_access_is_three_round_trips(env: Env):
    await chat(env, "chat-openai")            # logging.log_statistics off (the default)
    await chat(env, "chat-openai")            # (not an instance's first request: that one also asks for the route name)
    await env.kong.settle()
    stats = env.kong.stats.last
    assert stats.by_phase[("tollgate-proxy", "access")] == 3   # HandleEvent, consumer, attachment
    assert ("tollgate-proxy", "kong.log.set_serialize_value") not in stats.pdk_calls
    assert "ai" not in env.logs.entries[-1]


# -- chat per provider, streamed usage ---------------------------------------------------------------------------------

@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_streamed_usage_equals_the_providers_final_usage(env: Env, provider: str):
    env.mock.enqueue(Reply(content="streamed answer from the provider", prompt_tokens=23, completion_tokens=11))
    stream = await client(env, f"chat-{provider}").chat.completions.create(
        model=env.configs[f"chat-{provider}"]["model"]["name"], messages=MESSAGES, stream=True,
        stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == "streamed answer from the provider" and finish == ["stop"]
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (23, 11, 34)
    await env.kong.settle()
    logged = _last_log(env, f"chat-{provider}")["ai"]["proxy"]["usage"]
    assert (logged["prompt_tokens"], logged["completion_tokens"], logged["estimated"]) == (23, 11, False)


async def test_a_provider_without_stream_usage_is_estimated_and_marked(env: Env):
    """An OpenAI-compatible server that ignores stream_options: no usage anywhere in its stream."""
    def chunk(delta, finish=None):
        return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    events = [chunk({"role": "assistant", "content": ""}), chunk({"content": "four words of text"}), chunk({}, "stop"),
              "[DONE]"]
    env.mock.enqueue(Reply(events=events, content_type="text/event-stream"))
    stream = await client(env, "chat-openai").chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    usage = chunks[-1].usage
    assert usage.completion_tokens > 0 and usage.model_extra.get("estimated") is True
    await env.kong.settle()
    logged = _last_log(env, "chat-openai")["ai"]["proxy"]["usage"]
    assert logged["estimated"] is True and logged["completion_tokens"] == usage.completion_tokens


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_chat_with_the_sync_sdk_and_tool_calls(env: Env, provider: str):
    env.mock.enqueue(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})], prompt_tokens=30,
                           completion_tokens=9))
    sdk = sync_client(env, f"chat-{provider}")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    model = env.configs[f"chat-{provider}"]["model"]["name"]
    answer = await asyncio.to_thread(sdk.chat.completions.create, model=model, messages=MESSAGES, tools=tools)
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert answer.choices[0].finish_reason == "tool_calls"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (30, 9)


async def test_openai_sdk_sync_and_async_stream_and_not(env: Env):
    route = "chat-openai"
    async_sdk, sdk = client(env, route), sync_client(env, route)
    one = await async_sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    two = await asyncio.to_thread(sdk.chat.completions.create, model="gpt-4o-mini", messages=MESSAGES)
    assert one.choices[0].message.content == two.choices[0].message.content == "hello there"

    def sync_stream() -> str:
        return "".join(c.choices[0].delta.content or "" for c in sdk.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True) if c.choices)

    streamed = [c async for c in await async_sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                                          stream=True)]
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "hello there"
    assert all(c.usage is None for c in streamed)                  # the client did not ask for usage
    assert await asyncio.to_thread(sync_stream) == "hello there"


# -- embeddings ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("provider", EMBEDDING_PROVIDERS)
async def test_embeddings(env: Env, provider: str):
    model = env.configs[f"emb-{provider}"]["model"]["name"]
    env.mock.enqueue(Reply(embeddings=[[0.5, -0.25, 0.125]]))
    result = await client(env, f"emb-{provider}").embeddings.create(model=model, input="embed this sentence")
    assert result.data[0].embedding == [0.5, -0.25, 0.125]
    sent = env.mock.last_request
    assert sent.endpoint in ("openai.embeddings", "azure.embeddings", "mistral.embeddings", "gemini.embed",
                             "bedrock.invoke"), sent.endpoint
    await env.kong.settle()
    usage = _last_log(env, f"emb-{provider}")["ai"]["proxy"]["usage"]
    assert usage["prompt_tokens"] > 0                             # recorded for every provider...
    assert usage["estimated"] is (provider == "gemini")            # ...counted by us where the provider says none
    if provider != "gemini":
        assert result.usage.prompt_tokens == usage["prompt_tokens"]


# -- secrets ---------------------------------------------------------------------------------------------------------

async def test_no_configured_key_appears_in_logs_errors_or_metrics(env: Env):
    """Runs last: searches everything the module produced, after provoking errors that echo the keys."""
    bodies = []
    for provider in CHAT_PROVIDERS:
        route = f"chat-{provider}"
        own = PROVIDER_KEYS.get(provider) or BEDROCK_SECRET
        env.mock.enqueue(Reply.fail(401, f"Incorrect API key provided: {own}"))       # the key it was sent
        bodies.append((await chat(env, route)).text)
        env.mock.enqueue(Reply.fail(500, f"internal error for key {own}"))
        bodies.append((await chat(env, route, {"messages": MESSAGES, "stream": True})).text)
    env.mock.add_rule(Reply.fail(503, "keys: " + " ".join(ALL_KEYS)))
    bodies.append((await chat(env, "down")).text)
    await env.kong.settle()
    stderr, metrics = env.stderr(), env.metrics()
    kong_log = "\n".join(str(line) for line in env.kong.log_lines())
    serialized = json.dumps(env.logs.entries)
    assert "ai request" in stderr and "tollgate_ai_llm_requests_total" in metrics
    for key in ALL_KEYS:
        for where, text in (("stderr", stderr), ("metrics", metrics), ("kong log", kong_log),
                            ("serialized log", serialized), *(("error body", b) for b in bodies)):
            assert key not in text, f"{key} found in {where}"


def _last_log(env: Env, route: str) -> dict:
    """The route's newest analytics line; lines leave the process at the end of its loop turn, so allow a moment."""
    deadline = time.monotonic() + 5
    while True:
        lines = [line for line in env.log_lines() if line.get("route_id") == _route_id(env, route)]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert lines, f"no log line for {route}"
    return lines[-1]


def _route_id(env: Env, name: str) -> str:
    return next(r.id for r in env.kong.declarative.routes if r.name == name)

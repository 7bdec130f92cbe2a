"""Issue 11's acceptance, end to end: openai SDK / aiohttp -> Kong double -> real ``tollgate serve`` (plugin server
+ relay: semantic cache, proxy) -> mock LLM, with the local model, real Redis and a moved clock."""

from __future__ import annotations

import asyncio
import urllib.request

import aiohttp
import pytest

from tollgate.mock import Reply

from .conftest import Env, ask, sdk, text

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def fresh_mock(env: Env):
    env.mock.reset()
    yield


async def test_a_repeat_hits_the_exact_tier_and_a_paraphrase_the_semantic_one(env: Env):
    node = env.node
    mark = await node.mark()
    status, headers, first = await ask(node, "local", "What is the capital of France?")
    assert status == 200 and headers["X-Cache-Status"] == "Miss"
    status, headers, again = await ask(node, "local", "What is the capital of France?")
    assert status == 200 and headers["X-Cache-Status"] == "Hit" and "X-Cache-Similarity" not in headers
    assert text(again) == text(first) and again["id"] != first["id"]
    assert int(headers["X-Cache-Ttl"]) <= 300 and headers["Age"] == "0" and headers["X-Cache-Key"]
    status, headers, para = await ask(node, "local", "Tell me the capital city of France.")
    assert status == 200 and headers["X-Cache-Status"] == "Hit"
    assert float(headers["X-Cache-Similarity"]) >= 0.8
    assert text(para) == text(first)
    assert env.mock.request_count == 1
    cache = await node.caches(mark, 3)
    assert [c["cache_status"] for c in cache] == ["Miss", "Hit", "Hit"]
    assert cache[1]["tier"] == "exact" and cache[1]["embeddings_tokens"] is None      # no embedding for a repeat
    assert cache[2]["tier"] == "semantic" and cache[2]["embeddings_tokens"] > 0
    assert cache[2]["saved"]["completion_tokens"] > 0 and cache[0]["stored"] is True
    metrics = urllib.request.urlopen(f"{node.status_url}/metrics", timeout=5).read().decode()
    assert 'tollgate_ai_llm_cache_lookups_total{cache_status="Hit",embeddings_model="all-MiniLM-L6-v2"' in metrics
    assert 'tollgate_ai_llm_requests_total{ai_model="gpt-4o-mini",ai_provider="openai",cache_status="Hit"' in metrics


async def test_a_hit_counts_nothing_against_the_token_limit(env: Env):
    node = env.node
    env.mock.default = Reply(prompt_tokens=40, completion_tokens=60)
    _, miss, _ = await ask(node, "limited", "What is a token bucket?")
    assert miss["X-Cache-Status"] == "Miss"
    remaining = []
    for _ in range(2):
        _, headers, _ = await ask(node, "limited", "What is a token bucket?")
        assert headers["X-Cache-Status"] == "Hit"
        remaining.append(int(headers["X-AI-RateLimit-Remaining-hour"]))
    # each hit's admission shows the miss's 100 tokens spent and its own reservation; the first hit's reservation
    # was given back in full (charged nothing), so the second sees exactly the same
    assert remaining[0] == remaining[1] < 100000 - 100


async def test_a_near_miss_is_never_a_hit(env: Env):
    node = env.node
    mark = await node.mark()
    await ask(node, "local", "How do I enable 2FA?")
    status, headers, body = await ask(node, "local", "How do I disable 2FA?")
    assert headers["X-Cache-Status"] == "Miss" and "disable 2FA" in text(body)
    assert env.mock.request_count == 2
    rejected = (await node.caches(mark, 2))[1].get("rejected")
    assert rejected and rejected[0]["reason"] == "opposites"


TOPICS = {"consumer": "Explain how a heat pump works.", "system prompt": "How do tides form?",
          "model": "What is a prime number?", "tools": "Describe the water cycle.",
          "temperature": "Why do leaves change colour?", "history": "How does a compiler work?"}


@pytest.mark.parametrize("change", sorted(TOPICS))
async def test_the_same_prompt_in_another_context_misses(env: Env, change: str):
    node = env.node
    prompt = TOPICS[change]
    base = {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": prompt}],
            "temperature": 0.2}
    assert (await ask(node, "local", **base))[1]["X-Cache-Status"] == "Miss"
    assert (await ask(node, "local", **base))[1]["X-Cache-Status"] == "Hit"
    other, key = dict(base), "alice-key"
    if change == "consumer":
        key = "bob-key"
    elif change == "system prompt":
        other["messages"] = [{"role": "system", "content": "You are verbose."}, base["messages"][1]]
    elif change == "model":
        other["model"] = "gpt-4o"
    elif change == "tools":
        other["tools"] = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    elif change == "temperature":
        other["temperature"] = 1.2
    else:
        other["messages"] = [base["messages"][0], {"role": "user", "content": "Hi"},
                             {"role": "assistant", "content": "Hello"}, base["messages"][1]]
    status, headers, _ = await ask(node, "local", key=key, **other)
    assert status == 200 and headers["X-Cache-Status"] == "Miss", change
    assert env.mock.request_count == 2


async def test_scope_route_shares_between_consumers_and_a_nearby_temperature_hits(env: Env):
    node = env.node
    await ask(node, "routescope", "Why is the sky blue?", temperature=0.5)
    status, headers, _ = await ask(node, "routescope", "Why is the sky blue?", key="bob-key", temperature=0.6)
    assert headers["X-Cache-Status"] == "Hit"
    assert env.mock.request_count == 1


async def test_openai_sdk_streams_fill_the_cache_and_hits_replay_as_valid_streams(env: Env):
    node = env.node
    env.mock.default = Reply(content="Tides come from the moon's pull on the oceans.", chunks=6)
    client = sdk(node, "local")
    stream = await client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                  messages=[{"role": "user", "content": "What causes tides?"}])
    first = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert first == "Tides come from the moon's pull on the oceans."
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "What is the cause of tides?"}])
    assert raw.headers["X-Cache-Status"] == "Hit" and raw.headers["Content-Type"].startswith("text/event-stream")
    chunks = [c async for c in raw.parse()]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == first
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0      # include_usage honoured
    answer = await client.chat.completions.create(model="gpt-4o-mini",
                                                  messages=[{"role": "user", "content": "What causes tides?"}])
    assert answer.choices[0].message.content == first                              # a stream's entry, as JSON
    assert env.mock.request_count == 1


async def test_the_completions_route_is_cached_and_replayed_in_its_own_format(env: Env):
    node = env.node
    env.mock.default = Reply(content="Roses are red, violets are blue.", chunks=4)
    client = sdk(node, "completions")
    stream = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Write a short poem about roses.",
                                             stream=True)
    first = "".join([c.choices[0].text async for c in stream if c.choices])
    raw = await client.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct",
                                                            prompt="Write a short poem about roses.")
    assert raw.headers["X-Cache-Status"] == "Hit"
    answer = raw.parse()
    assert answer.object == "text_completion" and answer.choices[0].text == first
    stream = await client.completions.create(model="gpt-3.5-turbo-instruct", stream=True,
                                             prompt="Write a short poem about roses.")
    assert "".join([c.choices[0].text async for c in stream if c.choices]) == first
    assert env.mock.request_count == 1


async def test_errors_and_broken_streams_are_never_cached(env: Env):
    node = env.node
    mark = await node.mark()
    env.mock.enqueue(Reply.fail(500, "upstream broke"))
    assert (await ask(node, "local", "Name three prime numbers."))[0] == 500
    env.mock.enqueue(Reply(content="one two three four five six", chunks=6, error_after=2))
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{node.url}/local/v1/chat/completions", headers={"apikey": "alice-key"},
                             json={"model": "gpt-4o-mini", "stream": True,
                                   "messages": [{"role": "user", "content": "Name three prime numbers."}]}) as r:
            body = (await r.read()).decode()
    assert "[DONE]" not in body and '"error"' in body
    env.mock.enqueue(Reply(content="cut short", finish_reason="length"))
    assert (await ask(node, "local", "Name three prime numbers."))[0] == 200
    status, headers, _ = await ask(node, "local", "Name three prime numbers.")
    assert headers["X-Cache-Status"] == "Miss"                                     # nothing above was stored
    assert env.mock.request_count == 4
    cache = await node.caches(mark, 4)
    assert [c.get("not_stored") for c in cache[1:3]] == ["incomplete answer", "finish_reason length"]
    assert cache[3].get("stored") is True


async def test_a_client_that_leaves_mid_stream_stores_nothing(env: Env):
    node = env.node
    env.mock.default = Reply(content=" ".join(f"w{i}" for i in range(30)), chunks=30, interval=0.05)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{node.url}/local/v1/chat/completions", headers={"apikey": "alice-key"},
                             json={"model": "gpt-4o-mini", "stream": True,
                                   "messages": [{"role": "user", "content": "Count to thirty."}]}) as r:
            await r.content.readany()
    await asyncio.sleep(0.3)
    env.mock.default = Reply(content="1, 2, 3...")
    status, headers, _ = await ask(node, "local", "Count to thirty.")
    assert headers["X-Cache-Status"] == "Miss"


async def test_length_answers_are_cached_when_configured(env: Env):
    node = env.node
    env.mock.default = Reply(content="A long story", finish_reason="length")
    await ask(node, "length", "Tell me a long story.")
    assert (await ask(node, "length", "Tell me a long story."))[1]["X-Cache-Status"] == "Hit"


async def test_entries_expire_after_cache_ttl_and_max_age_is_honoured(env: Env):
    node = env.node
    await ask(node, "ttl", "How do vaccines work?")
    env.clock.advance(30)
    status, headers, _ = await ask(node, "ttl", "How do vaccines work?")
    assert headers["X-Cache-Status"] == "Hit" and headers["Age"] == "30" and headers["X-Cache-Ttl"] == "30"
    status, headers, _ = await ask(node, "ttl", "How do vaccines work?", headers={"Cache-Control": "max-age=10"})
    assert headers["X-Cache-Status"] == "Miss"                # too old for this client: asked again and refilled
    env.clock.advance(61)
    status, headers, _ = await ask(node, "ttl", "How does a vaccine work?")
    assert headers["X-Cache-Status"] == "Miss"
    assert env.mock.request_count == 3


async def test_cache_control_no_store_bypasses_and_no_cache_refreshes(env: Env):
    node = env.node
    env.mock.default = Reply(content="first answer")
    _, headers, _ = await ask(node, "local", "What is a black hole?", headers={"Cache-Control": "no-store"})
    assert headers["X-Cache-Status"] == "Bypass"
    _, headers, _ = await ask(node, "local", "What is a black hole?")
    assert headers["X-Cache-Status"] == "Miss"                                      # no-store stored nothing
    env.mock.default = Reply(content="second answer")
    _, headers, body = await ask(node, "local", "What is a black hole?", headers={"Cache-Control": "no-cache"})
    assert headers["X-Cache-Status"] == "Refresh" and text(body) == "second answer"
    _, headers, body = await ask(node, "local", "What is a black hole?")
    assert headers["X-Cache-Status"] == "Hit" and text(body) == "second answer"


async def test_two_processes_share_one_redis_cache(env: Env):
    one, two = env.nodes
    env.mock.default = Reply(content="Use a heat sink.")
    await ask(one, "redis", "How do I keep my CPU cool?")
    status, headers, body = await ask(two, "redis", "How do I keep my CPU cool?")
    assert headers["X-Cache-Status"] == "Hit" and text(body) == "Use a heat sink."
    status, headers, body = await ask(two, "redis", "How can I keep my CPU cool?")
    assert headers["X-Cache-Status"] == "Hit" and "X-Cache-Similarity" in headers
    assert env.mock.request_count == 1


@pytest.mark.parametrize("stop_on_failure", [False, True])
async def test_store_down_follows_stop_on_failure_and_never_hangs(env: Env, stop_on_failure: bool):
    node = env.node
    route = "down-closed" if stop_on_failure else "down-open"
    env.down.stop()
    try:
        started = asyncio.get_running_loop().time()
        status, headers, body = await ask(node, route, "Is the store up?")
        assert asyncio.get_running_loop().time() - started < 3
    finally:
        env.down.start()
    if stop_on_failure:
        assert status == 503 and body["error"]["code"] == "cache_unavailable"
        assert env.mock.request_count == 0
    else:
        assert status == 200 and headers["X-Cache-Status"] == "Bypass"
        assert await node.logged('"cache unavailable"')


async def test_an_unreachable_embeddings_provider_is_a_bypass(env: Env):
    node = env.node
    status, headers, body = await ask(node, "emb-down", "Is the embeddings provider up?")
    assert status == 200 and headers["X-Cache-Status"] == "Bypass" and env.mock.request_count == 1
    assert await node.logged('"part":"embeddings"')


async def test_purge_everything_one_route_or_one_consumer(env: Env):
    node = env.node
    for route in ("local", "routescope"):
        await ask(node, route, "What is purging?")
        await ask(node, route, "What is purging?", key="bob-key")
    async with aiohttp.ClientSession() as http:
        async with http.delete(f"{node.status_url}/cache", params={"consumer": "alice"}) as r:
            assert r.status == 200, await r.text()
    hits = {(route, key): (await ask(node, route, "What is purging?", key=key))[1]["X-Cache-Status"]
            for route in ("local", "routescope") for key in ("alice-key", "bob-key")}
    assert hits[("local", "alice-key")] == "Miss" and hits[("local", "bob-key")] == "Hit"
    async with aiohttp.ClientSession() as http:
        async with http.delete(f"{node.status_url}/cache") as r:
            assert r.status == 200
    assert (await ask(node, "routescope", "What is purging?", key="bob-key"))[1]["X-Cache-Status"] == "Miss"
    env.clock.advance(1)       # entries made at the very instant of a purge count as purged: let time go on


async def test_provider_embeddings_through_the_driver(env: Env):
    node = env.node
    mark = await node.mark()
    await ask(node, "provider-emb", "What is an embedding?")
    _, headers, _ = await ask(node, "provider-emb", "What is an embedding?")
    assert headers["X-Cache-Status"] == "Hit"
    embedding_calls = [r for r in env.mock.requests if r.path.endswith("/embeddings")]
    assert len(embedding_calls) == 1                     # the repeat took the exact tier: no second embedding
    assert embedding_calls[0].headers["Authorization"] == "Bearer sk-emb-0123456789"
    cache = await node.caches(mark, 2)
    assert cache[0]["embeddings_provider"] == "openai" and cache[0]["embeddings_model"] == "text-embedding-3-small"


async def test_semantic_routing_and_the_cache_embed_a_prompt_once(env: Env):
    node = env.node
    mark = await node.mark()
    status, headers, _ = await ask(node, "routed", "How are embeddings computed by a model?")
    assert status == 200 and headers["X-Cache-Status"] == "Miss"
    assert "nearest=" in headers["X-Tollgate-Route-Reason"]
    prompts = [r.json["input"] for r in env.mock.requests if r.path.endswith("/embeddings")]
    # the two target descriptions once (they are remembered), and the prompt once for both plugins
    assert sorted(prompts) == sorted(["questions about embeddings", "poems",
                                      "How are embeddings computed by a model?"])
    cache = (await node.caches(mark, 1))[0]
    assert cache["cache_status"] == "Miss" and cache["embeddings_tokens"] > 0


async def test_bad_config_is_refused(env: Env):
    from tests.harness.config import ConfigError

    node = env.node
    with pytest.raises(ConfigError, match="embeddings.model.provider"):
        node.kong.load_config({"_format_version": "3.0", "plugins": [
            {"name": "tollgate-semantic-cache", "config": {"embeddings": {"model": {"provider": "nope"}}}}]})
    with pytest.raises(ConfigError, match="threshold"):
        node.kong.load_config({"_format_version": "3.0", "plugins": [
            {"name": "tollgate-semantic-cache", "config": {"vectordb": {"threshold": 1.5}}}]})
    status, _, body = await ask(node, "bad-dims", "Anything")      # dimensions the local model cannot give
    assert status == 500
    assert await node.logged("vectordb.dimensions is 512")


async def test_tollgate_cache_purge_from_the_command_line(env: Env):
    import subprocess
    import sys

    one, two = env.nodes
    route_id = next(r.id for r in one.kong.declarative.routes if r.name == "cli")
    await ask(one, "cli", "What is a purge command?")
    await ask(one, "local", "What is a purge command?", key="bob-key")
    env.clock.advance(1)

    def purge(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "tollgate", "cache", "purge", *args], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "purged" in purge("--redis-url", env.redis.url, "--route", route_id)
    assert (await ask(two, "cli", "What is a purge command?"))[1]["X-Cache-Status"] == "Miss"
    assert (await ask(one, "local", "What is a purge command?", key="bob-key"))[1]["X-Cache-Status"] == "Hit"
    purge("--status-url", one.status_url, "--consumer", "bob")
    assert (await ask(one, "local", "What is a purge command?", key="bob-key"))[1]["X-Cache-Status"] == "Miss"

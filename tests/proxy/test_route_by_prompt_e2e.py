"""Issue 15's acceptance, end to end: the openai SDK -> the Kong double -> ``tollgate serve`` (plugin server + relay,
the local embeddings model) -> the mock LLM. Semantic choice and its fallback below the threshold; tier choice and
failover from a tier; the reason in the header, the log line and the metrics."""

from __future__ import annotations

import asyncio

import openai
import pytest
import pytest_asyncio

from tollgate.mock import Reply

from .e2e import Env, fresh_mock, path_re, start_env, stop_env  # noqa: F401 (fresh_mock: autouse)
from .helpers import HARD, semantic_config, tiered_config

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

REASON = "X-Tollgate-Route-Reason"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env():
    e = await start_env(lambda url: {"semantic": semantic_config(url), "tiers": tiered_config(url)})
    yield e
    await stop_env(e)


def client(env: Env, route: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=env.base(route), api_key="client-side-dummy", max_retries=0)


async def chat(env: Env, route: str, text: str):
    raw = await client(env, route).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
    return raw, raw.parse()


async def logged(env: Env, raw) -> tuple[dict, str]:
    """(``ai.routing``, ``ai.proxy.meta.target``) of the answer's log line, written after the answer has gone."""
    request_id = raw.headers["X-Kong-Request-Id"]
    for _ in range(100):
        for line in env.log_lines():
            if line.get("kong_request_id") == request_id:
                return line["ai"].get("routing"), line["ai"]["proxy"]["meta"]["target"]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no log line for request {request_id}")


async def test_semantic_choice_by_meaning(env: Env):
    raw, answer = await chat(env, "semantic", "My Python script crashes with a KeyError, how do I fix the bug?")
    assert raw.headers["X-Tollgate-Target"] == "coder" and answer.choices[0].message.content, raw.headers[REASON]
    assert raw.headers[REASON].startswith("nearest=coder; similarity=0.")
    raw, _ = await chat(env, "semantic", "Write a poem about the mountains in winter")
    assert raw.headers["X-Tollgate-Target"] == "poet", raw.headers[REASON]
    assert [r.path.split("/")[1] for r in env.mock.requests] == ["coder", "poet"]
    routing, target = await logged(env, raw)
    assert target == "poet" and routing["algorithm"] == "semantic" and routing["nearest"] == "poet"
    assert routing["similarity"] >= routing["threshold"] == 0.35 and routing["fallback"] is None


async def test_semantic_fallback_below_the_threshold(env: Env):
    raw, _ = await chat(env, "semantic", "Recommend a good restaurant in Rome")
    assert raw.headers["X-Tollgate-Target"] == "openai/gpt-4o", raw.headers[REASON]
    assert raw.headers[REASON].startswith("fallback=below-threshold; nearest=")
    assert [r.path.split("/")[1] for r in env.mock.requests] == ["general"]
    routing, target = await logged(env, raw)
    assert target == "openai/gpt-4o" and routing["fallback"] == "below-threshold"
    assert routing["similarity"] < 0.35


@pytest.mark.parametrize("text, target, tier", [
    ("What's the capital of Peru?", "small", "simple"),
    ("Explain how a heat pump works.", "medium", "standard"),
    (HARD, "large", "hard"),
])
async def test_tier_choice(env: Env, text, target, tier):
    raw, answer = await chat(env, "tiers", text)
    assert raw.headers["X-Tollgate-Target"] == target and answer.choices[0].message.content, raw.headers[REASON]
    assert raw.headers[REASON].startswith(f"tier={tier}; score=")
    routing, logged_target = await logged(env, raw)
    assert logged_target == target and routing["tier"] == tier and routing["scorer"] == "local"


async def test_failover_from_a_tier(env: Env):
    env.mock.add_rule(Reply.fail(503, "overloaded"), path=path_re("large"))
    raw, answer = await chat(env, "tiers", HARD)
    assert raw.headers["X-Tollgate-Target"] == "medium" and raw.headers["X-Tollgate-Attempts"] == "2"
    assert raw.headers[REASON].startswith("tier=hard;") and answer.choices[0].message.content
    assert [r.path.split("/")[1] for r in env.mock.requests] == ["large", "medium"]


async def test_a_streamed_answer_is_routed_the_same_way(env: Env):
    stream = await client(env, "tiers").chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": HARD}], stream=True)
    assert stream.headers["X-Tollgate-Target"] == "large" and stream.headers[REASON].startswith("tier=hard;")
    text = "".join([c.choices[0].delta.content or "" async for c in stream.parse() if c.choices])
    assert text


async def test_decisions_are_counted_in_the_metrics(env: Env):
    await chat(env, "tiers", "What's the capital of Peru?")
    metrics = env.metrics()
    assert 'tollgate_ai_proxy_route_decisions_total{algorithm="complexity",decision="simple"}' in metrics
    assert 'tollgate_ai_proxy_route_decisions_total{algorithm="semantic",decision="default"}' in metrics

"""Balancer algorithms and rules on the relay path (in process, mock LLM over HTTP)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

from tollgate.mock import Reply

from .helpers import chat_config, openai_target, post

CHAT = "/v1/chat/completions"


async def test_weights_3_to_1(mock, relay):
    r = await relay(chat_config([openai_target(mock.url, "primary", weight=300),
                                 openai_target(mock.url, "secondary", weight=100)]))
    results = [await post(r.url) for _ in range(200)]
    assert Counter(x.target for x in results) == {"primary": 150, "secondary": 50}


async def test_lowest_latency_learns_the_faster_target(mock, relay):
    mock.add_rule(Reply(latency=0.06), path=re.compile("^/primary/"))
    mock.add_rule(Reply(latency=0.005), path=re.compile("^/secondary/"))
    r = await relay(chat_config([openai_target(mock.url, "primary"), openai_target(mock.url, "secondary")],
                                balancer={"algorithm": "lowest-latency", "latency_strategy": "e2e"}))
    for _ in range(4):                                              # warm-up: each target gets probed
        await post(r.url)
        await asyncio.sleep(0.01)
    picks = Counter([(await post(r.url)).target for _ in range(40)])
    assert picks["secondary"] >= 38, picks


async def test_lowest_usage_moves_to_the_less_used_target(mock, relay):
    mock.add_rule(Reply(content="word " * 200), path=re.compile("^/primary/"))
    mock.add_rule(Reply(content="word"), path=re.compile("^/secondary/"))
    r = await relay(chat_config([openai_target(mock.url, "primary"), openai_target(mock.url, "secondary")],
                                balancer={"algorithm": "lowest-usage"}))
    picks = []
    for _ in range(12):
        picks.append((await post(r.url)).target)
        await asyncio.sleep(0.005)
    assert picks.count("secondary") >= 9, picks                    # the primary's big answers count against it


async def test_least_busy_avoids_a_target_with_requests_in_flight(mock, relay):
    mock.add_rule(Reply(latency=0.5), path=re.compile("^/primary/"))
    r = await relay(chat_config([openai_target(mock.url, "primary"), openai_target(mock.url, "secondary")],
                                balancer={"algorithm": "least-busy"}))
    primary = next(s.id for s in r.policy.specs if s.description == "primary")
    pending = []
    while r.policy.balancer.in_flight[primary] == 0:               # until a slow request holds the primary
        pending.append(asyncio.ensure_future(post(r.url)))
        await asyncio.sleep(0.03)
    picks = [(await post(r.url)).target for _ in range(5)]
    assert picks == ["secondary"] * 5
    await asyncio.gather(*pending)


async def test_consistent_hashing_keeps_a_key_on_its_target(mock, relay):
    r = await relay(chat_config([openai_target(mock.url, "primary"), openai_target(mock.url, "secondary"),
                                 openai_target(mock.url, "third")],
                                balancer={"algorithm": "consistent-hashing", "hash_on_header": "X-Session"}))
    seen: dict[str, set[str]] = {}
    for i in range(30):
        key = f"session-{i % 6}"
        seen.setdefault(key, set()).add((await post(r.url, headers={"X-Session": key})).target)
    assert all(len(targets) == 1 for targets in seen.values())
    assert len({next(iter(t)) for t in seen.values()}) >= 2


async def test_cost_picks_the_cheapest_target(mock, relay):
    r = await relay(chat_config([
        openai_target(mock.url, "primary", "gpt-4o"),                                  # priced by the table
        openai_target(mock.url, "secondary", "house-model", options={"input_cost": 0.01, "output_cost": 0.02}),
        openai_target(mock.url, "third", "unpriced-model")], balancer={"algorithm": "cost"}))
    assert {(await post(r.url)).target for _ in range(5)} == {"secondary"}
    assert r.contexts[-1].meta["cost"] is not None                 # priced in its options: reported


async def test_rules_on_header_consumer_and_prompt_size(mock, relay):
    cfg = chat_config([
        openai_target(mock.url, "premium", match={"headers": {"X-Tier": ["premium"]}}),
        openai_target(mock.url, "team", match={"consumers": ["team-a"]}),
        openai_target(mock.url, "large", match={"min_prompt_tokens": 200}),
        openai_target(mock.url, "default")])
    anonymous = await relay(cfg)
    team = await relay(cfg, identity={"id": "c-1", "username": "alice", "custom_id": "team-a"})
    long_prompt = {"messages": [{"role": "user", "content": "lorem ipsum " * 200}]}
    assert (await post(anonymous.url)).target == "default"
    assert (await post(anonymous.url, headers={"X-Tier": "premium"})).target == "premium"
    assert (await post(anonymous.url, headers={"X-Tier": "free"})).target == "default"
    assert (await post(team.url)).target == "team"
    assert (await post(anonymous.url, long_prompt)).target == "large"


async def test_a_specific_target_falls_back_to_the_default(mock, relay):
    r = await relay(chat_config([openai_target(mock.url, "premium", match={"headers": {"X-Tier": ["premium"]}}),
                                 openai_target(mock.url, "default")]))
    mock.enqueue(Reply.fail(503), path="/premium" + CHAT)
    result = await post(r.url, headers={"X-Tier": "premium"})
    assert result.target == "default" and result.headers["X-Tollgate-Attempts"] == "2"

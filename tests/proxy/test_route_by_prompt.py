"""Algorithms semantic and complexity on the relay path (in process, mock LLM over HTTP, the local embeddings
model): the choice, its reason, the fallbacks, failover, the scorer model, and the configs refused."""

from __future__ import annotations

import re

import pytest

from tollgate import schema as schema_lang
from tollgate.mock import Reply

from .conftest import Relay
from .helpers import HARD, KEYS, ask, chat_config, hits, openai_target, post, semantic_config, tiered_config

CHAT = "/v1/chat/completions"
REASON = "X-Tollgate-Route-Reason"

# -- semantic ------------------------------------------------------------------------------------------------------

async def test_semantic_sends_a_prompt_to_the_nearest_target_and_says_why(mock, relay):
    r = await relay(semantic_config(mock.url))
    code = await post(r.url, ask("Fix this Python function, it throws a KeyError when the dict is empty"))
    poem = await post(r.url, ask("Write a poem about the sea at night"))
    assert (code.status, code.target, poem.target) == (200, "coder", "poet")
    assert re.fullmatch(r"nearest=coder; similarity=0\.\d+", code.headers[REASON]), code.headers[REASON]
    routing = r.contexts[0].meta["ai_log"]["routing"]
    assert routing["algorithm"] == "semantic" and routing["nearest"] == "coder" and routing["fallback"] is None
    assert routing["similarity"] >= 0.35 and routing["threshold"] == 0.35
    assert (hits(mock, "coder"), hits(mock, "poet"), hits(mock, "general")) == (1, 1, 0)


async def test_semantic_below_the_threshold_goes_to_the_default_target(mock, relay):
    r = await relay(semantic_config(mock.url))
    result = await post(r.url, ask("Recommend a good restaurant in Rome"))
    assert result.status == 200 and result.target == "openai/gpt-4o"
    reason = result.headers[REASON]
    assert reason.startswith("fallback=below-threshold; nearest=") and reason.endswith("; threshold=0.35")
    assert r.contexts[0].meta["ai_log"]["routing"]["fallback"] == "below-threshold"


async def test_semantic_reads_descriptions_when_targets_have_no_examples(mock, relay):
    cfg = chat_config([openai_target(mock.url, "Programming and code: writing, debugging and explaining software"),
                       openai_target(mock.url, "Creative writing: stories, poems and song lyrics")],
                      balancer={"algorithm": "semantic", "semantic": {"threshold": 0.3}})
    cfg["targets"][0]["model"]["options"]["upstream_url"] = f"{mock.url}/coder{CHAT}"
    cfg["targets"][1]["model"]["options"]["upstream_url"] = f"{mock.url}/poet{CHAT}"
    r = await relay(cfg)
    result = await post(r.url, ask("Write a poem about the sea at night"))
    assert result.target == "Creative writing: stories, poems and song lyrics" and hits(mock, "poet") == 1


async def test_semantic_fails_over_to_the_next_nearest_then_the_defaults(mock, relay):
    r = await relay(semantic_config(mock.url))
    mock.enqueue(Reply.fail(503), path=f"/coder{CHAT}")
    mock.enqueue(Reply.fail(500), path=f"/poet{CHAT}")
    result = await post(r.url, ask("Why does my JavaScript code throw a TypeError?"))
    assert result.status == 200 and result.target == "openai/gpt-4o"
    assert result.headers["X-Tollgate-Attempts"] == "3" and result.headers[REASON].startswith("nearest=coder;")
    assert [q.path.split("/")[1] for q in mock.requests] == ["coder", "poet", "general"]


async def test_provider_embeddings_embed_the_targets_once_and_a_failure_falls_back(mock, relay):
    cfg = semantic_config(mock.url)
    cfg["embeddings"] = {"model": {"provider": "openai", "name": "text-embedding-3-small",
                                   "options": {"upstream_url": f"{mock.url}/emb/v1/embeddings"}},
                         "auth": {"header_name": "Authorization", "header_value": "Bearer sk-embeddings-0123456789"}}
    r = await relay(cfg)
    for _ in range(2):
        assert (await post(r.url, ask("Write a poem about rain"))).status == 200
    # the targets' eight examples once (four each), then the prompt once: its repeat is remembered
    assert hits(mock, "emb") == 8 + 1
    another_worker = await relay(cfg)               # Kong starts an instance of the config per worker
    assert (await post(another_worker.url, ask("Write a poem about snow"))).status == 200
    assert hits(mock, "emb") == 8 + 2
    assert r.contexts[0].meta["ai_log"]["routing"]["fallback"] in (None, "below-threshold")

    broken = await relay({**cfg, "embeddings": {**cfg["embeddings"], "model": {
        **cfg["embeddings"]["model"], "options": {"upstream_url": f"{mock.url}/broken/v1/embeddings"}}}})
    mock.add_rule(Reply.fail(500, "embeddings are down"), path=re.compile("^/broken/"))
    result = await post(broken.url, ask("Write a poem about rain"))
    assert result.status == 200 and result.target == "openai/gpt-4o"
    assert result.headers[REASON] == "fallback=embeddings-failed; error=embeddings failed"


# -- complexity ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, target, tier", [
    ("What's the capital of Peru?", "small", "simple"),
    ("Write a short email to my team moving Friday's meeting to Monday.", "medium", "standard"),
    (HARD, "large", "hard"),
])
async def test_complexity_sends_each_tier_to_its_targets(mock, relay, text, target, tier):
    r = await relay(tiered_config(mock.url))
    result = await post(r.url, ask(text))
    assert result.status == 200 and result.target == target
    assert re.fullmatch(rf"tier={tier}; score=[01]\.\d+; scorer=local", result.headers[REASON])
    routing = r.contexts[0].meta["ai_log"]["routing"]
    assert routing["tier"] == tier and routing["scorer"] == "local" and routing["latency_ms"] < 50


async def test_a_failing_tier_fails_over_to_the_next_tier(mock, relay):
    r = await relay(tiered_config(mock.url))
    mock.enqueue(Reply.fail(503, "overloaded"), path=f"/large{CHAT}")
    result = await post(r.url, ask(HARD))
    assert result.status == 200 and result.target == "medium" and result.headers["X-Tollgate-Attempts"] == "2"
    assert result.headers[REASON].startswith("tier=hard;")
    assert [q.path.split("/")[1] for q in mock.requests] == ["large", "medium"]


def with_scorer_model(mock, **extra) -> dict:
    return tiered_config(mock.url, scorer="model", **extra,
                  model={"provider": "openai", "name": "gpt-4o-mini",
                         "options": {"upstream_url": f"{mock.url}/grader{CHAT}"}},
                  auth={"header_name": "Authorization", "header_value": f"Bearer {KEYS['third']}"})


async def test_the_scorer_model_decides_the_tier(mock, relay):
    r = await relay(with_scorer_model(mock))
    mock.add_rule(Reply(content="Hard."), path=re.compile("^/grader/"))
    result = await post(r.url, ask("What's the capital of Peru?"))
    assert result.target == "large" and result.headers[REASON] == "tier=hard; scorer=model"
    grader = next(q for q in mock.requests if q.path.startswith("/grader/"))
    sent = grader.json
    assert sent["messages"][-1]["content"] == "What's the capital of Peru?" and sent["max_tokens"] == 5
    assert grader.headers["Authorization"] == f"Bearer {KEYS['third']}"


@pytest.mark.parametrize("reply, error", [
    (Reply(latency=3), "model timeout"),
    (Reply.fail(500), "model http_500"),
    (Reply(content="I cannot tell."), "model no tier in the answer"),
])
async def test_without_an_answer_from_the_scorer_model_the_local_scorer_decides(mock, relay, reply, error):
    r = await relay(with_scorer_model(mock, timeout=0.3))
    mock.add_rule(reply, path=re.compile("^/grader/"))
    result = await post(r.url, ask("What's the capital of Peru?"))
    assert result.status == 200 and result.target == "small" and result.elapsed < 2
    assert re.fullmatch(rf"tier=simple; score=0\.\d+; scorer=local; error={error}", result.headers[REASON])


# -- configs that cannot work ----------------------------------------------------------------------------------------

def target(name: str, **extra) -> dict:
    return {"model": {"provider": "openai", "name": name}, **extra}


@pytest.mark.parametrize("cfg, message", [
    (chat_config([target("a"), target("b")], balancer={"algorithm": "semantic"}), "description or examples"),
    (chat_config([target("a", tier="simple"), target("b")], balancer={"algorithm": "complexity"}),
     r"targets\[2\] has no tier"),
    (chat_config([target("a", tier="hard"), target("b")]), r"targets\[1\]\.tier is only read by"),
    (chat_config([target("a", examples=["x"]), target("b")]), r"targets\[1\]\.examples is only read by"),
    (chat_config([target("a", tier="hard"), target("b", tier="simple")],
                 balancer={"algorithm": "complexity", "complexity": {"scorer": "model"}}),
     "needs balancer.complexity.model"),
    (chat_config([target("a", tier="hard"), target("b", tier="simple")],
                 balancer={"algorithm": "complexity", "complexity": {"examples": [{"prompt": "hi", "tier": "simple"}]}}),
     "none for standard, hard"),
])
def test_configs_that_cannot_work_are_refused(cfg, message):
    with pytest.raises(ValueError, match=message):
        Relay(cfg)


@pytest.mark.parametrize("cfg, field", [
    (chat_config([target("a", tier="expert")], balancer={"algorithm": "complexity"}), "targets[0].tier"),
    (chat_config([target("a")], balancer={"algorithm": "semantic", "semantic": {"threshold": 2}}),
     "balancer.semantic.threshold"),
    (chat_config([target("a")], balancer={"algorithm": "complexity", "complexity": {
        "examples": [{"prompt": "hi", "tier": "trivial"}]}}), "balancer.complexity.examples[0].tier"),
])
def test_the_schema_refuses_unknown_tiers_and_thresholds(cfg, field):
    with pytest.raises(schema_lang.SchemaError) as caught:
        Relay(cfg)
    assert any(path.startswith(field) for path in caught.value.errors), caught.value.errors


async def test_a_request_without_text_goes_to_the_middle_tier_or_the_defaults(mock, relay):
    image_only = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}
    tiers = await relay(tiered_config(mock.url))
    result = await post(tiers.url, image_only)
    assert result.status == 200 and result.target == "medium"
    assert result.headers[REASON] == "tier=standard; scorer=none; error=no text"
    meanings = await relay(semantic_config(mock.url))
    result = await post(meanings.url, image_only)
    assert result.status == 200 and result.target == "openai/gpt-4o" and result.headers[REASON] == "fallback=no-text"


async def test_when_every_tier_fails_the_error_still_says_the_decision(mock, relay):
    r = await relay(tiered_config(mock.url))
    mock.add_rule(Reply.fail(503, "overloaded"))
    result = await post(r.url, ask(HARD))
    assert result.status == 502 and result.json()["error"]["code"] == "all_targets_failed"
    assert result.headers["X-Tollgate-Attempts"] == "3" and result.headers[REASON].startswith("tier=hard;")
    mock.reset()
    mock.enqueue(Reply.fail(400, "bad request"), path=f"/large{CHAT}")
    result = await post(r.url, ask(HARD))
    assert result.status == 400 and result.target == "large" and result.headers[REASON].startswith("tier=hard;")

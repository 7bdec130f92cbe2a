"""What analytics.record adds to the usage record, read from ctx.meta as the stages leave it: plain answers,
limit refusals, provider errors, and the keys the semantic cache and the guardrails set (a cache hit's savings
are counted as saved, not spent; a guard's block shows under its rule)."""

from __future__ import annotations

import time

import pytest

from tollgate import analytics, usage
from tollgate.context import RequestContext
from tollgate.dashboard import report
from tollgate.providers.base import Usage


@pytest.fixture(autouse=True)
def empty_record():
    usage.RECORD.clear()
    yield
    usage.RECORD.clear()


def finished(status: int, consumer: str = "alice", **meta) -> RequestContext:
    ctx = RequestContext(method="POST", path="/v1/chat/completions", query="", headers={}, body=b"{}",
                         identity={"id": f"id-{consumer}", "username": consumer}, policies={}, route_id="r1")
    ctx.status = status
    ctx.meta.update(meta)
    return ctx


def test_answers_refusals_errors_cache_hits_and_guard_blocks_land_in_their_rows():
    served = finished(200, provider="openai", model="gpt-4o-mini", cost=0.25, latency_ms=120.0, ttft_ms=30.0)
    served.usage = Usage(prompt_tokens=100, completion_tokens=20, total_tokens=120)
    refused = finished(429, "bob")
    refused.meta["refusal"] = ("tollgate-token-limit", "tokens")
    failed = finished(502, "bob", failed_provider="anthropic", request_model="claude-sonnet-4-5")
    hit = finished(200, provider="openai", model="gpt-4o-mini", cache_status="Hit", cost=0.0,
                   cache={"cache_status": "Hit", "saved": {"prompt_tokens": 100, "completion_tokens": 20,
                                                           "cost": 0.25}})
    hit.usage = Usage(prompt_tokens=100, completion_tokens=20, total_tokens=120)
    miss = finished(200, provider="openai", model="gpt-4o-mini", cache_status="Miss", cost=0.25)
    blocked = finished(400, "carol", ai_log={"guardrails": {"rule": "deny:secrets", "action": "block"}})
    for ctx in (served, refused, failed, hit, miss, blocked):
        analytics.record(ctx)

    data = report.dashboard(usage.RECORD, time.time() + 1, "5m", 300, 10)
    totals = data["totals"]
    assert (totals["requests"], totals["prompt_tokens"], totals["completion_tokens"]) == (6, 100, 20)
    assert totals["cost"] == pytest.approx(0.5)                     # the hit is saved, not spent
    assert (totals["saved_tokens"], totals["saved_cost"]) == (120, 0.25)
    assert (totals["cache_hits"], totals["cache_lookups"], totals["cache_hit_rate"]) == (1, 2, 0.5)
    assert (totals["refusals"], totals["errors"], totals["blocks"]) == (1, 1, 1)
    assert data["refusals"] == [{"plugin": "tollgate-token-limit", "reason": "tokens", "count": 1}]
    assert data["errors"] == [{"provider": "anthropic", "status": "502", "count": 1}]
    assert data["blocks"] == [{"plugin": "guardrails", "rule": "deny:secrets", "count": 1}]
    models = {row["name"]: row for row in data["by"]["model"]}
    assert models["claude-sonnet-4-5"]["errors"] == 1              # the model the client asked for
    assert 96 <= models["gpt-4o-mini"]["latency_p50_ms"] <= 150 and 24 <= models["gpt-4o-mini"]["ttft_p50_ms"] <= 38
    consumers = {row["name"]: row["requests"] for row in data["by"]["consumer"]}
    assert consumers == {"alice": 3, "bob": 2, "carol": 1}

"""Issue 11's acceptance, end to end: openai SDK / aiohttp -> Kong double -> real ``tollgate serve`` (plugin server
+ relay: semantic cache, proxy) -> mock LLM, with the local model, real Redis and a moved clock."""

from __future__ import annotations

import asyncio
import json

import pytest

from tollgate.mock import Reply

from .conftest import answer_text, ask, sdk

pytestmark = pytest.mark.timeout(120)

LOCAL = {"vectordb": {"strategy": "local"}}


async def log_entries(double, count: int) -> list[dict]:
    """The process's analytics lines, once ``count`` of them are written (the log writer is asynchronous)."""
    for _ in range(100):
        lines = [json.loads(line) for line in double.process.stderr_text().splitlines()
                 if line.startswith("{") and '"msg":"ai request"' in line]
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} analytics lines, got {len(lines)}")


async def test_a_repeat_hits_the_exact_tier_and_a_paraphrase_the_semantic_one(gateway, mock_llm):
    (double,) = await gateway(LOCAL)
    status, headers, first = await ask(double, "What is the capital of France?")
    assert status == 200 and headers["X-Cache-Status"] == "Miss"
    status, headers, again = await ask(double, "What is the capital of France?")
    assert status == 200 and headers["X-Cache-Status"] == "Hit" and "X-Cache-Similarity" not in headers
    assert answer_text(again) == answer_text(first) and again["id"] != first["id"]
    assert int(headers["X-Cache-Ttl"]) <= 300 and headers["Age"] == "0" and headers["X-Cache-Key"]
    status, headers, para = await ask(double, "Tell me the capital city of France.")
    assert status == 200 and headers["X-Cache-Status"] == "Hit"
    assert float(headers["X-Cache-Similarity"]) >= 0.8
    assert answer_text(para) == answer_text(first)
    assert mock_llm.request_count == 1
    cache = [e["ai"]["proxy"].get("cache") for e in await log_entries(double, 3)]
    assert [c["cache_status"] for c in cache] == ["Miss", "Hit", "Hit"]
    assert cache[1]["tier"] == "exact" and cache[1]["embeddings_tokens"] is None      # no embedding for a repeat
    assert cache[2]["tier"] == "semantic" and cache[2]["embeddings_tokens"] > 0
    assert cache[2]["saved"]["completion_tokens"] > 0


async def test_a_near_miss_is_never_a_hit(gateway, mock_llm):
    (double,) = await gateway(LOCAL)
    await ask(double, "How do I enable 2FA?")
    status, headers, body = await ask(double, "How do I disable 2FA?")
    assert headers["X-Cache-Status"] == "Miss" and "disable 2FA" in answer_text(body)
    assert mock_llm.request_count == 2
    rejected = (await log_entries(double, 2))[-1]["ai"]["proxy"]["cache"].get("rejected")
    assert rejected and rejected[0]["reason"] == "opposites"

"""The status listener's dashboard routes in process: the figures a range sums, bad input, the bearer token."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tollgate import runtime as runtime_module, usage
from tollgate.attachments import AttachmentTable
from tollgate.process import status_app
from tollgate.runtime import Runtime
from tollgate.settings import Settings
from tollgate.usage import Key

NOW = 1_767_229_200.0   # 2026-01-01T01:00:00Z
TOKEN = "status-secret-0123"


@pytest.fixture
def record() -> Any:
    """The process's usage record with a known hour of traffic, on a runtime whose clock says NOW."""
    previous = runtime_module._current
    runtime_module.install(Runtime(settings=Settings(), attachments=AttachmentTable(), clock=lambda: NOW))
    usage.RECORD.clear()

    def add(ago: float, consumer: str, model: str, outcome: str = "ok", prompt: int = 0, completion: int = 0,
            cost: float = 0.0, latency: float | None = None, provider: str = "openai", cache: str = "") -> None:
        row = usage.RECORD.row(NOW - ago, Key("r1", consumer, provider, model, cache, outcome))
        row.requests += 1
        row.prompt_tokens += prompt
        row.completion_tokens += completion
        row.cost += cost
        if latency is not None:
            row.latency = usage.observe(row.latency, latency)

    yield add
    usage.RECORD.clear()
    runtime_module._current = previous


async def client(token: str | None = None) -> TestClient:
    made = TestClient(TestServer(status_app(token)))
    await made.start_server()
    return made


@pytest.fixture
async def http() -> AsyncIterator[TestClient]:
    made = await client()
    yield made
    await made.close()


async def test_data_sums_the_range_per_dimension(record, http):
    record(30, "alice", "gpt-4o-mini", prompt=100, completion=20, cost=0.5, latency=100)
    record(90, "alice", "gpt-4o-mini", prompt=100, completion=30, cost=0.25, latency=200)
    record(200, "bob", "claude", prompt=10, completion=5, cost=1.0, latency=400, provider="anthropic")
    record(300, "bob", "claude", outcome="refused:tollgate-cost-quota:budget_exceeded")
    record(320, "bob", "gpt-4o-mini", outcome="error:500")
    record(340, "carol", "gpt-4o-mini", cache="Hit")
    record(350, "carol", "gpt-4o-mini", cache="Miss")
    record(2 * 3600, "dave", "gpt-4o-mini", prompt=999)            # outside 1h
    answer = await http.get("/dashboard/data?range=1h")
    assert answer.status == 200
    data = await answer.json()
    totals = data["totals"]
    assert (totals["requests"], totals["prompt_tokens"], totals["completion_tokens"]) == (7, 210, 55)
    assert totals["cost"] == pytest.approx(1.75)
    assert (totals["refusals"], totals["errors"], totals["cache_hit_rate"]) == (1, 1, 0.5)
    consumers = {row["name"]: row for row in data["by"]["consumer"]}
    assert set(consumers) == {"alice", "bob", "carol"}
    assert consumers["alice"]["requests"] == 2 and consumers["alice"]["cost"] == pytest.approx(0.75)
    assert 80 <= consumers["alice"]["latency_p50_ms"] <= 125
    assert data["refusals"] == [{"plugin": "tollgate-cost-quota", "reason": "budget_exceeded", "count": 1}]
    assert data["errors"] == [{"provider": "openai", "status": "500", "count": 1}]
    assert data["cache"] == [{"status": "Hit", "count": 1}, {"status": "Miss", "count": 1}]
    assert sum(point["requests"] for point in data["series"]) == 7
    assert data["budgets"] == []
    five = await (await http.get("/dashboard/data?range=5m")).json()
    assert five["totals"]["requests"] == 4     # 30, 90, 200 and 300 s ago (the range starts at that minute)


@pytest.mark.parametrize("query, message", [
    ("range=2y", "unknown range"), ("range=1h&top=100000", "top must be between"), ("top=abc", "whole number"),
    ("top=0", "top must be between"),
])
async def test_bad_dashboard_queries_get_400(record, http, query, message):
    answer = await http.get("/dashboard/data?" + query)
    assert answer.status == 400
    assert message in (await answer.json())["error"]


@pytest.mark.parametrize("query, message", [
    ("range=forever", "unknown range"), ("period=fortnight", "unknown period"), ("by=colour", "distinct dimensions"),
    ("by=model,model", "distinct dimensions"), ("limit=99999999999999999999", "limit must be between"),
])
async def test_bad_usage_queries_get_400(record, http, query, message):
    answer = await http.get("/usage?" + query)
    assert answer.status == 400
    assert message in (await answer.json())["error"]


async def test_usage_rows_per_period_consumer_and_model(record, http):
    record(30, "alice", "gpt-4o-mini", prompt=100, completion=20, cost=0.5)
    record(90, "alice", "gpt-4o-mini", prompt=100, completion=30, cost=0.25)
    record(3700, "alice", "gpt-4o-mini", prompt=7, completion=3, cost=0.125)
    data = await (await http.get("/usage?range=24h&period=hour")).json()
    assert data["by"] == ["consumer", "model"]
    assert [(r["period_start"], r["consumer"], r["model"], r["prompt_tokens"], r["completion_tokens"], r["cost"])
            for r in data["rows"]] == [(NOW - 3600, "alice", "gpt-4o-mini", 200, 50, 0.75),
                                       (NOW - 7200, "alice", "gpt-4o-mini", 7, 3, 0.125)]


async def test_the_token_guards_data_but_not_the_page_or_health(record):
    http = await client(TOKEN)
    try:
        for path in ("/dashboard/data", "/usage", "/metrics", "/spend"):
            answer = await http.get(path)
            assert answer.status == 401, path
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
            assert TOKEN not in await answer.text()
            wrong = await http.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status == 401
            right = await http.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert right.status == 200, path
        for path in ("/health", "/dashboard", "/dashboard/static/dashboard.js"):
            assert (await http.get(path)).status == 200, path
        assert (await http.get("/dashboard/static/..%2Fprocess.py")).status == 404
        assert (await http.get("/dashboard/static/secret.txt")).status == 404
    finally:
        await http.close()


async def test_the_page_and_its_files_come_from_the_package(http):
    page = await http.get("/dashboard")
    html = await page.text()
    assert page.content_type == "text/html" and 'id="by-consumer"' in html
    assert "http://" not in html and "https://" not in html   # nothing fetched from elsewhere
    script = await (await http.get("/dashboard/static/dashboard.js")).text()
    assert "fetch(\"/dashboard/data" in script and "https://" not in script

"""Issue 6 acceptance, end to end: Kong double -> real ``tollgate serve`` -> mock LLM, real Redis, moved clock.

Every request goes through Kong's side of the plugin-server protocol (key-auth, then the Tollgate plugins'
``access`` over their sockets), through the Tollgate process's relay, to the mock LLM speaking the provider's
wire format. Expected costs are computed here, independently, from the mock's usage numbers and the table's
prices with exact fractions.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from fractions import Fraction
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.cost_quota.conftest import CLOCK_PLUGIN_DIR, FileClock, openai_proxy
from tollgate import tokens
from tollgate.mock import MockLLM, Reply
from tollgate.store import RedisStore

pytestmark = pytest.mark.timeout(90)

JAN_2026 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def price(provider: str, model: str) -> dict[str, Fraction]:
    """The table's prices for a model, USD per 1M tokens, as exact fractions (read from prices.json itself)."""
    import tollgate.pricing as pricing_package
    from importlib import resources

    document = json.loads(resources.files(pricing_package).joinpath("prices.json").read_text(), parse_float=str)
    providers = document["providers"]
    entry = providers.get(provider, {}).get(model) or providers[document["aliases"][provider]][model]
    return {k: Fraction(str(entry[k])) for k in ("input", "output", "cached_input", "reasoning")}


def exact_micros(p: dict[str, Fraction], prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> int:
    """The cost in micro-USD, rounded up to the micro-unit: what the budget must be charged."""
    usd = ((prompt - cached) * p["input"] + cached * p["cached_input"] + (completion - reasoning) * p["output"]
           + reasoning * p["reasoning"]) / 1_000_000
    micros = usd * 1_000_000
    return -((-micros.numerator) // micros.denominator)


def worst_micros(p: dict[str, Fraction], prompt_estimate: int, max_tokens: int) -> int:
    """The admission worst case in micro-USD (tokens x USD per 1M tokens = micro-USD), rounded up."""
    micros = Fraction(prompt_estimate * max(p["input"], p["cached_input"])
                      + max_tokens * max(p["output"], p["reasoning"]))
    return -((-micros.numerator) // micros.denominator)


def kong_config(relay_url: str, quota: dict[str, Any], proxies: dict[str, dict[str, Any]],
                consumers: tuple[str, ...] = ("alice", "bob", "carol")) -> dict[str, Any]:
    """One route per proxy config (``/<route name>``), each with key-auth, the proxy and the same quota."""
    plugins = []
    for route in proxies:
        plugins += [{"name": "key-auth", "route": route, "config": {"key_names": ["apikey"]}},
                    {"name": "tollgate-proxy", "route": route, "config": proxies[route]},
                    {"name": "tollgate-cost-quota", "route": route, "config": quota}]
    return {
        "_format_version": "3.0",
        "services": [{"name": "llm", "url": relay_url,
                      "routes": [{"name": route, "paths": [f"/{route}"]} for route in proxies]}],
        "consumers": [{"username": name, "keyauth_credentials": [{"key": f"{name}-key"}]} for name in consumers],
        "plugins": plugins,
    }


class Node:
    """One Kong node: a Kong double in front of its own Tollgate process."""

    def __init__(self, proc: Any, kong: Any):
        self.proc, self.kong = proc, kong

    async def chat(self, session: aiohttp.ClientSession, body: dict[str, Any], user: str = "alice",
                   headers: dict[str, str] | None = None, route: str = "chat") -> tuple[int, Any, Any]:
        async with session.post(self.kong.url + "/" + route, json=body,
                                headers={"apikey": f"{user}-key", **(headers or {})}) as answer:
            raw = await answer.read()
            parsed = json.loads(raw) if answer.content_type == "application/json" else raw.decode()
            return answer.status, answer.headers, parsed


@pytest.fixture
def file_clock(tmp_path: Any) -> FileClock:
    return FileClock(str(tmp_path / "clock"), JAN_2026)


@pytest.fixture
async def nodes(tollgate_process: Any, kong: Any, redis_url: str, file_clock: FileClock) -> Any:
    """``await nodes(quota, proxy, count=1)``: Kong doubles, each in front of its own Tollgate process."""

    async def make(quota: dict[str, Any], proxy: dict[str, Any] | None = None, count: int = 1,
                   routes: dict[str, dict[str, Any]] | None = None) -> list[Node]:
        made = []
        for _ in range(count):
            proc = tollgate_process(plugins_dir=CLOCK_PLUGIN_DIR, redis_url=redis_url, start=False,
                                    env={"TOLLGATE_TEST_CLOCK_FILE": file_clock.path})
            await proc.astart()
            double = await kong(kong_config(proc.relay_url, quota, routes or {"chat": proxy}), process=proc,
                                entry_plugins=["tollgate-proxy", "tollgate-cost-quota"])
            made.append(Node(proc, double))
        return made

    return make


@pytest.fixture
async def session() -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


async def spend_rows(redis_url: str, at: float) -> list[dict[str, Any]]:
    from tollgate.plugins.cost_quota.spend import report

    store = RedisStore.from_url(redis_url, connect_timeout=2, socket_timeout=2, timeout=5)  # an observer may wait
    try:
        return await report(store, at)
    finally:
        await store.close()


def row_of(rows: list[dict[str, Any]], budget: str, who: str | None = None) -> dict[str, Any]:
    found = [r for r in rows if r["budget"] == budget and (who is None or r["who"] == who)]
    assert len(found) == 1, rows
    return found[0]


# ------------------------------------------------------------------------------------------------- exact stop


async def test_exact_stop_of_a_one_cent_daily_budget(nodes, mock_llm, session, redis_url, file_clock):
    quota = {"budgets": [{"name": "daily", "amount": 0.01, "period": "day", "scope": "consumer"}],
             "strategy": "redis", "soft_limit_share": 0}
    (node,) = await nodes(quota, openai_proxy(mock_llm))
    p = price("openai", "gpt-4o-mini")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Count the budget down, please."}],
            "max_tokens": 400}
    estimate = tokens.count_chat_prompt(body, "gpt-4o-mini")
    worst = worst_micros(p, estimate, 400)
    spent, admitted, outcomes = 0, [], []
    for i in range(200):
        completion, cached = 150 + 37 * (i % 7), (i % 3) * 8
        mock_llm.enqueue(Reply(content="ok", prompt_tokens=estimate, completion_tokens=completion,
                               cached_tokens=min(cached, estimate)))
        status, headers, answer = await node.chat(session, body)
        fits = spent + worst <= 10_000
        outcomes.append((status, fits))
        if status != 200:
            break
        cost = exact_micros(p, estimate, completion, min(cached, estimate))
        spent += cost
        admitted.append(cost)
        assert headers["X-AI-Budget-Limit"] == "0.01"
    assert all((status == 200) == fits for status, fits in outcomes), outcomes
    assert outcomes[-1] == (429, False) and len(admitted) > 5
    assert answer["error"]["type"] == "insufficient_quota" and answer["error"]["code"] == "insufficient_quota"
    assert "'daily'" in answer["error"]["message"] and "2026-01-02T00:00:00+00:00" in answer["error"]["message"]
    assert headers["Retry-After"] == str(86400)
    # What the store holds is the sum of the exact costs, to the micro-unit.
    rows = await spend_rows(redis_url, file_clock.now)
    row = row_of(rows, "daily")
    assert row["spent_micros"] == sum(admitted) == spent
    assert spent + worst > 10_000 >= spent


# ----------------------------------------------------------------------------------------------------- streams

AWS_KEY_ID, AWS_SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

STREAM_ROUTES = {
    # route: (provider, model, proxy config maker)
    "openai": ("openai", "gpt-4o-mini", lambda m: openai_proxy(m)),
    "anthropic": ("anthropic", "claude-sonnet-4-5", lambda m: {
        "route_type": "llm/v1/chat", "auth": {"header_name": "x-api-key", "header_value": "sk-ant-test"},
        "model": {"provider": "anthropic", "name": "claude-sonnet-4-5",
                  "options": {"upstream_url": m.url + "/v1/messages", "max_tokens": 256,
                              "anthropic_version": "2023-06-01"}}}),
    "gemini": ("gemini", "gemini-2.5-flash", lambda m: {
        "route_type": "llm/v1/chat", "auth": {"param_name": "key", "param_value": "g-test", "param_location": "query"},
        "model": {"provider": "gemini", "name": "gemini-2.5-flash",
                  "options": {"upstream_url": f"{m.url}/v1beta/models/gemini-2.5-flash:generateContent"}}}),
    "bedrock": ("bedrock", "anthropic.claude-haiku-4-5-20251001-v1:0", lambda m: {
        "route_type": "llm/v1/chat", "auth": {"aws_access_key_id": AWS_KEY_ID, "aws_secret_access_key": AWS_SECRET},
        "model": {"provider": "bedrock", "name": "anthropic.claude-haiku-4-5-20251001-v1:0",
                  "options": {"upstream_url": m.url, "bedrock": {"aws_region": "us-east-1"}}}}),
}


async def wait_for_spend(redis_url: str, at: float, budget: str, expected: int, timeout: float = 5.0) -> int:
    """The budget's spend once it reaches ``expected`` (a stream is settled just after its last frame)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = [r for r in await spend_rows(redis_url, at) if r["budget"] == budget]
        spent = rows[0]["spent_micros"] if rows else 0
        if spent == expected or asyncio.get_running_loop().time() > deadline:
            return spent
        await asyncio.sleep(0.02)


def metric_values(text: str, name: str) -> dict[str, float]:
    """``{provider: value}`` of a Prometheus counter with an ai_provider label."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1:].rsplit("} ", 1)
            provider = labels.split('ai_provider="', 1)[1].split('"', 1)[0]
            values[provider] = values.get(provider, 0.0) + float(value)
    return values


async def test_streamed_requests_are_charged_their_exact_cost_with_cached_tokens(nodes, mock_llm, session,
                                                                              redis_url, file_clock):
    quota = {"budgets": [{"name": "monthly", "amount": 100, "period": "month"}], "strategy": "redis",
             "namespace": "streams"}
    (node,) = await nodes(quota, routes={name: make(mock_llm) for name, (_, _, make) in STREAM_ROUTES.items()})
    spent = 0
    expected_usd: dict[str, float] = {}
    for route, (provider, model, _) in STREAM_ROUTES.items():
        prompt, cached, completion, thoughts = 1200, 1000, 73, (40 if provider == "gemini" else 0)
        mock_llm.enqueue(Reply(content="a streamed answer in several words", prompt_tokens=prompt,
                               completion_tokens=completion, cached_tokens=cached,
                               extra={"thoughts_tokens": thoughts} if thoughts else {}))
        body = {"model": model, "messages": [{"role": "user", "content": "Stream me something."}], "stream": True,
                "max_tokens": 200}
        status, headers, text = await node.chat(session, body, route=route)
        assert status == 200 and headers["Content-Type"].startswith("text/event-stream"), text
        assert "a streamed answer" in "".join(
            json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            for line in text.splitlines() if line.startswith("data: {") and '"choices":[{' in line)
        assert text.rstrip().endswith("data: [DONE]")
        p = price(provider, model)
        cost = exact_micros(p, prompt, completion + thoughts, cached, thoughts)
        # Cached prompt tokens at the cached price: far below the uncached price of the same prompt.
        assert cost < exact_micros(p, prompt, completion + thoughts) and p["cached_input"] < p["input"]
        spent += cost
        assert await wait_for_spend(redis_url, file_clock.now, "monthly", spent) == spent, route
        expected_usd[provider] = cost / 1_000_000
    # The same exact costs reach the analytics log line and the Prometheus cost metric.
    await node.kong.settle()
    logged = {}
    for line in node.proc.stderr_text().splitlines():
        if '"msg":"ai request"' in line:
            entry = json.loads(line)
            logged[entry["ai"]["proxy"]["meta"]["provider_name"]] = entry["ai"]["proxy"]["usage"]["cost"]
    assert logged == expected_usd
    async with session.get(f"http://127.0.0.1:{node.proc.status_port}/metrics") as answer:
        metrics = metric_values(await answer.text(), "tollgate_ai_llm_cost_total")
    assert metrics == pytest.approx(expected_usd, abs=1e-12)


# ------------------------------------------------------------------------------------------ two nodes, one Redis


async def test_two_nodes_sharing_redis_never_overspend_under_200_concurrent_requests(nodes, mock_llm, session,
                                                                                    redis_url, file_clock):
    quota = {"budgets": [{"name": "org", "amount": 0.005, "period": "month", "scope": "global"},
                         {"name": "per-consumer", "amount": 0.002, "period": "month", "scope": "consumer"}],
             "strategy": "redis", "namespace": "org", "soft_limit_share": 0}
    first, second = await nodes(quota, openai_proxy(mock_llm), count=2)
    p = price("openai", "gpt-4o-mini")

    def completion_of(n: int) -> int:
        return 5 + (n * 37) % 96  # within max_tokens, different per request

    def reply(recorded: Any) -> Reply:
        n = int(recorded.json["messages"][0]["content"].split()[-1])
        return Reply(content="fine", completion_tokens=completion_of(n), cached_tokens=n % 5, latency=0.01)

    mock_llm.default = reply
    limits = {"org": 5_000, "per-consumer": 2_000}
    overspent: list[Any] = []
    stop = asyncio.Event()

    async def watch() -> None:  # spend (reservations in flight included) never passes a limit, at any moment
        while not stop.is_set():
            for row in await spend_rows(redis_url, file_clock.now):
                if row["spent_micros"] > limits[row["budget"]]:
                    overspent.append(row)
            await asyncio.sleep(0.005)

    async def one(n: int) -> tuple[int, str, int]:
        node, user = (first, second)[n % 2], ("alice", "bob", "carol", "carol")[(n // 2) % 4]
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"request number {n}"}],
                "max_tokens": 100}
        status, _, answer = await node.chat(session, body, user=user)
        assert status in (200, 429), answer
        prompt = answer["usage"]["prompt_tokens"] if status == 200 else 0
        return status, user, exact_micros(p, prompt, completion_of(n), min(n % 5, prompt)) if status == 200 else 0

    watcher = asyncio.ensure_future(watch())
    results = await asyncio.gather(*(one(n) for n in range(200)))
    stop.set()
    await watcher
    await asyncio.gather(first.kong.settle(), second.kong.settle())
    admitted = [r for r in results if r[0] == 200]
    assert 20 < len(admitted) < 200 and any(r[0] == 429 for r in results)
    assert len(mock_llm.requests) == len(admitted)  # a refused request never reached the provider
    assert not overspent, overspent[:3]
    rows = await spend_rows(redis_url, file_clock.now)
    org = row_of(rows, "org")
    assert org["spent_micros"] == sum(cost for _, _, cost in admitted) <= 5_000
    for user in ("alice", "bob", "carol"):
        mine = [r for r in rows if r["budget"] == "per-consumer" and r["label"] == user]
        assert len(mine) == 1
        assert mine[0]["spent_micros"] == sum(cost for _, u, cost in admitted if u == user) <= 2_000


# ----------------------------------------------------------------------------------------------------- periods

SMALL_BUDGET = 0.001  # 1000 micro-USD: one request with max_tokens 1000 fits, a second one does not


SPEND_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "spend"}], "max_tokens": 1000}
SPEND_PROMPT = tokens.count_chat_prompt(SPEND_BODY, "gpt-4o-mini")  # what admission counts; the mock reports it too


async def spend_one(node: Node, session: aiohttp.ClientSession, mock: MockLLM, completion: int = 1000,
                    **kwargs: Any) -> tuple[int, Any, Any]:
    mock.enqueue(Reply(content="spend", prompt_tokens=SPEND_PROMPT, completion_tokens=completion))
    return await node.chat(session, SPEND_BODY, **kwargs)


async def test_calendar_month_in_a_non_utc_timezone_rolls_over_at_local_midnight(nodes, mock_llm, session,
                                                                                  redis_url, file_clock):
    quota = {"budgets": [{"name": "month", "amount": SMALL_BUDGET, "period": "month"}],
             "timezone": "Europe/Berlin", "strategy": "redis", "soft_limit_share": 0}
    (node,) = await nodes(quota, openai_proxy(mock_llm))
    # March 2026 in Berlin ends at 2026-04-01T00:00+02:00 = 2026-03-31T22:00Z (DST began on March 29):
    # neither UTC midnight nor the +01:00 offset the month started with.
    rollover = 1_774_994_400.0
    assert rollover == dt.datetime.fromisoformat("2026-04-01T00:00:00+02:00").timestamp()
    file_clock.set(rollover - 3600 * 24 * 30)  # early in March
    status, headers, _ = await spend_one(node, session, mock_llm)
    assert status == 200
    file_clock.set(rollover - 60)
    status, headers, error = await spend_one(node, session, mock_llm)
    assert status == 429 and headers["Retry-After"] == "60" and headers["X-AI-Budget-Reset"] == "60"
    assert error["error"]["budget"]["resets_at"] == "2026-04-01T00:00:00+02:00"
    file_clock.set(rollover - 0.5)
    status, _, _ = await spend_one(node, session, mock_llm)
    assert status == 429
    file_clock.set(rollover)
    status, headers, _ = await spend_one(node, session, mock_llm)
    assert status == 200
    assert headers["X-AI-Budget-Reset"] == str(30 * 86400)  # April: 30 days, all of them +02:00
    await node.kong.settle()
    march = row_of(await spend_rows(redis_url, rollover - 1), "month")
    april = row_of(await spend_rows(redis_url, rollover), "month")
    assert march["period_start"] == "2026-03-01T00:00:00+01:00" and march["period_end"] == "2026-04-01T00:00:00+02:00"
    assert april["period_start"] == "2026-04-01T00:00:00+02:00" and april["period_end"] == "2026-05-01T00:00:00+02:00"
    cost = exact_micros(price("openai", "gpt-4o-mini"), SPEND_PROMPT, 1000)
    assert march["spent_micros"] == april["spent_micros"] == cost


async def test_rolling_window_frees_up_at_the_instant_it_names(nodes, mock_llm, session, redis_url, file_clock):
    quota = {"budgets": [{"name": "hourly", "amount": SMALL_BUDGET, "period": "rolling", "rolling_seconds": 3600}],
             "strategy": "redis", "soft_limit_share": 0}
    (node,) = await nodes(quota, openai_proxy(mock_llm))
    p = price("openai", "gpt-4o-mini")
    worst, cost = worst_micros(p, SPEND_PROMPT, 1000), exact_micros(p, SPEND_PROMPT, 1000)
    t0 = JAN_2026  # a multiple of 3600: the start of a window bucket
    file_clock.set(t0)
    assert (await spend_one(node, session, mock_llm))[0] == 200
    file_clock.set(t0 + 3599)  # still the same hour: full
    status, _, error = await spend_one(node, session, mock_llm)
    assert status == 429
    # A rolling window weighs the previous hour by the share of it still inside the window: the spend of
    # [t0, t0+3600) counts cost * (1 - (t - t0 - 3600) / 3600) at t in the next hour, so a request of `worst`
    # fits again once that is <= 1000 - worst.
    frees_at = t0 + 3600 + 3600 * (1 - Fraction(1000 - worst, cost))
    named = dt.datetime.fromisoformat(error["error"]["budget"]["resets_at"]).timestamp()
    assert abs(named - float(frees_at)) < 1.0
    file_clock.set(float(frees_at) - 1)
    assert (await spend_one(node, session, mock_llm))[0] == 429
    file_clock.set(float(frees_at) + 0.001)
    assert (await spend_one(node, session, mock_llm))[0] == 200


# -------------------------------------------------------------------------------------------------- soft limit


async def test_soft_limit_header_and_webhook_fire_once_per_period_across_nodes(nodes, mock_llm, session, redis_url,
                                                                               file_clock, upstream):
    hooks: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        hooks.append({"body": await request.json(), "auth": request.headers.get("Authorization")})
        return web.json_response({"ok": True})

    hook_url = await upstream(receive)
    quota = {"budgets": [{"name": "daily", "amount": 0.002, "period": "day"}], "strategy": "redis",
             "soft_limit_share": 0.5, "webhook_url": hook_url + "/budget-hook",
             "webhook_headers": {"Authorization": "Bearer hook-secret"}, "timezone": "Asia/Tokyo"}
    first, second = await nodes(quota, openai_proxy(mock_llm), count=2)
    cost = exact_micros(price("openai", "gpt-4o-mini"), SPEND_PROMPT, 300)  # ~182 micro-USD a request

    async def day_of_requests() -> list[bool]:
        warned = []
        for n in range(8):  # 7 x 182 spent + the 602 worst case of the 8th still fit in 2000
            status, headers, answer = await spend_one((first, second)[n % 2], session, mock_llm, completion=300)
            assert status == 200, answer
            warned.append(WARNING in headers)
            if WARNING in headers:
                assert "'daily'" in headers[WARNING] and "soft limit 50%" in headers[WARNING]
            await asyncio.sleep(0.02)  # let each request settle before the next one is admitted
        return warned

    WARNING = "X-AI-Budget-Warning"
    warned = await day_of_requests()
    crossing = next(n for n in range(8) if (n + 1) * cost >= 1000)  # the request whose spend reaches 50%
    # The header appears on every answer once the spend before it is at 50% or more; never before.
    assert warned == [n > crossing for n in range(8)]
    await asyncio.sleep(0.3)
    assert len(hooks) == 1
    first_hook = hooks[0]["body"]
    assert hooks[0]["auth"] == "Bearer hook-secret"
    assert first_hook["event"] == "budget.soft_limit_reached" and first_hook["budget"] == "daily"
    assert first_hook["limit"] == "0.002" and first_hook["currency"] == "USD"
    assert first_hook["period_start"] == "2026-01-01T00:00:00+09:00"  # Tokyo's Jan 1 (the clock is 09:00 there)
    # The next day in Tokyo: spend starts from zero, the warning goes away, and fires once more when reached.
    file_clock.set(JAN_2026 + 15 * 3600)  # 2026-01-02T00:00+09:00
    warned = await day_of_requests()
    assert warned == [n > crossing for n in range(8)]
    await asyncio.sleep(0.3)
    assert len(hooks) == 2 and hooks[1]["body"]["period_start"] == "2026-01-02T00:00:00+09:00"
    logged = sum(node.proc.stderr_text().count('"msg":"budget soft limit reached"') for node in (first, second))
    assert logged == 2  # one log event per period in the whole cluster, as for the webhook


# ------------------------------------------------------------------------------------------------ tollgate spend


async def run_cli(*args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "tollgate", "spend", *args],
                                   capture_output=True, text=True, timeout=60)


async def charge_some(node: Node, session: aiohttp.ClientSession, mock: MockLLM) -> dict[str, int]:
    """A few requests of alice and bob; returns the exact cost each was charged."""
    p = price("openai", "gpt-4o-mini")
    spent = {"alice": 0, "bob": 0}
    for n, user in enumerate(["alice", "bob", "alice", "alice", "bob"]):
        completion = 100 + 17 * n
        status, _, _ = await spend_one(node, session, mock, completion=completion, user=user)
        assert status == 200
        spent[user] += exact_micros(p, SPEND_PROMPT, completion)
    await node.kong.settle()
    return spent


async def test_tollgate_spend_prints_what_the_redis_store_holds(nodes, mock_llm, session, redis_url, file_clock):
    quota = {"budgets": [{"name": "per-consumer", "amount": 5, "period": "month"},
                         {"name": "org", "amount": 500, "period": "month", "scope": "global"}],
             "strategy": "redis", "namespace": "acme"}
    (node,) = await nodes(quota, openai_proxy(mock_llm))
    file_clock.set(JAN_2026 + 10 * 86400)
    spent = await charge_some(node, session, mock_llm)
    done = await run_cli("--redis-url", redis_url, "--at", str(file_clock.now), "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {(r["budget"], r["label"]): r["spent_micros"] for r in rows} == {
        ("per-consumer", "alice"): spent["alice"], ("per-consumer", "bob"): spent["bob"],
        ("org", None): spent["alice"] + spent["bob"]}
    # The same figures, read from Redis here without Tollgate's reporting code: January 2026, UTC.
    store = RedisStore.from_url(redis_url, connect_timeout=2, socket_timeout=2, timeout=5)  # an observer may wait
    try:
        from tollgate.store import Window

        month = 31 * 86400.0
        states = await store.peek([Window(r["key"], r["limit_micros"], month, sliding=False, start=JAN_2026)
                                   for r in rows], file_clock.now)
    finally:
        await store.close()
    assert [state.used for state in states] == [r["spent_micros"] for r in rows]
    assert all(r["period_start"] == "2026-01-01T00:00:00+00:00" and r["namespace"] == "acme" for r in rows)
    # The text table shows them as money.
    done = await run_cli("--redis-url", redis_url, "--at", "2026-01-11T00:00:00+00:00")
    assert done.returncode == 0, done.stderr
    table = done.stdout
    assert "per-consumer" in table and "(alice)" in table and "(bob)" in table
    for r in rows:
        assert f"{r['spent_micros'] / 1_000_000:.6f}".rstrip("0") in table


async def test_tollgate_spend_reads_a_running_processs_local_store(nodes, mock_llm, session, file_clock):
    quota = {"budgets": [{"name": "per-consumer", "amount": 5, "period": "week"}], "strategy": "local",
             "namespace": "local-acme"}
    (node,) = await nodes(quota, openai_proxy(mock_llm))
    spent = await charge_some(node, session, mock_llm)
    status_url = f"http://127.0.0.1:{node.proc.status_port}"
    done = await run_cli("--status-url", status_url, "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {r["label"]: r["spent_micros"] for r in rows} == spent
    assert {r["store"] for r in rows} == {"local"}
    # 2026-01-01 is a Thursday: the ISO week began on Monday 2025-12-29.
    assert {r["period_start"] for r in rows} == {"2025-12-29T00:00:00+00:00"}
    done = await run_cli("--status-url", status_url)
    assert done.returncode == 0 and "(alice)" in done.stdout and "local-acme" in done.stdout

"""Issue 16 acceptance: the dashboard of a real ``tollgate serve``, loaded in headless Chromium, after traffic through
the Kong double (key-auth, then the Tollgate plugins over their sockets, the relay, the mock LLM; real Redis).

Two Kong nodes share the budgets in Redis (``strategy: redis``). Node A serves most of the traffic: two consumers,
two providers and models, a streamed answer, a provider error and token-limit refusals; node B serves one request.
Node A's page must show, in its DOM, exactly the figures that traffic implies: its own requests, tokens and costs
(computed here from the mock's usage and the price table), the refusals the clients saw, the provider error, latency
and TTFT, and the budgets' spend cluster-wide (node B's request included). A screenshot is kept.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import uuid
from typing import Any

import openai
import pytest

from tests.cost_quota.test_acceptance import exact_micros, price
from tollgate.mock import Reply
from tollgate.pricing import format_money

from .browser import Figures, dump_dom, find_chromium, screenshot

pytestmark = pytest.mark.timeout(180)

TOKEN = "dash-token-5f2c9a"
CHAT, CLAUDE, TIGHT, BROKEN = (str(uuid.uuid5(uuid.NAMESPACE_URL, f"tollgate-dashboard/{n}"))
                               for n in ("chat", "claude", "tight", "broken"))
ROUTES = {"chat": CHAT, "claude": CLAUDE, "tight": TIGHT, "broken": BROKEN}
CHAT_USAGE, CLAUDE_USAGE, TIGHT_USAGE = (100, 20), (50, 10), (60, 60)


def kong_config(relay_url: str, mock_url: str) -> dict[str, Any]:
    auth = {"header_name": "Authorization", "header_value": "Bearer sk-dashboard-test"}

    def openai_proxy(path: str, model: str) -> dict[str, Any]:
        return {"route_type": "llm/v1/chat", "auth": auth,
                "model": {"provider": "openai", "name": model, "options": {"upstream_url": mock_url + path}}}

    proxies = {
        "chat": openai_proxy("/v1/chat/completions", "gpt-4o-mini"),
        "claude": {"route_type": "llm/v1/chat", "auth": {"header_name": "x-api-key", "header_value": "sk-ant-dash"},
                   "model": {"provider": "anthropic", "name": "claude-sonnet-4-5",
                             "options": {"upstream_url": mock_url + "/v1/messages", "max_tokens": 256,
                                         "anthropic_version": "2023-06-01"}}},
        "tight": openai_proxy("/tight/v1/chat/completions", "gpt-4.1-mini"),
        "broken": openai_proxy("/broken/v1/chat/completions", "gpt-4o"),
    }
    quota = {"budgets": [{"name": "daily", "amount": 1, "period": "day", "scope": "consumer"}],
             "namespace": "dashboard-test", "strategy": "redis", "soft_limit_share": 0}
    limit = {"limits": [{"limit": 100, "window_size": "day", "tokens_count_strategy": "total_tokens"}],
             "identifier": "consumer", "strategy": "redis"}
    plugins: list[dict[str, Any]] = []
    for name, route_id in ROUTES.items():
        plugins += [{"name": "key-auth", "route": route_id, "config": {"key_names": ["apikey"]}},
                    {"name": "tollgate-proxy", "route": route_id, "config": proxies[name]}]
        if name in ("chat", "claude"):
            plugins.append({"name": "tollgate-cost-quota", "route": route_id, "config": quota})
    plugins.append({"name": "tollgate-token-limit", "route": TIGHT, "config": limit})
    return {
        "_format_version": "3.0",
        "services": [{"name": "llm", "url": relay_url,
                      "routes": [{"name": n, "id": i, "paths": [f"/{n}"]} for n, i in ROUTES.items()]}],
        "consumers": [{"username": u, "keyauth_credentials": [{"key": f"{u}-key"}]} for u in ("alice", "bob")],
        "plugins": plugins,
    }


def client(node: Any, route: str, user: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{node.url}/{route}/v1", api_key="unused", max_retries=0,
                              default_headers={"apikey": f"{user}-key"})


async def ask(node: Any, route: str, user: str, model: str, stream: bool = False) -> int:
    """One chat request through Kong; the HTTP status the client saw."""
    messages = [{"role": "user", "content": f"Hello from {user}"}]
    async with client(node, route, user) as sdk:
        try:
            if stream:
                chunks = await sdk.chat.completions.create(model=model, messages=messages, stream=True,
                                                           stream_options={"include_usage": True})
                async for _ in chunks:
                    pass
            else:
                await sdk.chat.completions.create(model=model, messages=messages)
        except openai.APIStatusError as exc:
            return exc.status_code
    return 200


def get_json(url: str, token: str | None = TOKEN) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def run_cli(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TOLLGATE_STATUS_TOKEN"}
    if token:
        env["TOLLGATE_STATUS_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "tollgate", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def cost(provider: str, model: str, usage: tuple[int, int], times: int = 1) -> int:
    return times * exact_micros(price(provider, model), *usage)


@pytest.fixture
def chromium() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set TOLLGATE_CHROMIUM)")
    return found


async def test_the_dashboard_shows_what_the_traffic_implies(chromium, tollgate_process, kong, mock_llm, redis_url,
                                                            tmp_path):
    mock_llm.add_rule(Reply(prompt_tokens=CHAT_USAGE[0], completion_tokens=CHAT_USAGE[1], latency=0.05),
                      path=re.compile("^/v1/chat/completions$"))
    mock_llm.add_rule(Reply(prompt_tokens=CLAUDE_USAGE[0], completion_tokens=CLAUDE_USAGE[1], latency=0.02),
                      path="/v1/messages")
    mock_llm.add_rule(Reply(prompt_tokens=TIGHT_USAGE[0], completion_tokens=TIGHT_USAGE[1]),
                      path="/tight/v1/chat/completions")
    mock_llm.add_rule(Reply(status=500, error="the model fell over"), path="/broken/v1/chat/completions")
    env = {"TOLLGATE_STATUS_TOKEN": TOKEN}
    nodes = []
    for _ in range(2):
        proc = tollgate_process(redis_url=redis_url, env=env, start=False)
        await proc.astart()
        double = await kong(kong_config(proc.relay_url, mock_llm.url), process=proc,
                            entry_plugins=["tollgate-proxy", "tollgate-cost-quota", "tollgate-token-limit"])
        nodes.append((proc, double))
    (proc_a, node_a), (_, node_b) = nodes

    # Node A: alice 2 + 1 streamed on chat, 1 on broken; bob 2 on claude, then on the tight route until refused.
    statuses = [await ask(node_a, "chat", "alice", "gpt-4o-mini") for _ in range(2)]
    statuses.append(await ask(node_a, "chat", "alice", "gpt-4o-mini", stream=True))
    statuses += [await ask(node_a, "claude", "bob", "claude-sonnet-4-5") for _ in range(2)]
    assert statuses == [200] * 5
    assert await ask(node_a, "broken", "alice", "gpt-4o") == 500
    tight = [await ask(node_a, "tight", "bob", "gpt-4.1-mini") for _ in range(3)]
    served_tight, refused = tight.count(200), tight.count(429)
    assert served_tight >= 1 and refused >= 1 and served_tight + refused == 3, tight
    # Node B: one more for alice, charged to the same budget in Redis, and one on the tight route (its token-limit
    # window is in Redis too; the first request fits, then is settled to its real usage, over the limit).
    assert await ask(node_b, "chat", "alice", "gpt-4o-mini") == 200
    assert await ask(node_b, "tight", "alice", "gpt-4.1-mini") == 200

    status_a = f"http://127.0.0.1:{proc_a.status_port}"
    alice_micros = cost("openai", "gpt-4o-mini", CHAT_USAGE, 3)
    bob_micros = cost("anthropic", "claude-sonnet-4-5", CLAUDE_USAGE, 2)

    # The page without the token shows no data; with it (in the fragment, never sent to the server) it does.
    locked = Figures(await dump_dom(chromium, f"{status_a}/dashboard"))
    assert locked.state == "unauthorized" and not locked.kpis
    url = f"{status_a}/dashboard#token={TOKEN}&range=15m"
    page = Figures(await dump_dom(chromium, url, wait_ms=12_000))
    assert page.state == "ready", page.texts
    assert page.loads >= 3          # live refresh: loaded at once, then every 5 s

    requests_a = 5 + 1 + 3
    assert int(page.kpis["requests"]) == requests_a
    assert int(page.kpis["prompt_tokens"]) == 3 * CHAT_USAGE[0] + 2 * CLAUDE_USAGE[0] + served_tight * TIGHT_USAGE[0]
    assert int(page.kpis["completion_tokens"]) == (3 * CHAT_USAGE[1] + 2 * CLAUDE_USAGE[1]
                                                   + served_tight * TIGHT_USAGE[1])
    assert float(page.kpis["cost"]) == pytest.approx((alice_micros + bob_micros) / 1e6)
    assert int(page.kpis["refusals"]) == refused and int(page.kpis["errors"]) == 1
    assert int(page.kpis["blocks"]) == 0 and page.kpis["cache_hit_rate"] == ""
    assert 0 < float(page.kpis["latency_p50_ms"]) <= float(page.kpis["latency_p95_ms"]) < 5000
    assert 0 < float(page.kpis["ttft_p50_ms"]) < 5000           # the streamed answer

    alice = page.row("by-consumer", "alice")
    assert (int(alice["requests"]), int(alice["prompt_tokens"]), int(alice["completion_tokens"]),
            int(alice["errors"])) == (4, 3 * CHAT_USAGE[0], 3 * CHAT_USAGE[1], 1)
    assert float(alice["cost"]) == pytest.approx(alice_micros / 1e6)
    bob = page.row("by-consumer", "bob")
    assert (int(bob["requests"]), int(bob["refusals"])) == (2 + 3, refused)
    assert float(bob["cost"]) == pytest.approx(bob_micros / 1e6)

    gpt = page.row("by-model", "gpt-4o-mini")
    assert int(gpt["requests"]) == 3 and 40 <= float(gpt["latency_p50_ms"]) < 5000   # the mock waits 50 ms
    assert int(page.row("by-model", "claude-sonnet-4-5")["completion_tokens"]) == 2 * CLAUDE_USAGE[1]
    assert int(page.row("by-model", "gpt-4.1-mini")["requests"]) == served_tight
    anthropic = page.row("by-provider", "anthropic")
    assert int(anthropic["requests"]) == 2 and float(anthropic["latency_p50_ms"]) >= 15
    assert int(page.row("by-provider", "openai")["errors"]) == 1
    assert int(page.row("by-route", CHAT)["requests"]) == 3
    assert page.row("by-route", CHAT)["name"] == "chat"     # the route's name, learnt from Kong's router
    assert int(page.row("by-route", TIGHT)["refusals"]) == refused

    assert int(page.row("errors", "openai|500")["count"]) == 1
    (refusal_key,) = page.tables["refusals"]
    assert refusal_key.startswith("tollgate-token-limit|")
    assert int(page.row("refusals", refusal_key)["count"]) == refused
    assert int(page.row("refusals-total", refusal_key)["count"]) == refused
    assert page.texts["blocks"][-1] == "no guard blocks in this range"
    assert page.texts["cache"][-1] == "no cache on these routes yet"

    # Budgets come from Redis: cluster-wide, node B's request included.
    alice_id, bob_id = (node_a.declarative.consumer_by_username(u).id for u in ("alice", "bob"))
    assert set(page.tables["budgets"]) == {f"daily|consumer:{alice_id}", f"daily|consumer:{bob_id}"}
    alice_budget, bob_budget = (page.row("budgets", f"daily|consumer:{i}") for i in (alice_id, bob_id))
    alice_total = alice_micros + cost("openai", "gpt-4o-mini", CHAT_USAGE)        # node B's request too
    assert (alice_budget["spent"], bob_budget["spent"]) == (format_money(alice_total), format_money(bob_micros))
    assert alice_budget["limit"] == bob_budget["limit"] == format_money(1_000_000)
    assert float(alice_budget["share"]) == pytest.approx(alice_total / 1_000_000)
    spent = sorted([alice_budget["spent"], bob_budget["spent"]])

    # Token-limit windows come from Redis too: bob's on node A, alice's on node B, each against the day's 100 tokens.
    tight_total = TIGHT_USAGE[0] + TIGHT_USAGE[1]
    assert set(page.tables["token-limits"]) == {"tight|bob|day|total_tokens", "tight|alice|day|total_tokens"}
    bob_window, alice_window = (page.row("token-limits", f"tight|{u}|day|total_tokens") for u in ("bob", "alice"))
    assert float(bob_window["used"]) == served_tight * tight_total and float(alice_window["used"]) == tight_total
    assert bob_window["limit"] == alice_window["limit"] == "100"
    assert bob_window["remaining"] == alice_window["remaining"] == "0"
    assert float(alice_window["share"]) == pytest.approx(tight_total / 100)
    assert 0 < float(bob_window["reset_in"]) <= 86400
    assert bob_window["store"] == alice_window["store"] != "local"

    # The same figures as JSON, and node B's page agrees on the budgets while its own usage is its own.
    data_b = get_json(f"http://127.0.0.1:{nodes[1][0].status_port}/dashboard/data?range=15m")
    assert data_b["totals"]["requests"] == 2
    assert sorted(r["spent"] for r in data_b["budgets"]) == spent
    assert {(w["label"], w["used"]) for w in data_b["token_limits"]} == \
        {("bob", served_tight * tight_total), ("alice", tight_total)}

    # tollgate usage, beside tollgate spend: the same record, per consumer and model, as JSON and as a table.
    usage = run_cli("usage", "--status-url", status_a, "--range", "15m", "--json")
    assert usage.returncode == 0, usage.stderr
    per = {(r["consumer"], r["model"]): r for r in json.loads(usage.stdout)}
    assert (per[("alice", "gpt-4o-mini")]["prompt_tokens"], per[("alice", "gpt-4o-mini")]["completion_tokens"]) \
        == (3 * CHAT_USAGE[0], 3 * CHAT_USAGE[1])
    assert per[("alice", "gpt-4o-mini")]["cost"] == pytest.approx(alice_micros / 1e6)
    assert per[("bob", "claude-sonnet-4-5")]["requests"] == 2
    by_route = run_cli("usage", "--status-url", status_a, "--range", "15m", "--by", "route", "--json")
    routes = {r["route"]: r for r in json.loads(by_route.stdout)}
    assert set(routes) == {"chat", "claude", "tight", "broken"} and routes["chat"]["route_id"] == CHAT
    assert routes["chat"]["requests"] == 3
    table = run_cli("usage", "--status-url", status_a, "--range", "15m", "--by", "provider")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:4] == ["PERIOD", "(UTC)", "PROVIDER",
                                                                                   "REQUESTS"]
    assert any(line.split()[2:4] == ["anthropic", "2"] for line in table.stdout.splitlines()), table.stdout
    locked_out = run_cli("usage", "--status-url", status_a, token=None)
    assert locked_out.returncode == 1 and "answered 401" in locked_out.stderr and TOKEN not in locked_out.stderr
    bad = run_cli("usage", "--status-url", status_a, "--range", "1y")
    assert bad.returncode == 1 and "answered 400: unknown range '1y'" in bad.stderr

    shot = tmp_path / "dashboard.png"
    await screenshot(chromium, url, str(shot))
    assert shot.stat().st_size > 10_000
    artifacts = os.environ.get("TOLLGATE_TEST_ARTIFACTS")
    if artifacts:
        os.makedirs(artifacts, exist_ok=True)
        shutil.copy(shot, os.path.join(artifacts, "dashboard.png"))

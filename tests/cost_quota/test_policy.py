"""The cost-quota policy in the real relay (no Kong): headers, refusals, pricing policies, scopes, fail_open,
currencies, soft-limit notices. Tests that depend on the store run on the local store and on Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.cost_quota.conftest import EPOCH, openai_proxy
from tests.redis_server import free_port
from tollgate import runtime, tokens
from tollgate.attachments import HEADER
from tollgate.mock import Reply
from tollgate.plugins.cost_quota.spend import report
from tollgate.plugins.limits import FAIL_OPEN_HEADER

HELLO = [{"role": "user", "content": "hello there"}]
PROMPT = tokens.count_chat_prompt({"model": "gpt-4o-mini", "messages": HELLO}, "gpt-4o-mini")
MINI = {"input": 150_000, "output": 600_000, "cached_input": 75_000}  # gpt-4o-mini, micro-USD per 1M tokens


def chat(max_tokens: int | None = None, model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": HELLO, **extra}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def mini_worst(max_tokens: int, prompt: int = PROMPT) -> int:
    return ceil_div(prompt * MINI["input"] + max_tokens * MINI["output"], 1_000_000)


def mini_cost(prompt: int, completion: int, cached: int = 0) -> int:
    return ceil_div((prompt - cached) * MINI["input"] + cached * MINI["cached_input"] + completion * MINI["output"],
                    1_000_000)


@pytest.fixture(params=["local", "redis"])
def strategy(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "local":
        return {"strategy": "local"}
    return {"strategy": "redis", "redis": {"url": request.getfixturevalue("redis_url")}}


async def spend_of(gw: Any, budget: str | None = None) -> dict[tuple[str, str], int]:
    await gw.settle()
    store = runtime.current().store_for(gw.quota.config)
    rows = await report(store, runtime.current().clock())
    return {(r["budget"], r["who"]): r["spent_micros"] for r in rows if budget is None or r["budget"] == budget}


ALICE = {"id": "c-alice", "username": "alice"}


# -------------------------------------------------------------------------------------------------------- headers


async def test_headers_describe_the_tightest_budget(gateway, mock_llm, strategy):
    quota = {"budgets": [{"name": "mine", "amount": 1, "period": "day"},
                         {"name": "org", "amount": 0.5, "period": "month", "scope": "global"}], **strategy}
    gw = await gateway(quota, openai_proxy(mock_llm))
    mock_llm.default = Reply(content="hi", prompt_tokens=PROMPT, completion_tokens=20)
    status, headers, _ = await gw.send(chat(100), consumer=ALICE)
    assert status == 200
    assert headers["X-AI-Budget-Limit"] == "0.50"
    worst = mini_worst(100)
    assert headers["X-AI-Budget-Remaining"] == f"{(500_000 - worst) / 1e6:.6f}".rstrip("0")
    assert headers["X-AI-Budget-Reset"] == str(31 * 86400)  # the clock stands at 2026-01-01T00:00Z
    spent = await spend_of(gw)
    cost = mini_cost(PROMPT, 20)
    assert spent == {("mine", "consumer:c-alice"): cost, ("org", "global"): cost}


async def test_hide_client_headers(gateway, mock_llm):
    gw = await gateway({"budgets": [{"amount": 1}], "hide_client_headers": True, "soft_limit_share": 0.000001},
                       openai_proxy(mock_llm))
    mock_llm.default = Reply(content="hi")
    for _ in range(2):
        status, headers, _ = await gw.send(chat(10), consumer=ALICE)
        assert status == 200 and not [h for h in headers if h.lower().startswith("x-ai-budget")]


async def test_a_total_budget_never_resets(gateway, mock_llm, strategy):
    gw = await gateway({"budgets": [{"name": "lifetime", "amount": 0.0001, "period": "total"}], **strategy},
                       openai_proxy(mock_llm))
    mock_llm.default = Reply(content="hi", prompt_tokens=PROMPT, completion_tokens=100)
    status, headers, _ = await gw.send(chat(100), consumer=ALICE)
    assert status == 200 and "X-AI-Budget-Reset" not in headers
    status, headers, answer = await gw.send(chat(100), consumer=ALICE)
    assert status == 429 and "Retry-After" not in headers and "X-AI-Budget-Reset" not in headers
    assert "it never resets" in answer["error"]["message"] and answer["error"]["budget"]["resets_at"] is None


async def test_a_request_dearer_than_the_whole_budget_is_told_so(gateway, mock_llm):
    gw = await gateway({"budgets": [{"name": "tiny", "amount": 0.001, "period": "day"}]}, openai_proxy(mock_llm))
    status, headers, answer = await gw.send(chat(10_000), consumer=ALICE)
    assert status == 429 and "Retry-After" not in headers
    assert "more than the whole budget" in answer["error"]["message"]
    assert answer["error"]["budget"] == {"name": "tiny", "scope": "consumer:c-alice", "period": "day",
                                         "limit": "0.001", "spent": "0.00",
                                         "request_worst_case": f"{mini_worst(10_000) / 1e6:.6f}".rstrip("0"),
                                         "currency": "USD", "resets_at": "2026-01-02T00:00:00+00:00"}
    assert len(mock_llm.requests) == 0


# ----------------------------------------------------------------------------------------- worst case and prices


@pytest.mark.parametrize("client, proxy_option, expected_cap", [(50, 70, 50), (None, 70, 70), (None, None, 333)])
async def test_worst_case_output_cap(gateway, mock_llm, client, proxy_option, expected_cap):
    options = {"max_tokens": proxy_option} if proxy_option else {}
    gw = await gateway({"budgets": [{"amount": 1}], "default_max_tokens": 333}, openai_proxy(mock_llm, **options))
    mock_llm.default = Reply(content="hi")
    status, headers, _ = await gw.send(chat(client), consumer=ALICE)
    assert status == 200
    assert headers["X-AI-Budget-Remaining"] == f"{(1_000_000 - mini_worst(expected_cap)) / 1e6:.6f}".rstrip("0")


async def test_config_prices_and_a_distinct_reasoning_price(gateway, mock_llm, strategy):
    quota = {"budgets": [{"name": "b", "amount": 10}], "prices": {"o3": {"input": 2, "output": 8, "reasoning": 20,
                                                                         "cached_input": 0.5}}, **strategy}
    gw = await gateway(quota, openai_proxy(mock_llm, model="o3"))
    mock_llm.default = Reply(usage={"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
                                    "prompt_tokens_details": {"cached_tokens": 40},
                                    "completion_tokens_details": {"reasoning_tokens": 30}})
    status, _, answer = await gw.send(chat(200, model="o3"), consumer=ALICE)
    assert status == 200, answer
    assert await spend_of(gw) == {("b", "consumer:c-alice"): 60 * 2 + 40 * 0.5 + 20 * 8 + 30 * 20}


async def test_proxy_input_and_output_cost_override_the_table(gateway, mock_llm):
    gw = await gateway({"budgets": [{"name": "b", "amount": 10}]},
                       openai_proxy(mock_llm, input_cost=10, output_cost=30))
    mock_llm.default = Reply(content="x", prompt_tokens=1000, completion_tokens=100, cached_tokens=200)
    assert (await gw.send(chat(100), consumer=ALICE))[0] == 200
    # input and output from the proxy; the cached price is still the table's for gpt-4o-mini
    assert await spend_of(gw) == {("b", "consumer:c-alice"): 800 * 10 + ceil_div(200 * 75_000, 1_000_000) + 100 * 30}


async def test_unknown_model_denied(gateway, mock_llm):
    gw = await gateway({"budgets": [{"amount": 1}]}, openai_proxy(mock_llm, model="house-model-7"))
    status, _, answer = await gw.send(chat(10, model="house-model-7"), consumer=ALICE)
    assert status == 400 and answer["error"]["code"] == "model_not_priced" and answer["error"]["param"] == "model"
    assert "house-model-7" in answer["error"]["message"] and not mock_llm.requests


async def test_unknown_model_at_the_default_price(gateway, mock_llm):
    gw = await gateway({"budgets": [{"name": "b", "amount": 1}], "unknown_model": "default_price",
                        "default_price": {"input": 1, "output": 4}}, openai_proxy(mock_llm, model="house-model-7"))
    mock_llm.default = Reply(content="x", prompt_tokens=300, completion_tokens=20)
    status, headers, _ = await gw.send(chat(10, model="house-model-7"), consumer=ALICE)
    assert status == 200 and "X-AI-Budget-Unpriced" not in headers
    assert await spend_of(gw) == {("b", "consumer:c-alice"): 300 + 80}


async def test_unknown_model_allowed_unpriced_and_flagged(gateway, mock_llm, strategy):
    gw = await gateway({"budgets": [{"name": "b", "amount": 1}], "unknown_model": "allow_unpriced", **strategy},
                       openai_proxy(mock_llm, model="house-model-7"))
    mock_llm.default = Reply(content="x", prompt_tokens=300, completion_tokens=20)
    status, headers, _ = await gw.send(chat(10, model="house-model-7"), consumer=ALICE)
    assert status == 200 and headers["X-AI-Budget-Unpriced"] == "openai/house-model-7"
    assert await spend_of(gw) == {("b", "consumer:c-alice"): 0}


async def test_a_failed_provider_call_costs_nothing(gateway, mock_llm, strategy):
    gw = await gateway({"budgets": [{"name": "b", "amount": 1}], **strategy}, openai_proxy(mock_llm))
    mock_llm.default = Reply.fail(500, "upstream broke")
    status, _, _ = await gw.send(chat(100), consumer=ALICE)
    assert status >= 500
    assert await spend_of(gw) == {("b", "consumer:c-alice"): 0}


@pytest.mark.parametrize("usage", [None, {"prompt_tokens": "9", "completion_tokens": 4, "total_tokens": 13},
                                   {"prompt_tokens": -1, "completion_tokens": 4}, {"unknown": 1}])
async def test_usage_missing_or_unreadable_is_charged_as_estimated_never_zero(gateway, mock_llm, usage):
    gw = await gateway({"budgets": [{"name": "b", "amount": 1}], "strategy": "local"}, openai_proxy(mock_llm))
    body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "four words of text"},
                         "finish_reason": "stop"}]}
    mock_llm.default = Reply(body=body if usage is None else {**body, "usage": usage})
    status, _, answer = await gw.send(chat(100), consumer=ALICE)
    completion = tokens.count_text("four words of text", "gpt-4o-mini")
    assert status == 200
    assert answer["usage"] == {"prompt_tokens": PROMPT, "completion_tokens": completion,
                               "total_tokens": PROMPT + completion, "estimated": True}
    assert await spend_of(gw) == {("b", "consumer:c-alice"): mini_cost(PROMPT, completion)}


async def test_a_stream_cut_by_the_client_is_still_charged(gateway, mock_llm, strategy):
    gw = await gateway({"budgets": [{"name": "b", "amount": 1}], **strategy}, openai_proxy(mock_llm))
    mock_llm.default = Reply(content=" ".join(["word"] * 40), chunks=40, interval=0.02)
    headers = {HEADER: gw.attach(ALICE), "Content-Type": "application/json"}
    async with gw.session.post(gw.url + "/v1/chat/completions", json=chat(100, stream=True),
                               headers=headers) as answer:
        await answer.content.readany()
    deadline = time.monotonic() + 5
    while (value := sum((await spend_of(gw)).values())) == mini_worst(100) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # until the reservation is settled
    assert 0 < value < mini_worst(100)  # the prompt and what was generated, estimated; far below the worst case


# ------------------------------------------------------------------------------------------------------- currencies


async def test_budgets_in_two_currencies(gateway, mock_llm, strategy):
    quota = {"budgets": [{"name": "usd", "amount": 1}, {"name": "eur", "amount": 1, "currency": "EUR"}],
             "exchange_rates": {"EUR": 0.5}, **strategy}
    gw = await gateway(quota, openai_proxy(mock_llm))
    mock_llm.default = Reply(content="x", prompt_tokens=333, completion_tokens=17)
    status, _, _ = await gw.send(chat(100), consumer=ALICE)
    assert status == 200
    numerator = 333 * 150_000 + 17 * 600_000
    assert await spend_of(gw) == {("usd", "consumer:c-alice"): ceil_div(numerator, 1_000_000),
                                  ("eur", "consumer:c-alice"): ceil_div(numerator, 2_000_000)}


async def test_a_refusal_in_one_currency_gives_back_the_other(gateway, mock_llm, strategy):
    quota = {"budgets": [{"name": "usd", "amount": 1}, {"name": "eur", "amount": 0.0001, "currency": "EUR"}],
             "exchange_rates": {"EUR": 0.5}, **strategy}
    gw = await gateway(quota, openai_proxy(mock_llm))
    status, _, answer = await gw.send(chat(1000), consumer=ALICE)
    assert status == 429 and answer["error"]["budget"]["name"] == "eur" and answer["error"]["budget"]["currency"] \
        == "EUR"
    assert set((await spend_of(gw)).values()) <= {0}


# ---------------------------------------------------------------------------------------------------------- scopes


async def test_header_scope(gateway, mock_llm):
    gw = await gateway({"budgets": [{"name": "team", "amount": 1, "scope": "header", "header_name": "X-Team"}]},
                       openai_proxy(mock_llm))
    status, _, answer = await gw.send(chat(10))
    assert status == 400 and answer["error"]["code"] == "missing_identifier"
    mock_llm.default = Reply(content="x", prompt_tokens=100, completion_tokens=10)
    for team in ("red", "blue", "red"):
        assert (await gw.send(chat(10), headers={"X-Team": team}))[0] == 200
    assert await spend_of(gw) == {("team", "header:x-team:red"): 2 * mini_cost(100, 10),
                                  ("team", "header:x-team:blue"): mini_cost(100, 10)}


async def test_anonymous_requests_draw_on_their_ips_budget(gateway, mock_llm):
    gw = await gateway({"budgets": [{"name": "b", "amount": 1}]}, openai_proxy(mock_llm))
    mock_llm.default = Reply(content="x", prompt_tokens=100, completion_tokens=10)
    assert (await gw.send(chat(10)))[0] == 200
    assert await spend_of(gw) == {("b", "ip:10.0.0.1"): mini_cost(100, 10)}


async def test_route_and_service_scopes(gateway, mock_llm):
    # Pinned: an instance configured on a service knows its service.
    gw = await gateway({"budgets": [{"name": "svc", "amount": 1, "scope": "service"}], "service_id": "svc-1"},
                       openai_proxy(mock_llm))
    assert gw.quota.router_needs == ()
    mock_llm.default = Reply(content="x", prompt_tokens=100, completion_tokens=10)
    assert (await gw.send(chat(10)))[0] == 200
    assert await spend_of(gw) == {("svc", "service:svc-1"): mini_cost(100, 10)}


async def test_a_global_instance_asks_kongs_router_for_route_and_service(gateway, mock_llm):
    quota = {"budgets": [{"name": "svc", "amount": 1, "scope": "service"},
                         {"name": "rt", "amount": 1, "scope": "route"}]}
    gw = await gateway(quota, openai_proxy(mock_llm))
    plugin = gw.plugins["tollgate-cost-quota"]
    assert plugin.policy.router_needs == ("route", "service")
    calls: list[str] = []

    class Kong:  # the PDK calls access makes, answered as Kong would
        class client:
            @staticmethod
            async def get_consumer() -> Any:
                calls.append("get_consumer")
                return None

        class router:
            @staticmethod
            async def get_route() -> Any:
                calls.append("get_route")
                return {"id": "route-9", "name": "chat"}

            @staticmethod
            async def get_service() -> Any:
                calls.append("get_service")
                return {"id": "service-3"}

        class service:
            class request:
                added: dict[str, str] = {}

                @staticmethod
                async def add_header(name: str, value: str) -> None:
                    Kong.service.request.added[name] = value

    await plugin.access(Kong)
    assert calls == ["get_route", "get_service"]   # the consumer comes with the proxy's attachment
    token = Kong.service.request.added[HEADER]
    # The relay receives the request with that attachment (and the proxy's).
    proxy_token = runtime.current().attachments.issue("tollgate-proxy", gw.plugins["tollgate-proxy"], {})
    mock_llm.default = Reply(content="x", prompt_tokens=100, completion_tokens=10)
    async with gw.session.post(gw.url + "/v1/chat/completions", json=chat(10),
                               headers={HEADER: f"{token},{proxy_token}"}) as answer:
        assert answer.status == 200
    assert await spend_of(gw) == {("svc", "service:service-3"): mini_cost(100, 10),
                                  ("rt", "route:route-9"): mini_cost(100, 10)}
    assert not plugin.policy._router_info  # used once, then forgotten


# ------------------------------------------------------------------------------------------------------- fail_open


@pytest.mark.parametrize("fail_open", [False, True])
async def test_fail_open_when_redis_is_down(gateway, mock_llm, fail_open):
    quota = {"budgets": [{"amount": 1}], "strategy": "redis", "fail_open": fail_open,
             "redis": {"url": f"redis://127.0.0.1:{free_port()}/0", "timeout": 0.1}}
    gw = await gateway(quota, openai_proxy(mock_llm))
    mock_llm.default = Reply(content="x")
    started = time.monotonic()
    status, headers, answer = await gw.send(chat(10), consumer=ALICE)
    assert time.monotonic() - started < 2
    if fail_open:
        assert status == 200 and headers[FAIL_OPEN_HEADER] == "tollgate-cost-quota"
    else:
        assert status == 503 and headers[FAIL_OPEN_HEADER] == "false"
        assert answer["error"]["code"] == "store_unavailable" and not mock_llm.requests


# ------------------------------------------------------------------------------------------------------ soft limit


async def test_soft_limit_notice_once_and_a_dead_webhook_never_delays_requests(gateway, mock_llm, strategy, caplog):
    quota = {"budgets": [{"name": "b", "amount": 0.001, "period": "day"}], "soft_limit_share": 0.1,
             "webhook_url": f"http://127.0.0.1:{free_port()}/hook", "webhook_timeout": 0.5, **strategy}
    gw = await gateway(quota, openai_proxy(mock_llm))
    mock_llm.default = Reply(content="x", prompt_tokens=PROMPT, completion_tokens=100)
    warnings = []
    for _ in range(5):
        started = time.monotonic()
        status, headers, _ = await gw.send(chat(100), consumer=ALICE)
        assert status == 200 and time.monotonic() - started < 0.4
        warnings.append("X-AI-Budget-Warning" in headers)
        await gw.settle()
    assert warnings == [False, False, True, True, True]  # 61 < 100 <= 2 x 61: the third request is warned
    notices = [r for r in caplog.records if r.getMessage() == "budget soft limit reached"]
    assert len(notices) == 1
    assert [r for r in caplog.records if r.getMessage() == "soft limit webhook failed"]


async def test_report_with_no_spend(fresh_runtime):
    from tollgate.plugins.cost_quota.spend import format_table, report_stores
    from tollgate.store import LocalStore

    assert await report_stores([("local", LocalStore())], EPOCH) == []
    assert format_table([]) == "no budget has been charged yet"


async def test_fail_open_still_reports_the_cost(gateway, mock_llm, caplog):
    quota = {"budgets": [{"amount": 1}], "strategy": "redis", "fail_open": True,
             "redis": {"url": f"redis://127.0.0.1:{free_port()}/0", "timeout": 0.1}}
    gw = await gateway(quota, openai_proxy(mock_llm))
    mock_llm.default = Reply(content="x", prompt_tokens=1000, completion_tokens=100)
    caplog.set_level("INFO", logger="tollgate")
    assert (await gw.send(chat(100), consumer=ALICE))[0] == 200
    (line,) = [r for r in caplog.records if r.getMessage() == "ai request"]
    assert line.fields["ai"]["proxy"]["usage"]["cost"] == mini_cost(1000, 100) / 1_000_000


async def test_a_missed_settlement_is_retried_in_the_background(gateway, mock_llm, monkeypatch):
    from tollgate.plugins import limits as limits_module
    from tollgate.store import LocalStore, StoreUnavailable

    monkeypatch.setattr(limits_module, "SETTLE_RETRIES", (0.01, 0.01))
    real = LocalStore._settle
    failures = [StoreUnavailable("blip")]

    async def flaky(self: Any, *args: Any) -> None:
        if failures:
            raise failures.pop()
        await real(self, *args)

    monkeypatch.setattr(LocalStore, "_settle", flaky)
    gw = await gateway({"budgets": [{"name": "b", "amount": 1}]}, openai_proxy(mock_llm))
    mock_llm.default = Reply(content="x", prompt_tokens=PROMPT, completion_tokens=10)
    status, headers, _ = await gw.send(chat(100), consumer=ALICE)
    assert status == 200
    assert await spend_of(gw) in ({("b", "consumer:c-alice"): mini_worst(100)},
                                  {("b", "consumer:c-alice"): mini_cost(PROMPT, 10)})
    await asyncio.sleep(0.1)
    assert not failures and await spend_of(gw) == {("b", "consumer:c-alice"): mini_cost(PROMPT, 10)}


# ------------------------------------------------------------------------------------- several targets (fallback)


async def test_several_targets_reserve_the_dearest_and_settle_at_the_one_that_answered(gateway, mock_llm):
    def target(name: str, model: str, priority: int) -> dict[str, Any]:
        return {"model": {"provider": "openai", "name": model,
                          "options": {"upstream_url": f"{mock_llm.url}/{name}/v1/chat/completions"}},
                "auth": {"header_name": "Authorization", "header_value": "Bearer sk-test"},
                "description": name, "priority": priority}

    proxy = {"route_type": "llm/v1/chat", "targets": [target("big", "gpt-4o", 1), target("small", "gpt-4o-mini", 2)]}
    gw = await gateway({"budgets": [{"name": "b", "amount": 1}]}, proxy)
    mock_llm.add_rule(Reply.fail(503, "overloaded"), path="/big/v1/chat/completions")
    mock_llm.default = Reply(content="x", prompt_tokens=500, completion_tokens=40)
    status, headers, answer = await gw.send(chat(100, model=None), consumer=ALICE)
    assert status == 200, answer
    big = ceil_div(PROMPT * 2_500_000 + 100 * 10_000_000, 1_000_000)  # gpt-4o's worst case, dearer than mini's
    assert headers["X-AI-Budget-Remaining"] == f"{(1_000_000 - big) / 1e6:.6f}".rstrip("0")
    assert await spend_of(gw) == {("b", "consumer:c-alice"): mini_cost(500, 40)}  # answered by gpt-4o-mini

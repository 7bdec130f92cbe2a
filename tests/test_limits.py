"""Settlements the store missed, and give-backs of what a failed call may have reserved: retried in the background
(bounded), and landed at shutdown rather than dropped."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.clocks import EPOCH
from tests.redis_server import REDIS_MISSING, RedisServer, redis_available
from tollgate.context import RequestContext
from tollgate.plugins import limits
from tollgate.store import LocalStore, RedisStore, StoreError, StoreUnavailable, Window

WINDOW = [Window("{c}:minute", 1000, 60)]


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> list[Exception]:
    """Failures the store's next settlements raise, in turn."""
    failures: list[Exception] = []
    real = LocalStore._settle

    async def settle(self: Any, *args: Any) -> None:
        if failures:
            raise failures.pop()
        await real(self, *args)

    monkeypatch.setattr(LocalStore, "_settle", settle)
    return failures


def context() -> RequestContext:
    return RequestContext(method="POST", path="/v1/chat/completions", query="", headers={}, body=b"{}", identity={},
                          policies={}, route_id="r")


async def granted(store: LocalStore, amount: int) -> limits.Grant:
    return limits.Grant([("total_tokens", await store.reserve(WINDOW, amount, EPOCH))])


async def used(store: LocalStore) -> float:
    (state,) = await store.peek(WINDOW, EPOCH)
    return state.used


async def test_a_missed_settlement_is_retried(flaky, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "SETTLE_RETRIES", (0.01, 0.01))
    store = LocalStore(clock=lambda: EPOCH)
    grant = await granted(store, 100)
    flaky += [StoreUnavailable("blip"), StoreUnavailable("blip")]
    ctx = context()
    assert not await grant.settle_or_retry("tollgate-token-limit", ctx, store, {"total_tokens": 30})
    assert ctx.response_headers[limits.FAIL_OPEN_HEADER] == "tollgate-token-limit"  # said so
    assert await used(store) == 100  # until it lands, the reservation stays charged
    await asyncio.sleep(0.1)
    assert not flaky and await used(store) == 30 and not limits._retries


async def test_a_settlement_failing_with_an_unexpected_store_error_is_retried_too(flaky, monkeypatch) -> None:
    """Not every transient failure is known as one (a Cluster's NOSCRIPT after a failover was a plain StoreError):
    a settlement is retried whatever the store said, since it lands at most once."""
    monkeypatch.setattr(limits, "SETTLE_RETRIES", (0.01, 0.01))
    store = LocalStore(clock=lambda: EPOCH)
    grant = await granted(store, 100)
    flaky += [StoreError("NOSCRIPT No matching script"), StoreError("NOSCRIPT No matching script")]
    assert not await grant.settle_or_retry("tollgate-token-limit", context(), store, {"total_tokens": 30})
    assert await used(store) == 100
    await asyncio.sleep(0.1)
    assert not flaky and await used(store) == 30 and not limits._retries


async def test_shutdown_lands_what_is_still_being_retried(flaky, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "SETTLE_RETRIES", (60.0,))  # the retry would come long after the process is gone
    store = LocalStore(clock=lambda: EPOCH)
    grant = await granted(store, 100)
    flaky.append(StoreUnavailable("down"))
    ctx = context()
    await grant.settle_or_retry("tollgate-cost-quota", ctx, store, {"total_tokens": 10})
    assert await used(store) == 100
    await limits.settle_pending(1.0)
    assert await used(store) == 10
    await asyncio.sleep(0)
    assert not limits._retries


async def test_beyond_the_bound_a_settlement_is_dropped_and_stays_charged(flaky, monkeypatch: pytest.MonkeyPatch
                                                                         ) -> None:
    monkeypatch.setattr(limits, "MAX_PENDING", 0)
    store = LocalStore(clock=lambda: EPOCH)
    grant = await granted(store, 100)
    flaky.append(StoreUnavailable("down"))
    assert not await grant.settle_or_retry("tollgate-token-limit", context(), store, {"total_tokens": 10})
    assert not limits._retries and await used(store) == 100


@pytest.mark.skipif(not redis_available(), reason=REDIS_MISSING)
async def test_what_a_cut_reservation_may_have_made_is_given_back_once(redis_server: RedisServer,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The call is cut while the server holds it; so is the first give-back. Both run once the server resumes; the
    next attempt finds the ledger gone and does nothing: the counter is exact, not given back twice."""
    monkeypatch.setattr(limits, "SETTLE_RETRIES", (0.01, 0.5, 0.5))
    redis_server.flushall()
    store = RedisStore.from_url(redis_server.url, timeout=0.1, socket_timeout=2.0)
    try:
        kept = await store.reserve(WINDOW, 40, EPOCH)
        redis_server.command("CLIENT", "PAUSE", "400", "WRITE")
        with pytest.raises(StoreUnavailable) as failed:
            await store.reserve_in_turn([([(WINDOW, 100)], EPOCH)])
        limits.give_back_doubtful("tollgate-token-limit", store, failed.value)
        assert limits._retries and not failed.value.doubtful
        for _ in range(40):
            await asyncio.sleep(0.05)
            if not limits._retries:
                break
        assert not limits._retries
        (state,) = await store.peek(WINDOW, EPOCH)
        assert state.used == 40
        await store.settle(kept, 40)
    finally:
        await store.close()


async def test_both_limiting_plugins_count_a_request_s_prompt_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """token-limit and cost-quota both need the prompt's tokens at admission: the request's context counts it
    once (tiktoken is the dearest part of admission)."""
    from tollgate import estimate, tokens
    from tollgate.plugins.cost_quota.policy import CostQuotaPolicy
    from tollgate.plugins.token_limit.policy import TokenLimitPolicy

    counted: list[int] = []

    def count(body: Any, model: Any = None) -> int:
        counted.append(tokens.count_chat_prompt(body, model))
        return counted[-1]

    monkeypatch.setitem(estimate._COUNTERS, "llm/v1/chat", count)
    token_limit = TokenLimitPolicy({"limits": [{"limit": 10_000, "window_size": "minute",
                                                "tokens_count_strategy": "total_tokens"}],
                                    "identifier": "consumer", "strategy": "local"}, "tollgate-token-limit")
    cost_quota = CostQuotaPolicy({"budgets": [{"name": "b", "amount": 5, "period": "month", "scope": "consumer"}],
                                  "strategy": "local", "unknown_model": "default_price",
                                  "default_price": {"input": 1, "output": 2}}, "tollgate-cost-quota")
    ctx = context()
    ctx.body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me once"}]}'
    assert await limits.admit(ctx, [token_limit, cost_quota]) is None
    assert len(counted) == 1 and ctx.meta["prompt_estimate"] == counted[0] > 0
    assert ctx.meta["tollgate-token-limit"].reservations[0][1].amount >= counted[0]

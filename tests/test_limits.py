"""Settlements the store missed: retried in the background, and landed at shutdown rather than dropped."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.clocks import EPOCH
from tollgate.context import RequestContext
from tollgate.plugins import limits
from tollgate.store import LocalStore, StoreUnavailable, Window

WINDOW = [Window("{c}:minute", 1000, 60)]


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> list[Exception]:
    """Failures the store's next settlements raise, in turn."""
    failures: list[Exception] = []
    real = LocalStore._settle

    async def settle(self: Any, buckets: Any, delta: int) -> None:
        if failures:
            raise failures.pop()
        await real(self, buckets, delta)

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

"""Target state in the store: circuit breaker, latency EWMA, usage windows, and routing on without a store."""

from __future__ import annotations

import uuid

import pytest

from tests.redis_server import REDIS_MISSING, RedisServer, redis_available
from tollgate.plugins.proxy.health import TargetState
from tollgate.store import LocalStore, StoreUnavailable, create_store


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def redis_url():
    if not redis_available():
        pytest.skip(REDIS_MISSING)
    with RedisServer() as server:
        yield server.url


@pytest.fixture(params=["local", "redis"])
async def state(request, clock: Clock):
    """The same state on the in-process store and on Redis (what ``strategy: redis`` shares between nodes)."""
    if request.param == "local":
        store = LocalStore(clock=clock)
    else:
        store = create_store(request.getfixturevalue("redis_url"))
    plugin = f"plugin-{uuid.uuid4().hex[:8]}"
    yield TargetState(lambda: store, plugin, failure_threshold=3, cooldown=10, usage_window=60, clock=clock)
    await store.close()


async def test_breaker_opens_after_consecutive_failures_and_half_opens_after_the_cooldown(state, clock):
    for _ in range(2):
        assert not await state.failure("a")
    snap = await state.snapshot(["a"], usage=False)
    assert not snap.is_open("a") and snap.failures["a"] == 2
    assert await state.failure("a")
    snap = await state.snapshot(["a"], usage=False)
    assert snap.is_open("a") and not state.half_open("a", snap)

    clock.now += 10.5
    snap = await state.snapshot(["a"], usage=False)
    assert not snap.is_open("a") and state.half_open("a", snap)
    assert await state.claim("a", "trial", 10) and not await state.claim("a", "trial", 10)    # one trial at a time

    assert await state.failure("a", trial=True)                             # the trial failed: open again
    assert (await state.snapshot(["a"], usage=False)).is_open("a")
    clock.now += 11
    snap = await state.snapshot(["a"], usage=False)
    await state.success("a", snap, None)                                    # the next trial succeeded: closed
    snap = await state.snapshot(["a"], usage=False)
    assert not state.half_open("a", snap) and not snap.failures.get("a")
    assert not await state.failure("a")                                     # counting starts over


async def test_a_success_resets_the_count(state):
    await state.failure("a")
    await state.failure("a")
    await state.success("a", await state.snapshot(["a"], usage=False), None)
    await state.failure("a")
    await state.failure("a")
    assert not (await state.snapshot(["a"], usage=False)).is_open("a")


async def test_failures_far_apart_do_not_trip_it(clock):
    store = LocalStore(clock=clock)
    state = TargetState(lambda: store, "p", failure_threshold=3, cooldown=10, usage_window=60, clock=clock)
    await state.failure("a")
    await state.failure("a")
    clock.now += 61
    assert not await state.failure("a")


async def test_threshold_zero_turns_the_breaker_off(clock):
    store = LocalStore(clock=clock)
    off = TargetState(lambda: store, "p", failure_threshold=0, cooldown=10, usage_window=60, clock=clock)
    for _ in range(10):
        assert not await off.failure("a")
    assert not (await off.snapshot(["a"], usage=False)).open_until


async def test_latency_is_an_ewma_shared_through_the_store(state, clock):
    await state.success("a", await state.snapshot(["a"], usage=False), 100.0)
    await state.success("a", await state.snapshot(["a"], usage=False), 200.0)
    snap = await state.snapshot(["a"], usage=False)
    assert snap.latency["a"].samples == 2 and snap.latency["a"].ewma == pytest.approx(130.0)
    assert snap.latency_known("a")
    clock.now += 31
    assert not (await state.snapshot(["a"], usage=False)).latency_known("a")   # stale: worth a probe


async def test_usage_windows(state, clock):
    await state.charge("a", 500)
    await state.charge("b", 100)
    await state.charge("a", 250)
    snap = await state.snapshot(["a", "b", "c"], usage=True)
    assert snap.usage == {"a": 750, "b": 100, "c": 0}
    clock.now += 121
    assert (await state.snapshot(["a", "b"], usage=True)).usage == {"a": 0, "b": 0}


class DownStore:
    def __getattr__(self, name):
        async def fail(*args, **kwargs):
            raise StoreUnavailable("connection refused")
        return fail


async def test_without_a_store_routing_goes_on_and_says_so(clock, caplog):
    down = TargetState(lambda: DownStore(), "p", failure_threshold=3, cooldown=10, usage_window=60, clock=clock)
    snap = await down.snapshot(["a"], usage=True)
    assert snap.now == clock.now and not snap.open_until and not snap.usage
    assert not await down.failure("a")
    await down.success("a", snap, 10.0)
    await down.charge("a", 5)
    assert await down.claim("a", "probe", 5)

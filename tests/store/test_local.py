"""The in-process store gives expired memory back."""

from __future__ import annotations

import numpy as np

from tests.store.conftest import FakeClock
from tollgate.store import LocalStore, Window
from tollgate.store.expiring import ExpiringDict


def test_expiring_dict_lazy_and_reaped() -> None:
    clock = FakeClock(0.0)
    data = ExpiringDict(clock)
    data.set("a", 1, ttl=10)
    data.set("b", 2, ttl=20)
    data.set("c", 3, ttl=None)
    clock.advance(10)
    assert data.get("a") is None  # lazily gone on read
    assert data.deadline("b") == 20 and data.deadline("c") is None
    clock.advance(10)
    assert len(data) == 2  # "b" expired but not yet reclaimed
    assert data.reap() == 1
    assert len(data) == 1 and data.get("c") == 3


def test_expiring_dict_heap_stays_bounded_when_keys_are_reset() -> None:
    data = ExpiringDict(FakeClock(0.0))
    for i in range(20_000):
        data.set("same", i, ttl=100)
    assert len(data._heap) <= 2 * len(data) + 1025
    assert data.get("same") == 19_999


async def test_window_buckets_are_reclaimed() -> None:
    clock = FakeClock(1_700_006_400.0)
    store = LocalStore(clock=clock, sweep_interval=30)
    for consumer in range(2000):
        tag = f"{{c{consumer}}}"
        await store.reserve([Window(f"{tag}:m", 10, 60), Window(f"{tag}:d", 10, 3600)], 1, clock())
    assert len(store._data) == 4000
    clock.advance(2 * 3600 + 5)  # past the buckets' last use as "previous"
    await store.get("anything")  # any operation tidies
    assert len(store._data) == 0


async def test_expired_vectors_and_values_are_reclaimed() -> None:
    clock = FakeClock(0.0)
    store = LocalStore(clock=clock, sweep_interval=30)
    for i in range(100):
        await store.vector_put("ns", f"e{i}", np.ones(4, dtype=np.float32), b"p", ttl=5)
        await store.set(f"k{i}", b"v", ttl=5)
    clock.advance(31)
    await store.get("anything")
    assert len(store._data) == 0
    assert store._spaces == {}

"""The token-limit window index: what the request path writes (rarely), and what the dashboard reads back."""

from __future__ import annotations

from typing import Mapping

from tests.clocks import EPOCH, FakeClock
from tollgate import route_names
from tollgate.plugins.token_limit import index
from tollgate.plugins.token_limit.index import REFRESH, WindowIndex, window_key
from tollgate.store import LocalStore, StoreUnavailable, Window

LIMITS = [{"limit": 1000, "window_size": "minute", "seconds": 60, "tokens_count_strategy": "total_tokens"},
          {"limit": 50, "window_size": "hour", "seconds": 3600, "tokens_count_strategy": "prompt_tokens"}]
CONFIG = {"route_id": "route-7", "identifier": "consumer", "window_type": "sliding"}


class CountingStore(LocalStore):
    def __init__(self, clock: FakeClock, fail: bool = False):
        super().__init__(clock=clock)
        self.writes: list[tuple[str, tuple[str, ...]]] = []
        self.fail = fail

    async def hset(self, key: str, mapping: Mapping[str, bytes], ttl: float | None = None) -> None:
        if self.fail:
            raise StoreUnavailable("down")
        self.writes.append((key, tuple(mapping)))
        await super().hset(key, mapping, ttl)


async def charge(store: LocalStore, who: str, amounts: tuple[int, int], now: float) -> None:
    for limit, amount in zip(LIMITS, amounts):
        key = window_key("p1", who, limit["seconds"], limit["tokens_count_strategy"])
        await store.charge([Window(key, limit["limit"], limit["seconds"])], amount, now)


async def test_the_request_path_writes_each_entry_once_per_refresh():
    clock = FakeClock()
    store = CountingStore(clock)
    windows = WindowIndex("p1", CONFIG, LIMITS)
    for step in range(20):                      # 20 requests within one refresh: one write of each kind
        windows.touch(store, "consumer:a", "alice", EPOCH + step)
    await windows.drain()
    assert store.writes == [(index.ROOT, ("p1",)), (index.index_key("p1"), ("consumer:a",))]
    windows.touch(store, "ip:10.0.0.1", None, EPOCH + 21)       # a new identifier is written at once
    await windows.drain()
    windows.touch(store, "consumer:b", "bob", EPOCH + 22)
    windows.touch(store, "consumer:a", "alice", EPOCH + REFRESH + 1)   # and a known one again after the refresh
    await windows.drain()                                            # (those two in one write)
    assert store.writes[2:] == [(index.index_key("p1"), ("ip:10.0.0.1",)), (index.ROOT, ("p1",)),
                                (index.index_key("p1"), ("consumer:b", "consumer:a"))]


async def test_a_failed_write_is_tried_again_on_the_next_request():
    clock = FakeClock()
    store = CountingStore(clock, fail=True)
    windows = WindowIndex("p1", CONFIG, LIMITS)
    windows.touch(store, "consumer:a", "alice", EPOCH)
    await windows.drain()
    store.fail = False
    windows.touch(store, "consumer:a", "alice", EPOCH + 1)
    await windows.drain()
    assert [key for key, _ in store.writes] == [index.ROOT, index.index_key("p1")]


async def test_the_report_reads_each_window_and_names_the_route():
    clock = FakeClock()
    store = LocalStore(clock=clock)
    route_names.learn("route-7", {"id": "route-7", "name": "chat"})
    windows = WindowIndex("p1", CONFIG, LIMITS)
    windows.touch(store, "consumer:a", "alice", EPOCH)
    windows.touch(store, "ip:10.0.0.1", None, EPOCH)
    await windows.drain()
    await charge(store, "consumer:a", (400, 60), EPOCH + 1)
    await charge(store, "ip:10.0.0.1", (10, 5), EPOCH + 1)
    rows = await index.report(store, EPOCH + 2)
    got = [(r["route"], r["who"], r["label"], r["window"], r["counts"], r["used"], r["limit"], r["remaining"])
           for r in rows]
    assert got == [   # fullest first: alice's hour is over its 50 prompt tokens
        ("chat", "consumer:a", "alice", "hour", "prompt_tokens", 60, 50, 0),
        ("chat", "consumer:a", "alice", "minute", "total_tokens", 400, 1000, 600),
        ("chat", "ip:10.0.0.1", None, "hour", "prompt_tokens", 5, 50, 45),
        ("chat", "ip:10.0.0.1", None, "minute", "total_tokens", 10, 1000, 990),
    ]
    assert rows[1]["reset_in"] == 58 and rows[0]["route_id"] == "route-7"


async def test_entries_whose_windows_cannot_hold_usage_any_more_are_dropped():
    clock = FakeClock()
    store = LocalStore(clock=clock)
    windows = WindowIndex("p1", CONFIG, LIMITS)
    windows.touch(store, "consumer:a", "alice", EPOCH)
    await windows.drain()
    clock.set(EPOCH + 3000)
    windows.touch(store, "consumer:b", "bob", EPOCH + 3000)
    await windows.drain()
    # alice's last charge can count in a sliding hour until two hours later; then only bob is left
    span = index.lifetime(LIMITS, sliding=True)
    assert span == 2 * 3600 + REFRESH + 1
    assert {r["who"] for r in await index.report(store, EPOCH + span - 1)} == {"consumer:a", "consumer:b"}
    clock.set(EPOCH + span + 1)
    assert {r["who"] for r in await index.report(store, EPOCH + span + 1)} == {"consumer:b"}
    assert set(await store.hgetall(index.index_key("p1"))) == {"consumer:b"}   # removed, not just skipped
    clock.set(EPOCH + 3000 + span + 1)
    assert await index.report(store, EPOCH + 3000 + span + 1) == []
    assert await store.hgetall(index.ROOT) == {}


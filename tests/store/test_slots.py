"""Every Lua script call lands in one Redis Cluster slot, with the keys the plugins really build.

Two checks on the same workload (each plugin's own key builders driving the store):
- static: every key of every script call (`RedisStore._script`: reservation ledgers included, and the settlements
  and give-backs by ledger that follow an unconfirmed write) hashes to one slot, computed with Redis Cluster's CRC16;
  on a plain server, so that the one-script path (RESERVE_IN_TURN) runs too, and every script in store/scripts.py
  must have run;
- live: the same workload on a real 3-master Cluster, where a call that crossed slots would fail (CROSSSLOT).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from redis.crc import key_slot

from tests.redis_server import REDIS_MISSING, RedisClusterSet, RedisServer, redis_available
from tollgate.plugins.cost_quota.budgets import Budget
from tollgate.plugins.cost_quota.spend import ROOT, index_key
from tollgate.plugins.mcp.calls import CallLimits
from tollgate.plugins.mcp.sessions import SessionBook
from tollgate.plugins.proxy.health import TargetState
from tollgate.plugins.semantic_cache.vectordb import StoreVectorDB
from tollgate.plugins.token_limit.expected import ESTIMATES
from tollgate.plugins.token_limit.policy import samples_key, window_key
from tollgate.store import RedisStore, StoreUnavailable, Window, create_store
from tollgate.store import scripts

pytestmark = pytest.mark.skipif(not redis_available(), reason=REDIS_MISSING)

NOW = 1_767_225_600.0
SCRIPTS = {name: text for name, text in vars(scripts).items() if name.isupper() and isinstance(text, str)}
# Several plugins' reservations for one request in one script, only where there are no slots: on a Cluster the store
# makes them one by one (and the live test below checks that it never sends this script there).
ONE_SERVER_ONLY = {"RESERVE_IN_TURN"}
# Settlements started in one loop turn (a request's plugins, other requests) share one script on one server; a
# Cluster gets one per slot (the live test checks that none crosses).
GATHERED = {"SETTLE"}
# awkward identities: braces and colons in what a client controls must not split a call across slots
WHO = ["consumer:42", "header:x-team:a}b", "ip:{10.0.0.1", "header:x-team:}{"]


class Recorder:
    """Every script call's name and keys (every script goes through `RedisStore._script`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        names = {scripts_sha(text): name for name, text in SCRIPTS.items()}
        script_call = RedisStore._script

        async def recorded_script(store: Any, script: Any, keys: list[str], args: list[Any], *more: Any,
                                  **options: Any) -> Any:
            self.calls.append((names[script.sha], list(keys)))
            return await script_call(store, script, keys, args, *more, **options)

        monkeypatch.setattr(RedisStore, "_script", recorded_script)

    def crossing(self, exempt: set[str] = set()) -> list[tuple[str, list[str]]]:
        return [(name, keys) for name, keys in self.calls
                if name not in exempt and len({key_slot(k.encode()) for k in keys}) > 1]


def scripts_sha(text: str) -> str:
    from hashlib import sha1

    return sha1(text.encode()).hexdigest()


async def workload(store: RedisStore) -> None:
    """What the plugins do to the store, through their own key builders."""
    for who in WHO:
        # tollgate-token-limit: all the windows of an identity in one call, then the settlement; learnt completions
        windows = [Window(window_key("tl-1", who, seconds, counts), 10_000, seconds)
                   for seconds in (60, 3600) for counts in ("total_tokens",)]
        windows.append(Window(window_key("tl-1", who, 86400, "total_tokens"), 90_000, 86400, sliding=False))
        granted = await store.reserve(windows, 100, NOW)
        await store.settle(granted, 40)
        await ESTIMATES.record(samples_key("tl-1", "route-1", "gpt-4o-mini"), store, 40)
        # tollgate-cost-quota: a budget window, and the spend index
        budget = Budget.from_config({"amount": 5, "period": "month"}, "UTC", {})
        window, _ = budget.window("cq-1", who, NOW)
        await store.settle(await store.reserve([window], 1000, NOW), 10)
        await store.charge([window], 5, NOW)
        await store.hset(ROOT, {"cq-1": b"1"})
        await store.hset(index_key("cq-1"), {window.key: b"{}"})
        # tollgate-mcp: per-tool call limits
        await store.reserve(CallLimits.from_config(
            {"limits": [{"limit": 5, "window_size": "minute"}, {"limit": 50, "window_size": "hour"}]},
            "route-1").windows("search", who), 1, NOW)
        # both limiting plugins of one request, reserved together, settled together
        (made,) = await store.reserve_in_turn([([(windows, 10), ([window], 100)], NOW)])
        await store.settle_all([(made[0], 10), (made[1], 30)])
    # tollgate-proxy: the circuit breaker and balancer state
    breaker = TargetState(lambda: store, "proxy-1", failure_threshold=2, cooldown=30, usage_window=60,
                          clock=lambda: NOW)
    await breaker.failure("t1")
    await breaker.charge("t1", 10)
    # tollgate-semantic-cache: exact and semantic tiers, purge stamps
    cache = StoreVectorDB(store, "cache")
    vector = np.array([1.0, 0.0], dtype=np.float32)
    for namespace in ("minilm:route-1", "minilm:{odd}", "x}y"):
        await cache.put(namespace, "e1", "exact-1", vector, b"answer", ttl=60)
        await cache.search(namespace, vector, 2, 0.5)
        await store.vector_delete(namespace, "e1")
    await cache.purge(NOW, route="route-1")
    # tollgate-mcp: sessions
    book = SessionBook(store, "route-1", ttl=60)
    session = await book.open("2025-06-18", "consumer-a")
    await session.put("up", "upstream-session")
    await book.end(session)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterSet]:
    with RedisClusterSet() as servers:
        yield servers


async def test_every_script_call_stays_in_one_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(monkeypatch)
    with RedisServer() as server:
        store = create_store(server.url)
        unconfirmed = create_store(server.url, wait_replicas=1, socket_timeout=0.05)  # no replica confirms
        window = Window(window_key("tl-1", "c", 60, "t"), 10, 60)
        try:
            await workload(store)
            granted = await store.reserve([window], 5, NOW)
            with pytest.raises(StoreUnavailable, match="replicas confirmed"):
                await unconfirmed.settle(granted, 1)  # it landed here all the same
            with pytest.raises(StoreUnavailable, match="replicas confirmed") as failed:
                await unconfirmed.reserve_in_turn([([([window], 3)], NOW)])
            (state,) = await store.peek([window], NOW)
            assert state.used == 1 + 3
            await store.settle(granted, 1)  # the settlement's retry: its ledger is gone, nothing happens
            (doubtful,) = failed.value.doubtful
            await store.settle(doubtful, 0)  # the reservation the failed call made, given back by its ledger
            (state,) = await store.peek([window], NOW)
            assert state.used == 1
        finally:
            await store.close()
            await unconfirmed.close()
    assert recorder.crossing(exempt=ONE_SERVER_ONLY | GATHERED) == []
    assert {name for name, _ in recorder.calls} == set(SCRIPTS), "a script the workload never ran"


async def test_the_same_workload_runs_on_a_real_cluster(cluster: RedisClusterSet,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(monkeypatch)
    cluster.flushall()
    store = create_store(cluster.url)
    try:
        await workload(store)  # a call across slots fails here with CROSSSLOT
    finally:
        await store.close()
    assert recorder.calls and recorder.crossing() == []
    assert not {name for name, _ in recorder.calls} & ONE_SERVER_ONLY
    holders = [node.port for node in cluster.nodes if node.command("DBSIZE")]
    assert len(holders) == len(cluster.nodes)  # the keys really are spread over the masters


async def test_settlements_in_different_slots_are_settled_slot_by_slot(cluster: RedisClusterSet,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A request's token-limit and cost-quota reservations live in different slots: one SETTLE per slot, each
    applied once (an exact settlement and a partial give-back)."""
    recorder = Recorder(monkeypatch)
    cluster.flushall()
    store = create_store(cluster.url)
    tokens = [Window(window_key("tl-1", "consumer:7", seconds, "total_tokens"), 10_000, seconds)
              for seconds in (60, 3600)]
    budget, _ = Budget.from_config({"amount": 5, "period": "month"}, "UTC", {}).window("cq-1", "consumer:7", NOW)
    try:
        (made,) = await store.reserve_in_turn([([(tokens, 300), ([budget], 4000)], NOW)])
        assert key_slot(made[0].ledger.encode()) != key_slot(made[1].ledger.encode())
        del recorder.calls[:]
        for _ in range(2):  # the second time as a retry: nothing moves
            await store.settle_all([(made[0], 300), (made[1], 1500)])
            made[0].settled = made[1].settled = False
        assert [name for name, _ in recorder.calls] == ["SETTLE"] * 4 and recorder.crossing() == []
        assert [s.used for s in await store.peek(tokens, NOW)] == [300, 300]
        assert [s.used for s in await store.peek([budget], NOW)] == [1500]
        assert not any(node.command("KEYS", "tollgate:r:*") for node in cluster.nodes)
    finally:
        await store.close()


def test_every_script_is_registered() -> None:
    store = create_store("redis://127.0.0.1:1/0")
    registered = {value.sha for value in vars(store).values() if hasattr(value, "sha")}
    assert registered == {scripts_sha(text) for text in SCRIPTS.values()}

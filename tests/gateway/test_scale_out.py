"""Scale-out: Tollgate's shared state on a real Redis Cluster (3 masters, 3 replicas) and on Redis Sentinel (a master,
a replica, 3 Sentinels), with a failover in the middle of the test.

Limits and budgets go through the whole chain (Kong double -> ``tollgate serve`` -> mock LLM) with requests in flight
while the master that holds their counters hands over to its replica; the circuit breaker, the semantic cache and
MCP sessions are driven through the plugins' own state classes on the same servers. The failovers are the ones an
operator runs (CLUSTER FAILOVER on a replica, SENTINEL FAILOVER). Behind Sentinel the store waits, by default, until
every replica holds each write, so the hand-over loses no reservation, and what a refused request's call may have
reserved is given back by its ledger: the counters must come out exact. A master that crashes loses the writes it
had not yet replicated (on a Cluster, which cannot WAIT); nothing here claims otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import numpy as np
import pytest

from tests.clocks import FileClock
from tests.redis_server import REDIS_MISSING, RedisClusterSet, RedisSentinelSet, redis_available
from tollgate.mock import Reply
from tollgate.plugins.mcp.sessions import SessionBook
from tollgate.plugins.proxy.health import TargetState
from tollgate.plugins.semantic_cache.vectordb import StoreVectorDB
from tollgate.plugins.token_limit.policy import window_key
from tollgate.store import StoreUnavailable, create_store

from .limited import MINUTE, PROMPT, RESERVED, TOKEN_LIMIT_ID, USED, start_chain

pytestmark = pytest.mark.skipif(not redis_available(), reason=REDIS_MISSING)


class Topology:
    """A replicated Redis set and how to fail it over under the key a test cares about."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.servers = RedisClusterSet(replicas=1) if kind == "cluster" else RedisSentinelSet(replicas=1, sentinels=3)

    @property
    def url(self) -> str:
        """Sentinel's default: every script waits for every replica (see `RedisStore.from_url`)."""
        return self.servers.url

    def settle(self) -> None:
        if isinstance(self.servers, RedisSentinelSet):
            self.servers.wait_healthy()

    def failover(self, tag: str) -> None:
        if isinstance(self.servers, RedisClusterSet):
            self.servers.failover(tag)
        else:
            self.servers.failover()


@pytest.fixture(scope="module", params=["cluster", "sentinel"])
def replicated(request: pytest.FixtureRequest) -> Iterator[Topology]:
    made = Topology(request.param)
    made.servers.start()
    try:
        yield made
    finally:
        made.servers.close()


@pytest.fixture
def topology(replicated: Topology) -> Topology:
    """The module's set, healthy again after the last test's failover."""
    replicated.settle()
    return replicated


async def test_limits_and_budgets_hold_through_a_failover_under_load(topology, tollgate_process, kong, mock_llm,
                                                                     tmp_path):
    clock = FileClock(str(tmp_path / "clock"), MINUTE)
    mock_llm.default = Reply(prompt_tokens=PROMPT, completion_tokens=40)
    limit = 60 * RESERVED  # 60 requests' worth of reservations (about 125 requests, once settled down)
    chain = await start_chain(tollgate_process, kong, topology.url, mock_llm.url + "/v1/chat/completions", clock,
                              token_limit=limit)
    async with aiohttp.ClientSession() as http:
        assert (await chain.post(http)).status == 200
        one_request = await chain.spent_micros()
        assert one_request > 0
        sent = 1

        async def worker() -> None:  # until the limit refuses, or 600 requests (a Sentinel hand-over takes seconds)
            nonlocal sent
            while sent < 600 and not any(o.status == 429 for o in chain.outcomes):
                sent += 1
                if (await chain.post(http)).status == 503:
                    await asyncio.sleep(0.05)

        async def failover() -> None:
            await chain.reached(20)
            tagged = window_key(TOKEN_LIMIT_ID, f"consumer:{chain.consumer}", 60, "total_tokens")
            await asyncio.to_thread(topology.failover, tagged)

        await asyncio.gather(failover(), *(worker() for _ in range(8)))

    statuses = {o.status for o in chain.outcomes}
    admitted = chain.admitted()
    # in flight during the hand-over: a clear refusal (the route fails closed), never a hang or a bypass
    assert statuses <= {200, 429, 503}, [o for o in chain.outcomes if o.status not in (200, 429, 503)]
    assert all(o.error == "store_unavailable" for o in chain.outcomes if o.status == 503)
    assert max(o.seconds for o in chain.outcomes) < 10
    assert admitted * USED <= limit and mock_llm.request_count == admitted
    assert any(o.status == 429 for o in chain.outcomes)  # the limit was reached, after the failover
    # Every reservation is settled to the answer's usage, none lost, none counted twice; what the calls of the
    # requests refused with store_unavailable may have reserved (cut, or not confirmed by the replica) is given back.
    used, spent = await chain.settled(admitted * USED, expect_spent=admitted * one_request)
    refused = sum(o.status == 503 for o in chain.outcomes)
    assert (used, spent) == (admitted * USED, admitted * one_request), (used, spent, admitted, refused)


async def test_breaker_cache_and_sessions_survive_a_failover(topology):
    store = create_store(topology.url, socket_timeout=1.0, timeout=3.0)  # a loaded machine replicates slowly
    try:
        breaker = TargetState(lambda: store, "plugin-17", failure_threshold=3, cooldown=60, usage_window=60,
                              clock=lambda: MINUTE)
        for _ in range(3):
            opened = await breaker.failure("t1")
        assert opened
        cache = StoreVectorDB(store, "cache")
        vector = np.array([1.0, 0.0, 0.0], dtype=np.float32)
        await cache.put("model-a", "entry-1", "exact-1", vector, b"cached answer", ttl=300)
        sessions = SessionBook(store, "route-17", ttl=300)
        session = await sessions.open("2025-06-18", "consumer-a")
        await session.put("upstream-1", "up-session-1")

        await asyncio.to_thread(topology.failover, "{plugin-17}")

        async def eventually(read, ok):
            """The first calls after a hand-over may find the client still learning it: StoreUnavailable, or (the
            breaker, which routes without its state rather than fail) an empty snapshot."""
            for _ in range(150):
                try:
                    value = await read()
                    if ok(value):
                        return value
                except StoreUnavailable:
                    pass
                await asyncio.sleep(0.1)
            return await read()

        snapshot = await eventually(lambda: breaker.snapshot(["t1"], usage=False), lambda s: s.failures)
        assert snapshot.is_open("t1") and snapshot.failures["t1"] == 3
        found, _ = await eventually(lambda: cache.exact("exact-1"), lambda found: True)
        assert found == b"cached answer"
        fresh = StoreVectorDB(create_store(topology.url, socket_timeout=1.0, timeout=3.0), "cache")  # another node: its mirror starts empty
        try:
            hits = await eventually(lambda: fresh.search("model-a", vector, 1, 0.9), lambda hits: True)
        finally:
            await fresh.store.close()
        assert [payload for _, payload in hits] == [b"cached answer"]
        again = await eventually(lambda: sessions.find(session.id, "consumer-a"), lambda found: True)
        assert again is not None and await again.get("upstream-1") == "up-session-1"
        # and they keep changing on the new master (with Sentinel, once it has a replica again)
        await asyncio.to_thread(topology.settle)
        await breaker.success("t1", snapshot, 12.0)
        assert not (await breaker.snapshot(["t1"], usage=False)).is_open("t1")
        await sessions.end(again)
        assert await sessions.find(session.id, "consumer-a") is None
    finally:
        await store.close()

"""How many replicas a write waits for behind Sentinel: every one the master has, learnt (store/replicas.py); on a
real Sentinel set, a write waits for its replica, and a replica that dies stops writes until the Sentinel marks it
down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.redis_server import REDIS_MISSING, RedisSentinelSet, redis_available
from tollgate.store import StoreUnavailable, Window, create_store
from tollgate.store import replicas as replicas_module
from tollgate.store.replicas import ReplicaCount, connected_replicas

NOW = 1_767_225_600.0
WINDOWS = [Window("{c}:minute", 1000, 60)]


class FakeConnection:
    """A connection to ``port`` whose master reports ``connected`` replicas."""

    def __init__(self, port: int, connected: int) -> None:
        self.host, self.port, self.connected = "127.0.0.1", port, connected
        self.infos = 0

    async def send_command(self, *args: Any) -> None:
        assert args == ("INFO", "replication")
        self.infos += 1

    async def read_response(self) -> bytes:
        return b"# Replication\r\nrole:master\r\nconnected_slaves:%d\r\nmaster_repl_offset:7\r\n" % self.connected


class FakePool:
    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection

    async def get_connection(self) -> FakeConnection:
        return self.connection

    async def release(self, connection: FakeConnection) -> None:
        pass


def test_connected_replicas_from_info() -> None:
    assert connected_replicas(b"role:master\r\nconnected_slaves:2\r\nslave0:ip=x\r\n") == 2


async def test_the_larger_count_wins_and_a_silent_sentinel_keeps_its_last() -> None:
    listed: list[int | None] = [2]

    async def sentinels() -> int | None:
        return listed[0]

    master = FakeConnection(6379, connected=1)  # the master lost a replica: the one being promoted, maybe
    count = ReplicaCount(FakePool(master), sentinels)
    assert await count.needed(master) == 2  # the Sentinels still list both
    listed[0] = None  # no Sentinel answers (a partition): never a reason to wait for fewer
    master.connected = 0
    await count._learn(master)
    assert count.value == 2
    listed[0] = 1  # the Sentinels marked one down
    await count._learn(master)
    assert count.value == 1


async def test_learnt_per_master_once_then_refreshed_in_the_background(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replicas_module, "REFRESH", 0.05)
    old, new = FakeConnection(6379, connected=1), FakeConnection(6380, connected=0)
    count = ReplicaCount(FakePool(old))
    assert await count.needed(old) == 1 and old.infos == 1
    assert await count.needed(old) == 1 and old.infos == 1  # cached: no round trip
    assert await count.needed(new) == 0 and new.infos == 1  # another master (a failover): learnt before the write
    await asyncio.sleep(0.06)
    old.connected = 2
    await count.needed(new)  # due: refreshed in the background (the pool's connection is the old master's here)
    await asyncio.sleep(0.01)
    assert old.infos == 2 and count.value == 2


@pytest.fixture
def sentinel_set() -> Iterator[RedisSentinelSet]:
    if not redis_available():
        pytest.skip(REDIS_MISSING)
    with RedisSentinelSet(replicas=1, sentinels=1) as servers:
        yield servers


async def test_writes_wait_for_the_replica_and_stop_while_a_dead_one_is_not_marked_down(
        sentinel_set: RedisSentinelSet) -> None:
    store = create_store(sentinel_set.url, socket_timeout=0.5, timeout=2.0)
    try:
        reservation = await store.reserve(WINDOWS, 10, NOW)
        assert store._replicas.value == 1  # type: ignore[attr-defined] # learnt, not configured
        replica = sentinel_set.replicas[0]
        bucket = f"tollgate:{reservation.charged[0].bucket}"
        assert replica.command("GET", bucket) == b"10"  # WAIT returned: the replica holds it already
        assert replica.command("EXISTS", f"tollgate:{reservation.ledger}") == 1

        replica.stop()
        with pytest.raises(StoreUnavailable, match="0 of 1 replicas confirmed") as failed:
            await store.reserve(WINDOWS, 20, NOW)
        doubtful = failed.value.doubtful  # the master took them: they must be given back
        deadline = time.monotonic() + 15  # the Sentinel marks the replica down after down-after-milliseconds (1 s)
        while True:
            try:
                await store.reserve(WINDOWS, 5, NOW)
                break
            except StoreUnavailable as exc:
                doubtful += exc.doubtful
                assert time.monotonic() < deadline, "writes never resumed"
                await asyncio.sleep(0.2)
        assert store._replicas.value == 0  # type: ignore[attr-defined]
        for reservation in doubtful:
            await store.settle(reservation, 0)
        (state,) = await store.peek(WINDOWS, NOW)
        assert state.used == 10 + 5
    finally:
        await store.close()

"""create_store URLs, and the Redis store through Sentinel and on a Cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
from redis.asyncio.cluster import RedisCluster

from tests.redis_server import REDIS_MISSING, RedisClusterSet, RedisSentinelSet, redis_available
from tollgate.store import LocalStore, RedisStore, Store, Window, create_store
from tollgate.store.redis import _split_url

NOW = 1_700_006_400.0


@pytest.mark.parametrize("url", [None, "local", "local://"])
async def test_local_urls(url: str | None) -> None:
    store = create_store(url)
    assert isinstance(store, LocalStore)
    await store.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://user:secret@cache.internal:6380/2",
        "unix:///run/redis.sock?db=1",
        "sentinel://10.0.0.1:26379,10.0.0.2/mymaster/3",
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7001",
    ],
)
async def test_redis_urls_connect_lazily(url: str) -> None:
    store = create_store(url)
    assert isinstance(store, RedisStore)
    assert "secret" not in repr(store)
    await store.close()


async def test_cluster_flag_and_scheme_make_a_cluster_client() -> None:
    for store in (create_store("redis://h:7000", cluster=True), create_store("redis+cluster://h:7000")):
        assert isinstance(store._client, RedisCluster)  # type: ignore[attr-defined]
        await store.close()


@pytest.mark.parametrize("url", ["memcached://x", "http://x"])
def test_unknown_schemes(url: str) -> None:
    with pytest.raises(ValueError):
        create_store(url)


def test_sentinel_needs_a_service_name() -> None:
    with pytest.raises(ValueError, match="service"):
        create_store("sentinel://127.0.0.1:26379")


async def test_wait_replicas_from_the_url_or_an_option() -> None:
    for store in (create_store("sentinel://127.0.0.1:26379/mymaster?wait_replicas=2&sentinel_password=p"),
                  create_store("redis://127.0.0.1:6379/0?wait_replicas=2"),
                  create_store("redis://127.0.0.1:6379/0", wait_replicas=2)):
        assert store._wait_replicas == 2  # type: ignore[attr-defined]
        assert store._replicas is None  # type: ignore[attr-defined]
        assert store._scripts_client is None  # type: ignore[attr-defined] # scripts go where WAIT can follow
        await store.close()
    with pytest.raises(ValueError, match="Cluster"):
        create_store("redis+cluster://127.0.0.1:7000?wait_replicas=1")
    with pytest.raises(ValueError, match="Cluster"):
        create_store("redis+cluster://127.0.0.1:7000?wait_replicas=all")
    with pytest.raises(ValueError):
        create_store("redis://127.0.0.1:6379?wait_replicas=-1")


async def test_sentinel_waits_for_every_replica_unless_told_not_to() -> None:
    """The safe default behind Sentinel: WAIT for every replica (counted, not configured); ``0`` opts out."""
    for store in (create_store("sentinel://127.0.0.1:26379/mymaster"),
                  create_store("sentinel://127.0.0.1:26379/mymaster?wait_replicas=all"),
                  create_store("redis://127.0.0.1:6379/0?wait_replicas=all")):
        assert store._wait_replicas is None and store._replicas is not None  # type: ignore[attr-defined]
        await store.close()
    for store in (create_store("sentinel://127.0.0.1:26379/mymaster?wait_replicas=0"),
                  create_store("sentinel://127.0.0.1:26379/mymaster", wait_replicas=0),
                  create_store("redis://127.0.0.1:6379/0"),
                  create_store("redis+cluster://127.0.0.1:7000?wait_replicas=0")):
        assert store._wait_replicas == 0 and store._replicas is None  # type: ignore[attr-defined]
        await store.close()
    plain = create_store("redis://127.0.0.1:6379/0")
    assert plain._scripts_client is not None  # type: ignore[attr-defined] # a single server keeps its fast path
    await plain.close()


def test_prefix_must_not_hold_a_hash_tag() -> None:
    with pytest.raises(ValueError):
        create_store("redis://127.0.0.1", prefix="{tollgate}:")


def test_multi_host_url_parsing() -> None:
    user, password, hosts, path, query = _split_url(
        "sentinel://me:p%40ss@a:1,[::1]:2,b/svc/4?sentinel_password=s", default_port=26379
    )
    assert (user, password, path, query) == ("me", "p@ss", "/svc/4", {"sentinel_password": "s"})
    assert hosts == [("a", 1), ("::1", 2), ("b", 26379)]


async def exercise(store: Store) -> None:
    """A little of everything, with keys spread over many slots, and a crowd of callers."""
    values = await asyncio.gather(*(store.incr(f"{{crowd{i % 7}}}") for i in range(300)))
    assert sorted(values) == sorted(v for k in range(7) for v in range(1, len(range(k, 300, 7)) + 1))
    for consumer in range(5):
        tag = f"{{c{consumer}}}"
        windows = [Window(f"{tag}:minute", 3, 60), Window(f"{tag}:day", 10, 86400, sliding=False)]
        results = [await store.reserve(windows, 1, NOW) for _ in range(4)]
        assert [r.allowed for r in results] == [True, True, True, False]
        await store.settle(results[0], 0)
        assert [s.used for s in await store.peek(windows, NOW)] == [2, 2]
    assert await store.incr("counter", 2, ttl=10) == 2
    await store.set("plain", b"v", ttl=10)
    assert await store.get("plain") == b"v"
    await store.hset("hash", {"a": b"1"}, ttl=10)
    assert await store.hgetall("hash") == {"a": b"1"}
    for i in range(3):
        await store.vector_put("cache:model", f"e{i}", np.eye(3, dtype=np.float32)[i], b"%d" % i, ttl=10)
    hits = await store.vector_search("cache:model", np.array([0, 1, 0.1], dtype=np.float32), k=2)
    assert [h.entry_id for h in hits] == ["e1", "e2"]


@pytest.fixture(scope="module")
def sentinel_set() -> Iterator[RedisSentinelSet]:
    if not redis_available():
        pytest.skip(REDIS_MISSING)
    with RedisSentinelSet() as servers:
        yield servers


@pytest.fixture(scope="module")
def cluster_set() -> Iterator[RedisClusterSet]:
    if not redis_available():
        pytest.skip(REDIS_MISSING)
    with RedisClusterSet() as servers:
        yield servers


@pytest.fixture
async def cluster_store(cluster_set: RedisClusterSet) -> AsyncIterator[Store]:
    cluster_set.flushall()
    store = create_store(cluster_set.url)
    yield store
    await store.close()


async def test_through_sentinel(sentinel_set: RedisSentinelSet) -> None:
    sentinel_set.master.flushall()
    store = create_store(sentinel_set.url)
    try:
        await exercise(store)
        assert sentinel_set.master.command("GET", "tollgate:k:plain") == b"v"  # it found the master
    finally:
        await store.close()


async def test_on_a_cluster(cluster_store: Store, cluster_set: RedisClusterSet) -> None:
    await exercise(cluster_store)
    holders = [node for node in cluster_set.nodes if node.command("KEYS", "tollgate:k:plain")]
    assert len(holders) == 1


async def test_cluster_refuses_windows_without_a_common_tag(cluster_store: Store) -> None:
    with pytest.raises(ValueError, match="hash tag"):
        await cluster_store.reserve([Window("a:minute", 1, 60), Window("b:minute", 1, 60)], 1, NOW)

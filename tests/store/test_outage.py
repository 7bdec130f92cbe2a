"""Redis going away mid-test: every method fails fast with StoreUnavailable, then recovers."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from tests.redis_server import RedisServer, free_port
from tollgate.store import RedisStore, StoreError, StoreUnavailable, Window, create_store

WINDOWS = [Window("{o}:minute", 100, 60), Window("{o}:day", 1000, 86400, sliding=False)]
NOW = 1_700_006_400.0
FAST = 1.0  # seconds: "quickly" (the brief allows 2)


def operations(store: RedisStore) -> dict[str, Callable[[], Awaitable[object]]]:
    vector = np.ones(4, dtype=np.float32)
    return {
        "reserve": lambda: store.reserve(WINDOWS, 1, NOW),
        "charge": lambda: store.charge(WINDOWS, 1, NOW),
        "peek": lambda: store.peek(WINDOWS, NOW),
        "get": lambda: store.get("k"),
        "set": lambda: store.set("k", b"v", ttl=10),
        "delete": lambda: store.delete("k"),
        "incr": lambda: store.incr("n", 1, ttl=10),
        "hget": lambda: store.hget("h", "f"),
        "hgetall": lambda: store.hgetall("h"),
        "hset": lambda: store.hset("h", {"f": b"v"}),
        "vector_put": lambda: store.vector_put("ns", "e", vector, b"p", ttl=10),
        "vector_search": lambda: store.vector_search("ns", vector),
        "vector_delete": lambda: store.vector_delete("ns", "e"),
        "ping": lambda: store.ping(),
    }


async def assert_all_unavailable(store: RedisStore) -> None:
    for name, call in operations(store).items():
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await call()
        elapsed = time.monotonic() - started
        assert elapsed < FAST, f"{name} took {elapsed:.2f} s to fail"


async def assert_all_work(store: RedisStore) -> None:
    for call in operations(store).values():
        await call()


async def test_stopped_redis_fails_fast_and_recovers(own_redis: RedisServer) -> None:
    store = RedisStore.from_url(own_redis.url)
    try:
        await assert_all_work(store)  # warm: pooled connections and loaded scripts
        reservation = await store.reserve(WINDOWS, 5, NOW)
        own_redis.stop()
        await assert_all_unavailable(store)
        with pytest.raises(StoreUnavailable):
            await store.settle(reservation, 1)
        assert not reservation.settled  # may be retried
        own_redis.restart()  # same port, empty, no scripts loaded
        await assert_all_work(store)
        await store.settle(reservation, 1)
        assert reservation.settled
    finally:
        await store.close()


async def test_hung_redis_times_out_and_recovers(own_redis: RedisServer) -> None:
    store = RedisStore.from_url(own_redis.url)  # default timeouts
    try:
        await assert_all_work(store)
        own_redis.pause()
        try:
            for name in ("reserve", "get", "vector_search"):
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await operations(store)[name]()
                assert time.monotonic() - started < FAST, name
        finally:
            own_redis.resume()
        await assert_all_work(store)
    finally:
        await store.close()


async def test_unreachable_from_the_start() -> None:
    store = create_store(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens: no error yet
    try:
        await assert_all_unavailable(store)  # type: ignore[arg-type]
    finally:
        await store.close()


async def test_other_redis_errors_are_store_errors(own_redis: RedisServer) -> None:
    store = RedisStore.from_url(own_redis.url)
    try:
        own_redis.command("SET", "tollgate:k:text", "abc")
        with pytest.raises(StoreError) as caught:
            await store.incr("text")
        assert not isinstance(caught.value, StoreUnavailable)
        own_redis.command("CONFIG", "SET", "maxmemory", "1")  # writes now get OOM
        with pytest.raises(StoreUnavailable):
            await store.set("k", b"v")
    finally:
        own_redis.command("CONFIG", "SET", "maxmemory", "0")
        await store.close()


async def test_a_script_the_server_lacks_is_sent_whole_whatever_script_load_does(own_redis: RedisServer,
                                                                                 monkeypatch) -> None:
    """What a Cluster failover does (seen in tests/gateway/test_scale_out.py): the promoted replica has no scripts,
    and redis-py's NOSCRIPT retry loaded the script on the masters it knew, not on it (made to miss here), so its
    second EVALSHA failed too, reached the caller as a StoreError, and the request's settlement was lost. The store
    sends the script whole instead, and does not depend on SCRIPT LOAD."""
    store = RedisStore.from_url(own_redis.url)
    store._scripts_client = None  # type: ignore[attr-defined] # redis-py's path, the one a Cluster takes
    try:
        reservation = await store.reserve(WINDOWS, 5, NOW)
        own_redis.command("SCRIPT", "FLUSH")

        async def loaded_elsewhere(script: str | bytes) -> str:
            return hashlib.sha1(script.encode() if isinstance(script, str) else script).hexdigest()

        monkeypatch.setattr(store._client, "script_load", loaded_elsewhere)  # type: ignore[attr-defined]
        await store.settle(reservation, 2)
        assert [state.used for state in await store.peek(WINDOWS, NOW)] == [2, 2]
    finally:
        await store.close()

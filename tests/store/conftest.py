"""Fixtures for the store tests: the same tests run against the local and the Redis backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from tests.redis_server import REDIS_MISSING, RedisServer, redis_available
from tollgate.store import LocalStore, RedisStore, Store, create_store

EPOCH = 1_700_000_000.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = EPOCH) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _need_redis() -> None:
    if not redis_available():
        pytest.skip(REDIS_MISSING)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the session; the `store` fixture empties it before each test."""
    _need_redis()
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own, free to be stopped, paused and restarted."""
    _need_redis()
    with RedisServer() as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["local", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def store(backend: str, clock: FakeClock, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A store of each backend: local on the fake clock, Redis on real time (emptied first)."""
    if backend == "local":
        made: Store = LocalStore(clock=clock)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        server.flushall()
        made = create_store(server.url)
    yield made
    await made.close()


@pytest.fixture
async def redis_nodes(redis_server: RedisServer) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two Redis stores on one server: two Kong nodes sharing state. With generous timeouts: these tests are about
    sharing, and a stall of this process in a full run outlasted the 0.25 s socket timeout once, in a burst of 300
    calls (test_two_nodes_share_one_limit, a fresh machine's CI run)."""
    redis_server.flushall()
    first, second = (RedisStore.from_url(redis_server.url, timeout=5, socket_timeout=2) for _ in range(2))
    yield first, second
    await first.close()
    await second.close()


@pytest.fixture
def advance(backend: str, clock: FakeClock) -> Callable[[float], Awaitable[None]]:
    """Let TTLs run: move the fake clock (local) or wait for real (Redis keeps its own time)."""

    async def advance(seconds: float) -> None:
        if backend == "local":
            clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)

    return advance

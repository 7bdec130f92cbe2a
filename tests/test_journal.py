"""The journal of reservations in flight (plugins/journal.py), on a real Redis: written while requests run, settled
by the next process on the node (given back, or to what an ended request used), never twice."""

from __future__ import annotations

import asyncio

import pytest

from tests.clocks import EPOCH
from tests.redis_server import REDIS_MISSING, RedisServer, redis_available
from tollgate.plugins import journal as journal_module
from tollgate.plugins.journal import Journal
from tollgate.store import LocalStore, RedisStore, Window

pytestmark = pytest.mark.skipif(not redis_available(), reason=REDIS_MISSING)

WINDOWS = [Window("{c}:minute", 1000, 60), Window("{c}:hour", 5000, 3600)]


@pytest.fixture
async def store(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(journal_module, "PERIOD", 0.05)
    redis_server.flushall()
    made = RedisStore.from_url(redis_server.url)
    yield made
    await made.close()


async def adopted(journal: Journal, store: RedisStore) -> None:
    """Reserve once so that the journal adopts the store (and gives back what a predecessor left)."""
    assert journal.open(store, [await store.reserve(WINDOWS, 0, EPOCH)]) is None
    for _ in range(100):
        if journal.open(store, []) is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the store was never adopted")


async def used(store: RedisStore) -> list[float]:
    return [state.used for state in await store.peek(WINDOWS, EPOCH)]


async def test_a_dead_process_reservations_are_given_back_by_the_next(store: RedisStore) -> None:
    dead = Journal()
    dead.node = "host:/sockets"
    await adopted(dead, store)
    kept = await store.reserve(WINDOWS, 100, EPOCH)
    await store.settle(kept, 40)  # a request that ended normally
    dead.open(store, [await store.reserve(WINDOWS, 300, EPOCH)])  # one in flight when the process dies
    await asyncio.sleep(0.2)
    assert await store.get(dead.key())  # written down
    assert await used(store) == [340, 340]
    dead._writer.cancel()  # the process dies

    successor = Journal()
    successor.node = "host:/sockets"
    await adopted(successor, store)
    assert await used(store) == [40, 40]
    assert await store.get(successor.key()) is None
    other = Journal()  # another node's journal is not this one's business
    other.node = "elsewhere:/sockets"
    assert other.key() != successor.key()


async def successor_of(dead: Journal, store: RedisStore) -> Journal:
    """The process dies now; the next one on the node adopts the store."""
    dead._writer.cancel()
    successor = Journal()
    successor.node = dead.node
    await adopted(successor, store)
    return successor


async def test_an_ended_request_is_settled_by_the_next_process_to_what_it_used(store: RedisStore) -> None:
    dead = Journal()
    dead.node = "host:/sockets"
    await adopted(dead, store)
    handle = dead.open(store, [await store.reserve(WINDOWS, 300, EPOCH)])
    dead.ended(handle, [10])  # its settlement never lands: the process dies first
    await asyncio.sleep(0.2)  # a write or more
    await successor_of(dead, store)
    assert await used(store) == [10, 10]


async def test_what_the_dead_process_settled_is_not_settled_again(store: RedisStore) -> None:
    dead = Journal()
    dead.node = "host:/sockets"
    await adopted(dead, store)
    reservation = await store.reserve(WINDOWS, 300, EPOCH)
    handle = dead.open(store, [reservation])
    await asyncio.sleep(0.2)
    dead._writer.cancel()  # its last write is done: it will die before the next one
    dead.ended(handle, [10])
    await store.settle(reservation, 10)
    dead.release(handle)
    assert await store.get(dead.key())  # the journal still lists the reservation it settled
    await successor_of(dead, store)
    assert await used(store) == [10, 10]  # its ledger is gone: the successor's settlement does nothing


async def test_nothing_is_written_for_a_local_store_or_without_a_node() -> None:
    local = LocalStore(clock=lambda: EPOCH)
    journal = Journal()
    journal.node = "host:/sockets"
    assert journal.open(local, [await local.reserve(WINDOWS, 5, EPOCH)]) is None
    unnamed = RedisStore.from_url("redis://127.0.0.1:1/0")
    assert Journal().open(unnamed, []) is None
    await unnamed.close()


async def test_shutdown_writes_what_ended_requests_used(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that ended after the last periodic write, its settlement not landed: the write at shutdown
    (`limits.settle_pending`) makes the successor settle it to what it used, not give it all back."""
    from tollgate.plugins import limits

    dead = Journal()
    dead.node = "host:/sockets"
    await adopted(dead, store)
    handle = dead.open(store, [await store.reserve(WINDOWS, 300, EPOCH)])
    await asyncio.sleep(0.2)
    dead._writer.cancel()  # no periodic write after this one (which lists the request as still running)
    dead.ended(handle, [10])
    monkeypatch.setattr(limits, "JOURNAL", dead)
    await limits.settle_pending(1.0)
    await successor_of(dead, store)
    assert await used(store) == [10, 10]

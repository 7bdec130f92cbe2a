"""Reservation records in Redis (ledgers): a settlement or give-back applies once if its reservation landed, and
not at all if it did not, however often a call whose outcome was unknown is repeated."""

from __future__ import annotations

import asyncio

import pytest

from tests.redis_server import RedisServer
from tollgate.store import RedisStore, Reservation, StoreUnavailable, Window

NOW = 1_767_225_600.0
WINDOWS = [Window("{c}:minute", 1000, 60), Window("{c}:hour", 5000, 3600)]


async def used(store: RedisStore) -> list[float]:
    return [state.used for state in await store.peek(WINDOWS, NOW)]


@pytest.fixture
async def store(redis_server: RedisServer):
    redis_server.flushall()
    made = RedisStore.from_url(redis_server.url)
    yield made
    await made.close()


def ledgers(server: RedisServer) -> list[bytes]:
    return server.command("KEYS", "tollgate:r:*")


async def test_a_settlement_repeated_applies_once(store: RedisStore, redis_server: RedisServer) -> None:
    reservation = await store.reserve(WINDOWS, 100, NOW)
    assert reservation.ledger and len(ledgers(redis_server)) == 1
    await store.settle(reservation, 30)
    assert await used(store) == [30, 30] and ledgers(redis_server) == []
    reservation.settled = False  # as after a call that failed once it may have landed: the retry
    await store.settle(reservation, 30)
    await store.settle_charged(store.live_buckets(reservation), reservation.amount, 0, reservation.ledger)
    assert await used(store) == [30, 30]


async def test_a_give_back_applied_twice_gives_back_once(store: RedisStore) -> None:
    kept = await store.reserve(WINDOWS, 40, NOW)
    given = await store.reserve(WINDOWS, 100, NOW)
    assert await used(store) == [140, 140]
    for _ in range(2):
        given.settled = False
        await store.settle(given, 0)
    assert await used(store) == [40, 40]
    await store.settle(kept, 40)
    assert await used(store) == [40, 40]


async def never_landed(amount: int) -> Reservation:
    """The doubtful reservation of a call refused by the server (the script never ran)."""
    nowhere = RedisStore.from_url("redis://127.0.0.1:1/0", timeout=0.5)
    try:
        with pytest.raises(StoreUnavailable) as failed:
            await nowhere.reserve(WINDOWS, amount, NOW)
    finally:
        await nowhere.close()
    (doubtful,) = failed.value.doubtful
    return doubtful


async def test_a_give_back_for_a_reservation_that_never_landed_does_nothing(store: RedisStore) -> None:
    await store.reserve(WINDOWS, 40, NOW)
    doubtful = await never_landed(100)
    assert doubtful.allowed and doubtful.amount == 100 and doubtful.ledger
    await store.settle(doubtful, 0)  # where it would have landed: no ledger, nothing to give back
    assert await used(store) == [40, 40]


@pytest.mark.parametrize("options", ["", "?wait_replicas=all"], ids=["pipelined client", "redis-py"])
async def test_a_cut_call_is_given_back_once(own_redis: RedisServer, options: str) -> None:
    """The store's deadline cuts the call while the server holds it (paused): its script may still run after the
    caller was told it failed. Giving back what the call may have made leaves the counters exact either way."""
    store = RedisStore.from_url(own_redis.url + options, timeout=0.1, socket_timeout=2.0)
    try:
        await store.reserve(WINDOWS, 40, NOW)
        own_redis.command("CLIENT", "PAUSE", "400", "WRITE")
        with pytest.raises(StoreUnavailable, match="no answer within") as failed:
            await store.reserve(WINDOWS, 100, NOW)
        await asyncio.sleep(0.6)
        landed = await used(store)
        if not options:  # the pipelined client kept its connection: the script ran after the cut
            assert landed == [140, 140]
        (doubtful,) = failed.value.doubtful
        for _ in range(2):
            doubtful.settled = False
            await store.settle(doubtful, 0)
        assert await used(store) == [40, 40]
    finally:
        await store.close()


async def test_a_cut_reservation_of_several_plugins_is_given_back_group_by_group(own_redis: RedisServer) -> None:
    store = RedisStore.from_url(own_redis.url, timeout=0.1, socket_timeout=2.0)
    budget = [Window("{b}:day", 10_000, 86400, sliding=False)]
    try:
        (warm,) = await store.reserve_in_turn([([(WINDOWS, 0)], NOW)])  # the server has the script
        await store.settle(warm[0], 0)
        own_redis.command("CLIENT", "PAUSE", "400", "WRITE")
        with pytest.raises(StoreUnavailable) as failed:
            await store.reserve_in_turn([([(WINDOWS, 100)], NOW), ([(budget, 7)], NOW)])
        await asyncio.sleep(0.6)
        assert await used(store) == [100, 100]
        doubtful = failed.value.doubtful
        assert [r.amount for r in doubtful] == [100, 7]
        for reservation in doubtful:
            await store.settle(reservation, 0)
        (spent,) = await store.peek(budget, NOW)
        assert await used(store) == [0, 0] and spent.used == 0
    finally:
        await store.close()


async def test_a_refused_group_leaves_no_ledger_behind(store: RedisStore, redis_server: RedisServer) -> None:
    tight = [Window("{t}:minute", 10, 60)]
    (made,) = await store.reserve_in_turn([([(WINDOWS, 100), (tight, 50)], NOW)])
    assert [r.allowed for r in made] == [True, False]
    assert await used(store) == [0, 0] and ledgers(redis_server) == []


async def test_a_final_charge_keeps_no_record(store: RedisStore, redis_server: RedisServer) -> None:
    reservation = await store.reserve(WINDOWS, 1, NOW, settle=False)
    assert reservation.allowed and reservation.ledger is None and ledgers(redis_server) == []
    await store.settle(reservation, 0)  # final: nothing to settle
    assert await used(store) == [1, 1]


# -- several reservations settled in one script (Store.settle_all) ---------------------------------------------------

BUDGET = [Window("{b}:month", 10_000_000, 2_592_000, sliding=False)]


async def warm(store: RedisStore) -> None:
    """The server learns the scripts (a first EVALSHA of each is answered NOSCRIPT and sent again whole)."""
    await store.settle(await store.reserve(WINDOWS, 0, NOW), 0)


def script_calls(server: RedisServer) -> int:
    stats = server.command("INFO", "commandstats").decode()
    return sum(int(line.split("calls=")[1].split(",")[0]) for line in stats.splitlines()
               if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")))


async def test_a_request_s_settlements_go_in_one_script(store: RedisStore, redis_server: RedisServer) -> None:
    """Both limiting plugins of a request: an exact settlement (it only removes its ledger) and a partial give-back,
    in one call; repeated, nothing moves."""
    await warm(store)
    (tokens, budget), = await store.reserve_in_turn([([(WINDOWS, 100), (BUDGET, 5000)], NOW)])
    assert len(ledgers(redis_server)) == 2
    before = script_calls(redis_server)
    await store.settle_all([(tokens, 100), (budget, 1200)])
    assert script_calls(redis_server) == before + 1
    assert ledgers(redis_server) == []
    (spent,) = await store.peek(BUDGET, NOW)
    assert await used(store) == [100, 100] and spent.used == 1200
    for reservation in (tokens, budget):
        reservation.settled = False  # as a retry after an unknown outcome
    await store.settle_all([(tokens, 0), (budget, 0)])
    (spent,) = await store.peek(BUDGET, NOW)
    assert await used(store) == [100, 100] and spent.used == 1200


async def test_settlements_started_in_one_loop_turn_share_a_script(store: RedisStore,
                                                                   redis_server: RedisServer) -> None:
    """The after stages of a request (and other requests ending meanwhile) settle side by side: one script."""
    await warm(store)
    made = [await store.reserve(WINDOWS, 100, NOW) for _ in range(3)] + [await store.reserve(BUDGET, 900, NOW)]
    before = script_calls(redis_server)
    await asyncio.gather(store.settle(made[0], 100), store.settle_all([(made[1], 40), (made[2], 0)]),
                         store.settle(made[3], 300))
    assert script_calls(redis_server) == before + 1
    (spent,) = await store.peek(BUDGET, NOW)
    assert await used(store) == [140, 140] and spent.used == 300 and ledgers(redis_server) == []
    assert all(r.settled for r in made)


async def test_a_shared_script_that_fails_leaves_every_caller_free_to_retry(own_redis: RedisServer) -> None:
    """Cut by the deadline while the server is paused: every caller gets StoreUnavailable and its reservations are
    not settled; the retries (the script may have run after all) apply each settlement once."""
    store = RedisStore.from_url(own_redis.url, timeout=0.1, socket_timeout=2.0)
    try:
        exact, partial = await store.reserve(WINDOWS, 100, NOW), await store.reserve(WINDOWS, 300, NOW)
        own_redis.command("CLIENT", "PAUSE", "400", "WRITE")
        outcomes = await asyncio.gather(store.settle(exact, 100), store.settle(partial, 20), return_exceptions=True)
        assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes)
        assert not exact.settled and not partial.settled
        await asyncio.sleep(0.6)
        for _ in range(2):
            await store.settle_all([(exact, 100), (partial, 20)])
            exact.settled = partial.settled = False
        assert await used(store) == [120, 120]
        assert own_redis.command("KEYS", "tollgate:r:*") == []
    finally:
        await store.close()


async def test_a_doubtful_reservation_is_given_back_with_the_settlements(store: RedisStore) -> None:
    """A give-back of what a failed call may have made (its ledger never written: nothing to give back) travels
    with a real settlement in one script; each applies as it should."""
    doubtful = await never_landed(500)
    kept = await store.reserve(WINDOWS, 100, NOW)
    await store.settle_all([(doubtful, 0), (kept, 60)])
    assert await used(store) == [60, 60] and doubtful.settled and kept.settled

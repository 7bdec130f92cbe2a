"""Rate windows and budgets, the same on both backends: reserve, settle, charge, peek."""

from __future__ import annotations

import asyncio

import pytest

from tollgate.store import RedisStore, Store, Window

T0 = 19676 * 86400.0  # Nov 2023, midnight UTC: bucket boundaries of minutes and days fall on T0
MINUTE = Window("{consumer:1}:minute", 1000, 60)
DAY = Window("{consumer:1}:day", 5000, 86400, sliding=False)


async def test_admits_exactly_what_fits(store: Store) -> None:
    results = [await store.reserve([MINUTE], 300, T0 + 1) for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert [r.states[0].used for r in results] == [300, 600, 900, 900]
    assert [r.states[0].remaining for r in results] == [700, 400, 100, 100]
    refused = results[-1]
    assert refused.denied is not None and refused.denied.key == MINUTE.key
    assert refused.retry_after is not None and refused.retry_after > 0


async def test_all_or_nothing_across_windows(store: Store) -> None:
    minute = Window("{c}:minute", 1000, 60)
    day = Window("{c}:day", 500, 86400, sliding=False)
    first = await store.reserve([minute, day], 400, T0)
    second = await store.reserve([minute, day], 200, T0 + 1)  # minute has room, day does not
    assert first.allowed and not second.allowed
    assert second.denied is not None and second.denied.key == "{c}:day"
    assert [s.used for s in await store.peek([minute, day], T0 + 1)] == [400, 400]  # nothing charged
    third = await store.reserve([minute, day], 100, T0 + 2)
    assert third.allowed
    assert [s.used for s in third.states] == [500, 500]


async def test_reset_at_is_the_end_of_the_current_bucket(store: Store) -> None:
    reservation = await store.reserve([MINUTE, DAY], 1, T0 + 59.5)
    assert [s.reset_at for s in reservation.states] == [T0 + 60, T0 + 86400]


async def test_settle_down_and_up(store: Store) -> None:
    window = Window("{s}:minute", 1000, 60)
    big = await store.reserve([window], 500, T0)
    await store.settle(big, 200)
    assert (await store.peek([window], T0))[0].used == 200
    await store.settle(big, 10)  # second settle: no effect
    assert (await store.peek([window], T0))[0].used == 200
    small = await store.reserve([window], 100, T0 + 1)
    await store.settle(small, 800)
    assert (await store.peek([window], T0 + 1))[0].used == 1000
    assert not (await store.reserve([window], 0, T0 + 1)).allowed


async def test_settle_never_goes_below_zero(store: Store) -> None:
    window = Window("{z}:minute", 1000, 60)
    reservation = await store.reserve([window], 300, T0)
    await store.charge([window], -250, T0)
    await store.settle(reservation, 0)  # -300 on a bucket holding 50
    assert (await store.peek([window], T0))[0].used == 0
    states = await store.charge([window], -10, T0)
    assert states[0].used == 0


async def test_settle_reaches_a_bucket_that_became_previous(store: Store) -> None:
    window = Window("{p}:minute", 1000, 60)
    reservation = await store.reserve([window], 600, T0 + 10)
    # 60 s later the charged bucket is the previous one, weighted 5/6 at T0 + 70
    assert (await store.peek([window], T0 + 70))[0].used == pytest.approx(500)
    await store.settle(reservation, 300)
    assert (await store.peek([window], T0 + 70))[0].used == pytest.approx(250)


async def test_settle_of_a_refused_reservation_does_nothing(store: Store) -> None:
    window = Window("{r}:minute", 100, 60)
    await store.charge([window], 100, T0)
    refused = await store.reserve([window], 1, T0)
    await store.settle(refused, 50)
    assert (await store.peek([window], T0))[0].used == 100


async def test_zero_reservation_needs_some_room_and_settles_later(store: Store) -> None:
    window = Window("{zero}:minute", 100, 60)
    open_ended = await store.reserve([window], 0, T0)
    assert open_ended.allowed and open_ended.states[0].used == 0
    await store.settle(open_ended, 99)  # the response's real size, charged afterwards
    assert (await store.reserve([window], 0, T0)).allowed  # 1 left
    await store.charge([window], 5, T0)  # post-hoc charge may overshoot
    refused = await store.reserve([window], 0, T0)
    assert not refused.allowed
    assert refused.states[0].used == 104 and refused.states[0].remaining == 0


async def test_sliding_window_frees_capacity_gradually(store: Store) -> None:
    window = Window("{slide}:minute", 100, 60)
    start = T0 + 600
    assert (await store.reserve([window], 100, start + 30)).allowed  # bucket [start, start+60)
    assert not (await store.reserve([window], 1, start + 59)).allowed
    assert not (await store.reserve([window], 1, start + 60)).allowed  # previous still weighs 100%
    # at +75 the previous bucket weighs 75%: 25 free
    assert (await store.peek([window], start + 75))[0].used == pytest.approx(75)
    assert not (await store.reserve([window], 26, start + 75)).allowed
    assert (await store.reserve([window], 25, start + 75)).allowed
    assert not (await store.reserve([window], 1, start + 75)).allowed
    # at +105: 100 * 0.25 + 25 = 50 used
    states = await store.peek([window], start + 105)
    assert states[0].used == pytest.approx(50) and states[0].remaining == 50
    # two buckets later the first one no longer counts: 25 * 0.5 at +150
    assert (await store.peek([window], start + 150))[0].used == pytest.approx(12.5)


async def test_fixed_window_resets_exactly_at_its_boundary(store: Store) -> None:
    window = Window("{fixed}:minute", 3, 60, sliding=False)
    boundary = T0 + 180
    results = [await store.reserve([window], 1, boundary - 60 + i) for i in range(3)]
    assert all(r.allowed for r in results)
    refused = await store.reserve([window], 1, boundary - 0.001)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.001, abs=1e-6)
    assert refused.states[0].reset_at == boundary
    after = await store.reserve([window], 1, boundary)
    assert after.allowed and after.states[0].used == 1
    assert after.states[0].reset_at == boundary + 60


async def test_explicit_start_windows(store: Store) -> None:
    day = 86400.0
    march = T0 + 3 * 3600  # not on any multiple of the period length
    month = Window("{org}:month", 1000, 31 * day, sliding=False, start=march)
    assert (await store.reserve([month], 800, march + 5 * day)).allowed
    refused = await store.reserve([month], 300, march + 30 * day)
    assert not refused.allowed
    assert refused.states[0].reset_at == march + 31 * day
    assert refused.retry_after == pytest.approx(day)
    april = Window("{org}:month", 1000, 30 * day, sliding=False, start=march + 31 * day)
    fresh = await store.reserve([april], 300, march + 31 * day)
    assert fresh.allowed and fresh.states[0].used == 300


async def test_charge_is_unconditional(store: Store) -> None:
    window = Window("{post}:minute", 100, 60)
    states = await store.charge([window, Window("{post}:day", 1000, 86400)], 150, T0)
    assert [s.used for s in states] == [150, 150]
    assert states[0].remaining == 0
    refused = await store.reserve([window], 1, T0)
    assert not refused.allowed


async def test_windows_sharing_a_counter_charge_it_once(store: Store) -> None:
    loose, tight = Window("{dup}:minute", 100, 60), Window("{dup}:minute", 50, 60)
    results = [await store.reserve([loose, tight], 20, T0) for _ in range(3)]
    assert [r.allowed for r in results] == [True, True, False]  # the tighter limit rules
    assert [s.used for s in results[1].states] == [40, 40]
    assert results[2].denied is not None and results[2].denied.limit == 50
    await store.settle(results[0], 0)
    assert (await store.peek([loose], T0))[0].used == 20


async def test_peek_does_not_charge(store: Store) -> None:
    await store.reserve([MINUTE, DAY], 10, T0)
    for _ in range(3):
        states = await store.peek([MINUTE, DAY], T0)
    assert [s.used for s in states] == [10, 10]


async def test_amounts_beyond_the_limit_never_fit(store: Store) -> None:
    refused = await store.reserve([Window("{huge}:m", 10, 60)], 11, T0)
    assert not refused.allowed and refused.retry_after is None


async def test_argument_errors(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.reserve([MINUTE], -1, T0)
    with pytest.raises(TypeError):
        await store.reserve([MINUTE], 1.5, T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hash tag"):
        await store.reserve([Window("a", 1, 60), Window("b", 1, 60)], 1, T0)
    assert (await store.reserve([], 5, T0)).allowed


async def test_concurrent_reservations_never_exceed_the_limit(store: Store) -> None:
    window = Window("{crowd}:minute", 50, 60)
    results = await asyncio.gather(*(store.reserve([window], 1, T0) for _ in range(200)))
    assert sum(r.allowed for r in results) == 50
    assert (await store.peek([window], T0))[0].used == 50


async def test_two_nodes_share_one_limit(redis_nodes: tuple[RedisStore, RedisStore]) -> None:
    window = [Window("{shared}:minute", 120, 60), Window("{shared}:day", 1000, 86400)]
    first, second = redis_nodes
    results = await asyncio.gather(
        *(node.reserve(window, 1, T0) for _ in range(150) for node in (first, second))
    )
    assert sum(r.allowed for r in results) == 120
    assert [s.used for s in await first.peek(window, T0)] == [120, 120]
    # a reservation made on one node is settled from the other
    reservation = next(r for r in results if r.allowed)
    await second.settle(reservation, 0)
    assert [s.used for s in await first.peek(window, T0)] == [119, 119]

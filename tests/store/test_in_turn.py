"""Store.reserve_in_turn: several requests' reservations at once, exactly as if made one after the other.

Redis does it in one script (one round trip for every limiting plugin of a request); the result and the counters
it leaves must be those of `reserve` and `settle(r, 0)` called in turn, which is what every other backend does.
"""

from __future__ import annotations

import random

from tests.redis_server import RedisServer
from tollgate.store import RedisStore, Store, Window

NOW = 1_700_006_400.0


def summary(results: list) -> list:
    return [[(r.allowed, r.amount, [(s.key, s.used, s.remaining) for s in r.states],
              r.denied.key if r.denied else None, r.retry_after, r.settled) for r in made] for made in results]


async def test_in_turn_stops_at_the_first_refusal_and_gives_back_that_requests_earlier_groups(store: Store) -> None:
    minute, hour = Window("{a}:minute", 100, 60), Window("{a}:hour", 1000, 3600)
    budget = Window("{b}:month", 50, 86400, sliding=False)
    results = await store.reserve_in_turn([
        ([([minute, hour], 30)], NOW),                   # admitted
        ([([minute], 10), ([budget], 60)], NOW),         # its first group fits, its second does not
        ([([minute], 1)], NOW),                          # never tried
    ])
    assert [[r.allowed for r in made] for made in results] == [[True], [True, False]]
    assert results[1][0].settled and results[1][1].denied is not None
    assert [s.used for s in (await store.peek([minute, hour], NOW))] == [30, 30]
    assert [s.used for s in (await store.peek([budget], NOW))] == [0]


async def test_redis_script_matches_reserving_in_turn(redis_server: RedisServer) -> None:
    scripted, stepwise = RedisStore.from_url(redis_server.url, prefix="s:"), RedisStore.from_url(redis_server.url,
                                                                                                  prefix="t:")
    rnd = random.Random(7)
    now = NOW
    try:
        redis_server.flushall()
        for _ in range(150):
            now += rnd.uniform(0, 0.5)
            requests = []
            for r in range(rnd.randint(1, 3)):
                groups = []
                for g in range(rnd.randint(1, 3)):
                    windows = [Window(f"{{t{r}}}:g{g}:{i}", rnd.choice([50, 100, 1000]), rnd.choice([60, 3600]),
                                      sliding=rnd.random() < 0.5) for i in range(rnd.randint(0, 2))]
                    if windows and rnd.random() < 0.2:
                        windows.append(windows[0])  # two limits on one counter
                    groups.append((windows, rnd.choice([0, 5, 30, 80])))
                requests.append((groups, now))
            first = await scripted.reserve_in_turn(requests)
            second = await Store.reserve_in_turn(stepwise, requests)
            assert summary(first) == summary(second)
            for made_a, made_b in zip(first, second):
                for a, b in zip(made_a, made_b):
                    if a.allowed and rnd.random() < 0.5:
                        actual = rnd.choice([0, 3, 200])
                        await scripted.settle(a, actual)
                        await stepwise.settle(b, actual)
        kept = [sorted(k.decode()[2:] for k in redis_server.command("KEYS", f"{p}:*")) for p in "st"]
        keys = [k for k in kept[0] if k.startswith("w:")]
        assert keys == [k for k in kept[1] if k.startswith("w:")]
        # the records of the reservations not settled: one each (named by the store that made them)
        assert len(kept[0]) - len(keys) == len(kept[1]) - len(keys) > 0
        for key in keys:
            assert redis_server.command("GET", "s:" + key) == redis_server.command("GET", "t:" + key), key
    finally:
        await scripted.close()
        await stepwise.close()

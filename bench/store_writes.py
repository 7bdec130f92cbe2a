"""What a limited request costs the store's client, through `RedisStore`, on servers started here on free loopback
ports: a single server (the pipelined client), and a master with one replica behind a Sentinel, without waiting for
the replica (``?wait_replicas=0``) and with the default (``WAIT`` for every replica, in the same round trip as the
script). Three requests:

* ``partial``: one reservation (two windows) settled below what it reserved;
* ``exact``: the same settled to exactly what it reserved (its ledger still has to go);
* ``chain``: token-limit's two windows and cost-quota's budget reserved together (`reserve_in_turn`), then both
  settled side by side, as the relay's after stages do (one exact, one partial).

    python bench/store_writes.py [--requests 5000] [--concurrency 1,16] [--cases partial,exact,chain]
                                 [--repeat 5] [--code DIR]

Prints, per case, setup and concurrency: wall time and this process's CPU time per request (reserve + settle), the
median of ``--repeat`` runs and the lowest CPU; the servers' CPU is not counted. ``--code DIR`` imports the
``tollgate`` package from DIR instead (before/after: e.g. a ``git archive`` of the base commit's ``plugins``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def _code(argv: list[str]) -> str:
    """The package directory to import, read before tollgate is imported."""
    if "--code" in argv:
        return argv[argv.index("--code") + 1]
    return os.path.join(os.path.dirname(__file__), "..", "plugins")


sys.path.insert(0, _code(sys.argv))

from tests.redis_server import RedisSentinelSet, RedisServer  # noqa: E402
from tollgate.store import Window, create_store  # noqa: E402

from bench.redis_client import measure  # noqa: E402  (after tollgate: it puts this tree's plugins first on the path)

NOW = 1_767_225_600.0
WINDOWS = [Window("{bench}:minute", 10 ** 15, 60), Window("{bench}:hour", 10 ** 15, 3600)]
BUDGET = [Window("{bench-budget}:month", 10 ** 15, 2_592_000, sliding=False)]


async def per_request(url: str, case: str, requests: int, concurrency: int, repeat: int) -> list[tuple[float, float]]:
    """(wall us, CPU us) per request of ``case``, ``concurrency`` requests in flight, for each of ``repeat`` runs
    (after a warm-up)."""
    store = create_store(url)
    try:
        async def one() -> None:
            if case == "chain":
                (tokens, budget), = await store.reserve_in_turn([([(WINDOWS, 300), (BUDGET, 9000)], NOW)])
                await asyncio.gather(store.settle(tokens, 300), store.settle(budget, 2500))
                return
            reservation = await store.reserve(WINDOWS, 300, NOW)
            await store.settle(reservation, 300 if case == "exact" else 120)

        await measure(one, min(requests, 200), concurrency)
        return [await measure(one, requests, concurrency) for _ in range(repeat)]
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--cases", default="partial,exact,chain")
    parser.add_argument("--repeat", type=int, default=5, help="runs per line: a loaded machine disturbs some of "
                        "them, so the lowest CPU is shown beside the median")
    parser.add_argument("--code", help="import tollgate from this directory")
    options = parser.parse_args()
    with RedisServer() as single, RedisSentinelSet(replicas=1, sentinels=1) as sentinel:
        setups = [("single server", single.url), ("sentinel, wait_replicas=0", sentinel.url + "?wait_replicas=0"),
                  ("sentinel, default", sentinel.url)]
        for case in options.cases.split(","):
            for concurrency in (int(c) for c in options.concurrency.split(",")):
                for name, url in setups:
                    runs = await per_request(url, case, options.requests, concurrency, options.repeat)
                    walls, cpus = sorted(wall for wall, _ in runs), sorted(cpu for _, cpu in runs)
                    print(f"{case:<8} c={concurrency:<3} {name:<26} wall {walls[len(walls) // 2]:8.1f} us/request   "
                          f"cpu {cpus[len(cpus) // 2]:7.1f} us/request (lowest {cpus[0]:.1f})", flush=True)


if __name__ == "__main__":
    asyncio.run(main())

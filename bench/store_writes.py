"""What a limited request costs the store's client: one reservation (two windows) and its settlement, through
`RedisStore`, on servers started here on free loopback ports: a single server (the pipelined client), and a master
with one replica behind a Sentinel, without waiting for the replica (``?wait_replicas=0``) and with the default
(``WAIT`` for every replica, in the same round trip as the script).

    python bench/store_writes.py [--requests 5000] [--concurrency 1,16] [--code DIR]

Prints, per setup and concurrency: wall time and this process's CPU time per request (reserve + settle); the
servers' CPU is not counted. ``--code DIR`` imports the ``tollgate`` package from DIR instead (before/after: e.g. a
``git archive`` of the base commit's ``plugins``).
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


async def per_request(url: str, requests: int, concurrency: int) -> tuple[float, float]:
    """(wall us, CPU us) per reserve + settle, ``concurrency`` requests in flight."""
    store = create_store(url)
    try:
        async def one() -> None:
            reservation = await store.reserve(WINDOWS, 300, NOW)
            await store.settle(reservation, 120)

        return await measure(one, requests, concurrency)
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--code", help="import tollgate from this directory")
    options = parser.parse_args()
    with RedisServer() as single, RedisSentinelSet(replicas=1, sentinels=1) as sentinel:
        setups = [("single server", single.url), ("sentinel, wait_replicas=0", sentinel.url + "?wait_replicas=0"),
                  ("sentinel, default", sentinel.url)]
        for concurrency in (int(c) for c in options.concurrency.split(",")):
            for name, url in setups:
                wall, cpu = await per_request(url, options.requests, concurrency)
                print(f"c={concurrency:<3} {name:<26} wall {wall:8.1f} us/request   cpu {cpu:7.1f} us/request")


if __name__ == "__main__":
    asyncio.run(main())

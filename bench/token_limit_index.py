"""What the token-limit window index (plugins/token_limit/index.py) adds to a request.

    python bench/token_limit_index.py [--requests 200000] [--consumers 1000] [--rate 1000] [--redis URL]

Two numbers, in CPU time of this process:
- the request path when the entry is fresh (nearly every request): ``WindowIndex.touch`` returning at once;
- amortized over a simulated stretch of traffic (``--requests`` at ``--rate`` per second of simulated time, spread
  over ``--consumers`` identifiers), background writes included: each identifier is written once per REFRESH
  seconds, and the event loop turns once per request, so no two requests share a write (the worst case). With ``--redis`` the writes go to that Redis (its own CPU is not counted; the writes per second are
  printed so it can be judged).
Compare with the relay's CPU per request (bench/run.py: ~190-240 us on this machine class).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from tollgate.plugins.token_limit.index import REFRESH, WindowIndex
from tollgate.store import LocalStore, create_store

LIMITS = [{"limit": 100_000, "window_size": "minute", "seconds": 60, "tokens_count_strategy": "total_tokens"},
          {"limit": 1_000_000, "window_size": "day", "seconds": 86400, "tokens_count_strategy": "total_tokens"}]
CONFIG = {"route_id": "route-1", "identifier": "consumer", "window_type": "sliding"}


class SimulatedClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def hot_path(calls: int, consumers: int) -> float:
    """Microseconds of CPU per ``touch`` of an identifier written moments ago."""
    store = LocalStore()
    index = WindowIndex("bench-hot", CONFIG, LIMITS)
    whos = [f"consumer:{i}" for i in range(consumers)]
    now = time.time()
    for who in whos:
        index.touch(store, who, who, now)
    await index.drain()
    touch = index.touch
    start = time.process_time()
    for i in range(calls):
        touch(store, whos[i % consumers], None, now)
    return (time.process_time() - start) / calls * 1e6


async def amortized(requests: int, consumers: int, rate: float, url: str | None) -> tuple[float, float, int]:
    """CPU microseconds per request with the background writes, simulated seconds, and the writes made."""
    clock = SimulatedClock()
    store = create_store(url) if url else LocalStore(clock=clock)
    index = WindowIndex("bench-amortized", CONFIG, LIMITS)
    whos = [f"consumer:{i}" for i in range(consumers)]
    writes = 0
    original = store.hset

    async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal writes
        writes += 1
        return await original(*args, **kwargs)

    store.hset = counted  # type: ignore[method-assign]
    step = 1.0 / rate

    async def run(touch: bool) -> float:
        start = time.process_time()
        for i in range(requests):
            clock.now += step
            if touch:
                index.touch(store, whos[i % consumers], None, clock.now)
            await asyncio.sleep(0)   # one request per turn of the loop: the writes batch nothing (the worst case)
        await index.drain()
        return time.process_time() - start

    baseline = await run(False)      # the loop alone, subtracted
    cpu = await run(True) - baseline
    await store.close()
    return cpu / requests * 1e6, requests * step, writes


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--consumers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0, help="simulated requests per second")
    parser.add_argument("--redis", help="a Redis URL for the amortized run (default: the local store)")
    args = parser.parse_args()
    print(f"touch, entry fresh: {await hot_path(args.requests, args.consumers):.3f} us CPU per request")
    per, seconds, writes = await amortized(args.requests, args.consumers, args.rate, args.redis)
    print(f"amortized with writes ({'redis' if args.redis else 'local'} store): {per:.3f} us CPU per request; "
          f"{writes} writes in {seconds:.0f} simulated s ({writes / seconds:.1f}/s; REFRESH {REFRESH:.0f} s, "
          f"{args.consumers} identifiers, {args.rate:.0f} requests/s)")


if __name__ == "__main__":
    asyncio.run(main())

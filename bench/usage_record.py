"""What the usage record adds to a request: ``analytics._count`` (the dashboard's one row update) per call.

    python bench/usage_record.py [--calls 200000] [--consumers 50]

Calls it on finished request contexts (usage, cost, latency and TTFT set, as the relay leaves them) spread over
``--consumers`` consumers and two models, and prints microseconds per call. Compare with the relay's CPU per
request (bench/run.py: ~190-240 us on this machine class): the goal is well under 1% of it.
"""

from __future__ import annotations

import argparse
import time

from tollgate import analytics, usage
from tollgate.context import RequestContext
from tollgate.providers.base import Usage


def contexts(consumers: int) -> list[RequestContext]:
    made = []
    for i in range(consumers * 2):
        ctx = RequestContext(method="POST", path="/v1/chat/completions", query="", headers={}, body=b"{}",
                             identity={"id": f"id-{i % consumers}", "username": f"user-{i % consumers}"},
                             policies={}, route_id="route-1")
        ctx.status = 200
        ctx.usage = Usage(prompt_tokens=1000, completion_tokens=200, total_tokens=1200)
        ctx.meta.update(provider="openai", model=("gpt-4o-mini", "gpt-4o")[i % 2], cost=0.00027, latency_ms=42.0,
                        ttft_ms=12.0)
        made.append(ctx)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--consumers", type=int, default=50)
    args = parser.parse_args()
    made = contexts(args.consumers)
    count = analytics._count
    n = len(made)
    for ctx in made:
        count(ctx)
    start = time.perf_counter()
    for i in range(args.calls):
        count(made[i % n])
    elapsed = time.perf_counter() - start
    print(f"analytics._count: {elapsed / args.calls * 1e6:.2f} us per request "
          f"({args.calls} calls, {n} distinct keys, {sum(1 for _ in usage.RECORD.rows(0, time.time() + 60))} rows)")


if __name__ == "__main__":
    main()

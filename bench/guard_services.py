"""tollgate-guardrails: what the guard services' framework adds to the services' own time, on the prompt.

A local guard service (another process) answers every check after 20 ms. Measured, in the relay's own request
stage (``GuardrailsPolicy.before``, the body already parsed as the relay hands it over), one request at a time:

- the service's own time: a bare POST of the same body on the same pooled session (the floor);
- one HTTP guard: the stage's wall time, and what it adds over the floor (goal: at most 1 ms);
- three guards side by side (HTTP, OpenAI moderation, Lakera shapes, all on the same 20 ms service): the wait is
  the slowest one's, not the sum;
- CPU per request of the stage (the process's CPU time; the service runs elsewhere).

    python bench/guard_services.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from aiohttp import web

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench.common import free_port, wait_http  # noqa: E402
from bench.guardrails import policy, stage_ms  # noqa: E402
from tollgate.relay import upstream  # noqa: E402

DELAY = 0.020
PROMPT = "Tell me about gateways and tokens. " * 30       # ~1 KB


def serve(port: int) -> None:
    """The guard service: every path answers "allow" in each service's shape after DELAY."""
    answer = {"verdict": {"action": "ALLOW"}, "flagged": False, "id": "modr", "model": "m",
              "results": [{"flagged": False, "categories": {"violence": False},
                           "category_scores": {"violence": 0.001}}]}

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(DELAY)
        return web.json_response(answer)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=False)


@asynccontextmanager
async def guard_service() -> AsyncIterator[str]:
    """The guard service in its own process (its CPU is not the relay's); its URL."""
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(port,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{url}/check", 20)
        yield url
    finally:
        server.terminate()
        server.join(5)


def guards(url: str) -> list[dict[str, Any]]:
    return [{"name": "custom", "type": "http", "http": {"request": {"url": f"{url}/check"},
                                                         "response": {"block": "verdict.action",
                                                                      "block_values": ["BLOCK"]}}},
            {"name": "moderation", "type": "openai_moderation",
             "openai_moderation": {"url": f"{url}/v1/moderations", "api_key": "sk-bench"}},
            {"name": "lakera", "type": "lakera", "lakera": {"lakera_service_url": f"{url}/v2/guard",
                                                            "api_key": "lk-bench"}}]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def floor(url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        async with upstream.session().post(f"{url}/check", json={"text": PROMPT}) as response:
            await response.read()
        out.append((time.perf_counter() - started) * 1000)
    return out


async def stage(p: Any, n: int) -> tuple[list[float], float]:
    """Wall ms per request stage, and CPU ms per request."""
    cpu = time.process_time()
    out = await stage_ms(p, {"model": "m", "messages": [{"role": "user", "content": PROMPT}]}, n)
    return out, (time.process_time() - cpu) / n * 1000


async def main(n: int) -> None:
    async with guard_service() as url:
        try:
            await floor(url, 20)                                     # warm the pool
            one, three = policy(guards=guards(url)[:1]), policy(guards=guards(url))
            await stage(one, 10)
            await stage(three, 10)
            base_cpu = time.process_time()
            base = await floor(url, n)
            base_cpu = (time.process_time() - base_cpu) / n * 1000
            single, single_cpu = await stage(one, n)
            triple, triple_cpu = await stage(three, n)
            print(f"guard service answering in {DELAY * 1000:.0f} ms; {n} sequential requests, 1 KB prompt "
                  f"(a shared, loaded 2-core machine: read the p50s)")
            print(f"   {'':<34} {'p50':>7} {'p90':>7}   {'CPU/request':>11}")
            for name, times, cpu in [("service alone (bare POST)", base, base_cpu),
                                     ("1 guard (http)", single, single_cpu),
                                     ("3 guards side by side", triple, triple_cpu)]:
                print(f"   {name:<34} {statistics.median(times):7.2f} {pct(times, 0.9):7.2f}   {cpu:9.3f} ms")
            added = statistics.median(single) - statistics.median(base)
            print(f"   added by 1 guard over the service, p50: {added:.2f} ms (goal <= 1 ms); "
                  f"CPU added: {single_cpu - base_cpu:.3f} ms")
            print(f"   3 guards over 1, p50: {statistics.median(triple) - statistics.median(single):.2f} ms")

        finally:
            await upstream.close()

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    args = parser.parse_args()
    asyncio.run(main(50 if args.quick else 300))

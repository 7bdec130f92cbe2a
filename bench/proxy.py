"""What tollgate-proxy costs per request: the Tollgate process's CPU time and the PDK round trips Kong makes.

    python bench/proxy.py [--requests 2000] [--concurrency 16] [--scenario proxy|three|all]

Starts the mock LLM (its own process), ``tollgate serve`` and the Kong double (tests/harness) in front of it, then
sends chat completions through the double, non-streaming and streaming (``include_usage``). For each it prints:

* CPU ms per request of the Tollgate process (user + system, from /proc/<pid>/stat, over the measured requests);
* PDK round trips per request as the double counts them (every RPC message Kong sends the plugin server: HandleEvent
  and each Step), after a warm-up so instance starts are not counted;
* requests per second (wall clock, for information only: the double, the client and the mock share the machine).

Scenarios: ``proxy`` (a route with tollgate-proxy alone, one model), ``three`` (tollgate-token-limit,
tollgate-cost-quota and tollgate-proxy on one route: at most 7 round trips for the three, issue 19)
and ``routed`` (tollgate-proxy with two targets, lowest-latency: balancer state read and written per request).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

import aiohttp
import orjson

BENCH = os.path.dirname(os.path.abspath(__file__))
for path in (os.path.dirname(BENCH), BENCH):
    if path not in sys.path:
        sys.path.insert(0, path)

from common import cpu_seconds, mock_llm_process  # noqa: E402
from tests.harness import KongDouble  # noqa: E402
from tests.harness.procs import TollgateServer  # noqa: E402

MESSAGES = [{"role": "system", "content": "You are a terse assistant. " * 8},
            {"role": "user", "content": "Summarise the benchmark in one sentence, please. " * 6}]


def proxy_config(mock_url: str) -> dict[str, Any]:
    return {"route_type": "llm/v1/chat",
            "model": {"provider": "openai", "name": "gpt-4o-mini",
                      "options": {"upstream_url": mock_url + "/v1/chat/completions"}},
            "auth": {"header_name": "Authorization", "header_value": "Bearer sk-bench-0123456789"}}


def declarative(relay_url: str, mock_url: str) -> dict[str, Any]:
    three = [
        {"name": "tollgate-token-limit", "config": {"limits": [{"limit": 10 ** 12, "window_size": "minute",
                                                                "tokens_count_strategy": "total_tokens"}]}},
        {"name": "tollgate-cost-quota", "config": {"budgets": [{"amount": 10 ** 9, "period": "month",
                                                                "scope": "route"}]}},
        {"name": "tollgate-proxy", "config": proxy_config(mock_url)},
    ]
    single = proxy_config(mock_url)
    routed = {"route_type": "llm/v1/chat", "balancer": {"algorithm": "lowest-latency"},
              "targets": [{"model": single["model"], "auth": single["auth"]},
                          {"model": {**single["model"], "name": "gpt-4o"}, "auth": single["auth"]}]}
    return {"_format_version": "3.0", "services": [{"name": "relay", "url": relay_url, "retries": 0, "routes": [
        {"name": "proxy", "paths": ["/proxy/"], "strip_path": False,
         "plugins": [{"name": "tollgate-proxy", "config": proxy_config(mock_url)}]},
        {"name": "three", "paths": ["/three/"], "strip_path": False, "plugins": three},
        {"name": "routed", "paths": ["/routed/"], "strip_path": False,
         "plugins": [{"name": "tollgate-proxy", "config": routed}]},
    ]}]}


async def drive(url: str, requests: int, concurrency: int, stream: bool) -> float:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    data = orjson.dumps(body)
    headers = {"Content-Type": "application/json"}
    left = requests
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.post(url, data=data, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{url}: status {r.status}: {(await r.read())[:300]!r}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


async def measure(kong: KongDouble, pid: int, route: str, stream: bool, requests: int, concurrency: int
                  ) -> dict[str, float]:
    url = f"{kong.url}/{route}/v1/chat/completions"
    await drive(url, min(200, requests), concurrency, stream)          # warm-up: instances, pools, caches
    await kong.settle()
    kong.stats.reset()
    before = cpu_seconds([pid])
    elapsed = await drive(url, requests, concurrency, stream)
    await kong.settle()
    cpu = cpu_seconds([pid]) - before
    served = len(kong.stats.requests)
    return {"cpu_ms": cpu * 1000 / requests, "round_trips": kong.stats.total_round_trips / max(1, served),
            "rps": requests / elapsed}


async def main(args: argparse.Namespace) -> None:
    async with mock_llm_process() as mock_url:
        await measure_all(args, mock_url)


async def measure_all(args: argparse.Namespace, mock_url: str) -> None:
    proc = TollgateServer(log_level="warning")
    try:
        await proc.astart()
        assert proc.proc is not None
        plugins = ["tollgate-proxy", "tollgate-token-limit", "tollgate-cost-quota"]
        async with KongDouble(proc.entries("3.9", plugins), declarative(proc.relay_url, mock_url)) as kong:
            scenarios = ["proxy", "three", "routed"] if args.scenario == "all" else [args.scenario]
            print(f"tollgate-proxy cost per request ({args.requests} requests, concurrency {args.concurrency}, "
                  f"Tollgate pid {proc.pid})")
            print(f"{'route':<8} {'kind':<14} {'CPU ms/req':>11} {'round trips/req':>16} {'req/s':>8}")
            for scenario in scenarios:
                for stream in (False, True):
                    result = await measure(kong, proc.proc.pid, scenario, stream, args.requests, args.concurrency)
                    kind = "streaming" if stream else "non-streaming"
                    print(f"{scenario:<8} {kind:<14} {result['cpu_ms']:>11.3f} {result['round_trips']:>16.2f} "
                          f"{result['rps']:>8.0f}")
    finally:
        proc.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--scenario", choices=["proxy", "three", "routed", "all"], default="all")
    asyncio.run(main(parser.parse_args()))

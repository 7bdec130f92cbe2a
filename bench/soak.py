"""Soak: does Tollgate stay flat under hours of moderate load?

    python bench/soak.py [--minutes 30] [--rate 20] [--concurrency 8] [--stream-share 0.25]

Runs the full chain for ``--minutes``: the Kong double -> ``tollgate serve`` (tollgate-token-limit,
tollgate-cost-quota and tollgate-proxy on one route, state in a real Redis) -> the mock LLM (its own process), at
``--rate`` requests per second (a share of them streamed), limits set high enough to admit everything. Every
``--every`` seconds it prints one line for the Tollgate process: RSS (its process tree), open file descriptors,
asyncio tasks (from its status listener's /health), CPU seconds used, and the p50/p99 latency and error count of
that interval. At the end: growth of RSS, fds and tasks from the end of the warm-up (the first ``--warmup``
minutes, default a fifth of the run, at least one) to the end (goal: at most 5 %; for fds and tasks, which also
count the requests in flight, at most twice ``--concurrency`` more), and how p99 moved (the
post-warm-up intervals' p99 against their median: goal at most 2x; the machine is shared, so read it with the CPU
figures). The exit status is 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

BENCH = os.path.dirname(os.path.abspath(__file__))
for path in (os.path.dirname(BENCH), BENCH):
    if path not in sys.path:
        sys.path.insert(0, path)

from common import cpu_seconds, gateway, mock_llm_process, percentile, rss_kb, tree  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

GROWTH_GOAL = 0.05
P99_GOAL = 2.0


def plugins(mock_url: str) -> list[dict[str, Any]]:
    return [
        {"name": "tollgate-token-limit", "config": {
            "limits": [{"limit": 10 ** 12, "window_size": "minute", "tokens_count_strategy": "total_tokens"}],
            "strategy": "redis"}},
        {"name": "tollgate-cost-quota", "config": {
            "budgets": [{"amount": 10 ** 9, "period": "month", "scope": "route"}], "strategy": "redis"}},
        {"name": "tollgate-proxy", "config": {
            "route_type": "llm/v1/chat",
            "model": {"provider": "openai", "name": "gpt-4o-mini",
                      "options": {"upstream_url": mock_url + "/v1/chat/completions"}},
            "auth": {"header_name": "Authorization", "header_value": "Bearer sk-soak-0123456789"}}},
    ]


causes: Counter[str] = Counter()     # what the failed requests got: "status code" or the client's exception


def error_code(body: bytes) -> str:
    """The OpenAI-style error's code (or type), or the body's first bytes when it is not one."""
    try:
        error = orjson.loads(body).get("error") or {}
        return str(error.get("code") or error.get("type"))
    except (orjson.JSONDecodeError, AttributeError):
        return repr(body[:60])


@dataclass
class Interval:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    def percentile(self, p: float) -> float:
        return percentile(self.latencies, p, 0.0) * 1000


@dataclass
class Sample:
    minute: float
    rss_kb: int
    fds: int
    tasks: int
    cpu: float
    requests: int
    errors: int
    p50: float
    p99: float


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def tasks_of(http: aiohttp.ClientSession, status_url: str) -> int:
    async with http.get(status_url + "/health", timeout=aiohttp.ClientTimeout(total=5)) as answer:
        return int((await answer.json())["tasks"])


async def soak(args: argparse.Namespace) -> int:
    body = {"model": "gpt-4o-mini", "max_tokens": 64,
            "messages": [{"role": "system", "content": "You are a terse assistant."},
                         {"role": "user", "content": "Summarise a soak test in one sentence. " * 20}]}
    plain, streamed = orjson.dumps(body), orjson.dumps({**body, "stream": True})
    with RedisServer() as redis:
        async with mock_llm_process() as mock_url, gateway(plugins(mock_url), redis_url=redis.url) as (double, proc):
            pid = proc.proc.pid
            status_url = f"http://127.0.0.1:{proc.status_port}"
            url = double.url + "/v1/chat/completions"
            current = Interval()
            stop = time.monotonic() + args.minutes * 60
            connector = aiohttp.TCPConnector(limit=args.concurrency)
            async with aiohttp.ClientSession(connector=connector) as http:
                slots = asyncio.Semaphore(args.concurrency)

                async def one() -> None:
                    nonlocal current
                    data = streamed if random.random() < args.stream_share else plain
                    started = time.perf_counter()  # queueing for a slot counts: the load is offered, not paced
                    interval = current
                    async with slots:
                        try:
                            async with http.post(url, data=data, headers={"Content-Type": "application/json"},
                                                 timeout=aiohttp.ClientTimeout(total=60)) as answer:
                                body = await answer.read()
                                ok = answer.status == 200
                                if not ok:
                                    causes[f"{answer.status} {error_code(body)}"] += 1
                        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                            ok = False
                            causes[type(exc).__name__] += 1
                        interval.latencies.append(time.perf_counter() - started)
                        interval.errors += not ok

                async def offer() -> None:  # an open-loop arrival rate: latency does not slow the offered load
                    pending: set[asyncio.Task[None]] = set()
                    gap = 1 / args.rate
                    next_at = time.monotonic()
                    while time.monotonic() < stop:
                        task = asyncio.ensure_future(one())
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                        next_at += gap
                        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                    await asyncio.gather(*pending)

                samples: list[Sample] = []
                started = time.monotonic()
                cpu0 = cpu_seconds(tree(pid))
                print(f"soak: {args.minutes:g} min at {args.rate:g} req/s ({args.stream_share:.0%} streamed), "
                      f"report every {args.every:g} s; Tollgate pid {pid}; {os.cpu_count()} CPUs, shared", flush=True)
                print(f"{'min':>6} {'rss MB':>8} {'fds':>5} {'tasks':>6} {'cpu s':>7} {'reqs':>6} {'errs':>5} "
                      f"{'p50 ms':>8} {'p99 ms':>8}", flush=True)

                async def report() -> None:
                    nonlocal current
                    while time.monotonic() < stop:
                        await asyncio.sleep(min(args.every, max(0.0, stop - time.monotonic())))
                        done, current = current, Interval()
                        pids = tree(pid)
                        sample = Sample(minute=(time.monotonic() - started) / 60, rss_kb=rss_kb(pids),
                                        fds=open_fds(pid), tasks=await tasks_of(http, status_url),
                                        cpu=cpu_seconds(pids) - cpu0, requests=len(done.latencies),
                                        errors=done.errors, p50=done.percentile(50), p99=done.percentile(99))
                        samples.append(sample)
                        print(f"{sample.minute:6.1f} {sample.rss_kb / 1024:8.1f} {sample.fds:5d} {sample.tasks:6d} "
                              f"{sample.cpu:7.1f} {sample.requests:6d} {sample.errors:5d} {sample.p50:8.1f} "
                              f"{sample.p99:8.1f}", flush=True)

                await asyncio.gather(offer(), report())
    return verdict(samples, args)


def verdict(samples: list[Sample], args: argparse.Namespace) -> int:
    warmup = args.warmup if args.warmup is not None else max(1.0, args.minutes / 5)
    warm = max(1, round(warmup * 60 / args.every))  # intervals in the warm-up
    after = samples[warm:]
    if len(after) < 2:
        print(f"too short to judge: fewer than two intervals after the {warmup:g}-minute warm-up")
        return 1
    base, last = samples[warm - 1], after[-1]
    failed = False
    print(f"\ngrowth from the end of the warm-up ({base.minute:.1f} min) to the end ({last.minute:.1f} min), "
          f"goal <= {GROWTH_GOAL:.0%}:")
    for name, unit, first, end in (("rss", "MB", base.rss_kb / 1024, last.rss_kb / 1024),
                                   ("fds", "", base.fds, last.fds), ("tasks", "", base.tasks, last.tasks)):
        growth = (end - first) / first if first else 0.0
        # fds and tasks also count the requests in flight at the instant of the sample (a task and a connection or
        # two each, and pools that grow when latency spikes): up to twice the concurrency is load, not a leak
        small = name != "rss" and end - first <= 2 * args.concurrency
        ok = growth <= GROWTH_GOAL or small
        failed |= not ok
        print(f"  {name:5} {first:9.1f} -> {end:9.1f} {unit:2} {growth:+7.1%}  {'ok' if ok else 'OVER'}")
    p99s = [s.p99 for s in after]
    median = statistics.median(p99s)
    worst = max(p99s)
    stable = worst <= P99_GOAL * median
    failed |= not stable
    requests = sum(s.requests for s in samples)
    errors = sum(s.errors for s in samples)
    cpu_ms = last.cpu / requests * 1000 if requests else 0.0
    print(f"p99 after warm-up: median {median:.1f} ms, worst {worst:.1f} ms ({worst / median if median else 0:.2f}x, "
          f"goal <= {P99_GOAL:g}x)  {'ok' if stable else 'UNSTABLE'}")
    print(f"requests {requests}, errors {errors}; Tollgate CPU {last.cpu:.1f} s ({cpu_ms:.2f} ms per request)")
    if causes:
        print("errors by cause: " + ", ".join(f"{cause} x{n}" for cause, n in causes.most_common()))
    return 1 if failed or errors else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second offered")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at most")
    parser.add_argument("--stream-share", type=float, default=0.25)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between report lines")
    parser.add_argument("--warmup", type=float, default=None, help="minutes (default: a fifth of the run, >= 1)")
    sys.exit(asyncio.run(soak(parser.parse_args())))


if __name__ == "__main__":
    main()

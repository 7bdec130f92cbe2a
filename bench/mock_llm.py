"""Throughput of the mock LLM itself (so gateway benchmarks know it is not the bottleneck).

    python bench/mock_llm.py [--concurrency 32] [--duration 5] [--stream] [--url http://host:port]

Starts ``tollgate-mock-llm`` in a subprocess (its own core, uvloop, no recording) unless --url is given, then drives
non-streaming (or streaming) chat completions from an aiohttp client at the given concurrency and prints requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import time

import aiohttp

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You are terse."},
                                             {"role": "user", "content": "Say hello to the benchmark, please."}]}


async def drive(url: str, concurrency: int, duration: float, warmup: float, stream: bool) -> tuple[int, float]:
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}} if stream else BODY
    endpoint = url + "/v1/chat/completions"
    counting = False
    done = 0
    stop_at = 0.0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                async with session.post(endpoint, json=body) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"status {resp.status}")
                if counting:
                    done += 1

        stop_at = time.perf_counter() + warmup + duration
        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.sleep(warmup)
        counting = True
        t0 = time.perf_counter()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    return done, elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--stream", action="store_true", help="streamed chat (one chunk per word, include_usage)")
    p.add_argument("--url", help="benchmark an already running mock instead of starting one")
    args = p.parse_args()

    proc = None
    url = args.url
    if url is None:
        proc = subprocess.Popen([sys.executable, "-m", "tollgate.mock", "--port", "0", "--record-limit", "0"],
                                stderr=subprocess.PIPE, text=True)
        line = proc.stderr.readline()
        m = re.search(r"(http://\S+)", line)
        if not m:
            proc.kill()
            raise SystemExit(f"mock did not start: {line!r}")
        url = m.group(1)
    try:
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None)
        with runner:
            done, elapsed = runner.run(drive(url, args.concurrency, args.duration, args.warmup, args.stream))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
    kind = "streamed" if args.stream else "non-streaming"
    print(f"mock LLM: {done / elapsed:,.0f} requests/s ({kind} chat, concurrency {args.concurrency}, "
          f"{done} requests in {elapsed:.2f}s)")


if __name__ == "__main__":
    main()

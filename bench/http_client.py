"""The relay's upstream HTTP client on its hot path: Tollgate's `http1.Client` against the aiohttp session it
replaced (configured as ``relay.upstream.session()`` still is), on the calls the proxy makes: a ~4.4 KB chat POST
whose answer is read whole, and a streamed chat read chunk by chunk, both as ``proxy/attempt.py`` makes them (inside
``asyncio.timeout``, with connect and read timeouts). The mock LLM runs in its own process: only the client's CPU is
this process's.

    python bench/http_client.py [--calls 4000] [--concurrency 1,32] [--rounds 4] [--loop uvloop|asyncio]

The event loop is uvloop by default, as ``tollgate serve`` runs the relay.

Prints, per kind, concurrency and client: wall time and this process's CPU time per call (process CPU / calls).
The machine's load moves both alike: the clients take turns, ``--rounds`` slices each, within each kind and
concurrency; the figures are the rounds' mean.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any, Awaitable, Callable

BENCH = os.path.dirname(os.path.abspath(__file__))
for path in (os.path.dirname(BENCH), BENCH, os.path.join(os.path.dirname(BENCH), "plugins")):
    if path not in sys.path:
        sys.path.insert(0, path)

import aiohttp  # noqa: E402
import orjson  # noqa: E402

from common import chat_body, measure, mock_llm_process  # noqa: E402
from tollgate import http1  # noqa: E402
from tollgate.relay import upstream  # noqa: E402

HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench-0123456789"}
AIOHTTP_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
HTTP1_TIMEOUT = http1.Timeouts(connect=10, read=60)
Call = Callable[[], Awaitable[int]]


def calls(url: str, body: bytes, stream: bool) -> dict[str, Call]:
    """One call per client, returning the body's length (read whole, or chunk by chunk for a stream)."""

    async def call(request: Callable[..., Awaitable[Any]], timeout: Any) -> int:
        async with asyncio.timeout(60):
            response = await request("POST", url, headers=HEADERS, data=body, timeout=timeout)
            try:
                if not stream:
                    return len(await response.read())
                return sum([len(data) async for data in response.content.iter_any()])
            finally:
                response.release()

    async def with_aiohttp() -> int:
        return await call(upstream.session().request, AIOHTTP_TIMEOUT)

    async def with_http1() -> int:
        return await call(upstream.client().request, HTTP1_TIMEOUT)

    return {"aiohttp": with_aiohttp, "http1": with_http1}


async def main(options: argparse.Namespace) -> None:
    async with mock_llm_process(reply="The mock answers in twenty pieces for the benchmark of the client.",
                                chunks=20, prompt_tokens=1000, completion_tokens=200) as base:
        url = base + "/v1/chat/completions"
        plain = chat_body()
        streamed = chat_body(stream=True, stream_options={"include_usage": True})
        for kind, body, stream in (("plain", plain, False), ("stream", streamed, True)):
            clients = calls(url, body, stream)
            lengths = {name: await call() for name, call in clients.items()}
            assert all(lengths.values()), lengths
            if not stream:
                one = await upstream.client().request("POST", url, headers=HEADERS, data=body)
                assert "choices" in orjson.loads(await one.read())
            for concurrency in (int(c) for c in options.concurrency.split(",")):
                for call in clients.values():
                    for _ in range(200):                                 # warm: connections, caches
                        await call()
                totals = {name: [0.0, 0.0] for name in clients}
                for _ in range(options.rounds):                          # the clients take turns
                    for name, call in clients.items():
                        wall, cpu = await measure(call, options.calls // options.rounds, concurrency)
                        totals[name][0] += wall / options.rounds
                        totals[name][1] += cpu / options.rounds
                for name, (wall, cpu) in totals.items():
                    print(f"{kind:<6} c={concurrency:<3} {name:<8} wall {wall:7.1f} us/call   cpu {cpu:7.1f} us/call",
                          flush=True)
        await upstream.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parsed = parser.parse_args()
    if parsed.loop == "uvloop":
        import uvloop

        uvloop.install()
    print(f"event loop: {parsed.loop}")
    asyncio.run(main(parsed))

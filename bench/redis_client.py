"""The store's Redis client on its hot path: Tollgate's pipelined `store.resp.RespClient` against redis-py's
asyncio client with its hiredis parser, on the same script call (the sliding-window reservation every limited
request runs), against a redis-server started here on a free loopback port.

    python bench/redis_client.py [--calls 20000] [--concurrency 1,32]

Prints, per client and concurrency: wall time and this process's CPU time per call (the server's CPU is the same
for both). The issue's rule: keep resp.py only while redis-py + hiredis costs more than 30 us per call beyond it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "plugins"))
sys.path.insert(0, os.path.dirname(__file__))

import redis.asyncio as aioredis  # noqa: E402
from redis.utils import HIREDIS_AVAILABLE  # noqa: E402

from common import measure  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tollgate.store.resp import RespClient  # noqa: E402
from tollgate.store.scripts import WINDOWS  # noqa: E402

KEYS = ["bench:{w}:cur", "bench:{w}:prev"]
ARGS = ["12", "reserve", "1000000000", "0.5", "60000"]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--concurrency", default="1,32")
    options = parser.parse_args()
    with RedisServer() as server:
        resp = RespClient.for_url(server.url, 1.0, 1.0)
        assert resp is not None
        py = aioredis.from_url(server.url)
        script = py.register_script(WINDOWS)
        sha = script.sha

        async def with_resp():
            return await resp.evalsha(sha, WINDOWS, KEYS, ARGS)

        async def with_redis_py():
            return await script(keys=KEYS, args=ARGS)

        first, second = await with_resp(), await with_redis_py()
        assert len(first) == len(second) == 3, (first, second)    # the same script's reply through both clients
        print(f"redis-py's parser: {'hiredis' if HIREDIS_AVAILABLE else 'pure Python (pip install hiredis)'}")
        for concurrency in (int(c) for c in options.concurrency.split(",")):
            for name, call in (("resp.py", with_resp), ("redis-py+hiredis", with_redis_py)):
                for _ in range(200):    # warm
                    await call()
                wall, cpu = await measure(call, options.calls, concurrency)
                print(f"c={concurrency:<3} {name:<17} wall {wall:7.1f} us/call   cpu {cpu:7.1f} us/call")
        resp.close()
        await py.aclose()


if __name__ == "__main__":
    asyncio.run(main())

"""Issue 3's numbers: the Tollgate process's RSS before and after 10,000 sequential requests
through the Kong double, and the PDK round trips per request.

    python bench/foundation.py [--requests 10000]
"""

from __future__ import annotations

import argparse
import asyncio

from common import chat_body, gateway, load, mock_llm_process, rss_kb


async def main(requests: int) -> None:
    async with mock_llm_process() as mock_url:
        proxy = {"name": "tollgate-proxy", "config": {
            "route_type": "llm/v1/chat",
            "model": {"provider": "openai", "name": "gpt-4o-mini",
                      "options": {"upstream_url": mock_url + "/v1/chat/completions"}}}}
        async with gateway([proxy]) as (double, process):
            url = double.url + "/v1/chat/completions"
            body = chat_body()
            await load(url, body, 500, 1)  # warm-up: imports, pools, caches
            before = rss_kb([process.pid])
            trips_before = double.stats.total_round_trips
            result = await load(url, body, requests, 1)
            after = rss_kb([process.pid])
            trips = (double.stats.total_round_trips - trips_before) / result.requests
    growth = (after - before) / before * 100
    print(f"requests           {result.requests} sequential ({result.errors} errors)")
    print(f"rss_before_kb      {before}")
    print(f"rss_after_kb       {after}")
    print(f"rss_growth_pct     {growth:.2f}")
    print(f"round_trips/req    {trips:.2f}")
    print(f"RESULT rss_growth_pct={growth:.2f} round_trips_per_request={trips:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10000)
    asyncio.run(main(parser.parse_args().requests))

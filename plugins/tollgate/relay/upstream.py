"""The relay's HTTP client to providers: one pooled, keep-alive session per process."""

from __future__ import annotations

import aiohttp

_session: aiohttp.ClientSession | None = None


def session() -> aiohttp.ClientSession:
    global _session
    if _session is None or _session.closed:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=256, ttl_dns_cache=300, keepalive_timeout=60,
                                         enable_cleanup_closed=True)
        # auto_decompress: a gzip answer reaches the drivers already inflated.
        _session = aiohttp.ClientSession(connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",))
    return _session


async def close() -> None:
    global _session
    if _session is not None:
        await _session.close()
        _session = None

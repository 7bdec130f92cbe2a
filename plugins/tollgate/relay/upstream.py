"""The relay's HTTP client to providers: one pooled, keep-alive session per event loop."""

from __future__ import annotations

import asyncio

import aiohttp

_session: aiohttp.ClientSession | None = None
_loop: asyncio.AbstractEventLoop | None = None


def session() -> aiohttp.ClientSession:
    global _session, _loop
    loop = asyncio.get_running_loop()
    if _session is None or _session.closed or _loop is not loop:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=256, ttl_dns_cache=300, keepalive_timeout=60,
                                         enable_cleanup_closed=True)
        # auto_decompress: a gzip answer reaches the drivers already inflated. No cookie jar: the session is shared
        # by every consumer, and one's cookies must never ride along with another's calls (and it saves work).
        _session = aiohttp.ClientSession(connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",),
                                         cookie_jar=aiohttp.DummyCookieJar())
        _loop = loop
    return _session


async def close() -> None:
    global _session, _loop
    if _session is not None and _loop is asyncio.get_running_loop():
        await _session.close()
    _session, _loop = None, None

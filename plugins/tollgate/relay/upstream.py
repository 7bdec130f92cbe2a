"""The relay's HTTP clients, one of each per event loop, pooled and keep-alive.

``client()`` (`tollgate.http1`, lean) carries the provider and MCP-server calls, the bulk of the relay's upstream
traffic. ``session()`` (aiohttp) carries the others, where its breadth (JSON helpers, redirects, any URL a config
names) is worth its cost per call: guard services, budget webhooks, MCP REST tools, OAuth key sets.
"""

from __future__ import annotations

import asyncio

import aiohttp

from .. import http1

LIMIT_PER_HOST = 256
KEEPALIVE_S = 60

_session: aiohttp.ClientSession | None = None
_client: http1.Client | None = None


def client() -> http1.Client:
    global _client
    if _client is None or _client.closed or _client._loop is not asyncio.get_running_loop():
        _client = http1.Client(limit_per_host=LIMIT_PER_HOST, idle_timeout=KEEPALIVE_S)
    return _client


def session() -> aiohttp.ClientSession:
    global _session
    loop = asyncio.get_running_loop()
    if _session is None or _session.closed or _session._loop is not loop:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=LIMIT_PER_HOST, ttl_dns_cache=300,
                                         keepalive_timeout=KEEPALIVE_S, enable_cleanup_closed=True)
        # auto_decompress: a gzip answer arrives inflated. No cookie jar: the session is shared by every consumer,
        # and one's cookies must never ride along with another's calls (and it saves work).
        _session = aiohttp.ClientSession(connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",),
                                         cookie_jar=aiohttp.DummyCookieJar())
    return _session


async def close() -> None:
    """Close this loop's clients (those of another loop are only forgotten: their loop is gone)."""
    global _session, _client
    loop = asyncio.get_running_loop()
    if _session is not None and _session._loop is loop:
        await _session.close()
    if _client is not None and _client._loop is loop:
        await _client.close()
    _session, _client = None, None

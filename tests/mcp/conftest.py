"""One MCP environment (upstreams, two Tollgate processes on one Redis, a Kong double each) per test module."""

from __future__ import annotations

import aiohttp
import pytest_asyncio

from .env import Env, environment


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(redis_server) -> Env:
    redis_server.flushall()
    async with environment(redis_server.url) as e:
        yield e


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession() as session:
        yield session

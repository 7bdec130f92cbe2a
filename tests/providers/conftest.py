"""Shared fixtures of the provider tests: a mock LLM and a minimal relay in front of it.

``relay(config)`` serves one ``tollgate-proxy`` config the way the relay does (``ProxyPolicy.before`` then
``ProxyPolicy.serve``) on a real local port, without Kong or attachments, so an OpenAI SDK client pointed at
``<url>/v1`` goes through the provider driver and the mock over real HTTP. Sync SDK clients are run with
``asyncio.to_thread`` so the event loop keeps serving the relay and the mock meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from tests.relay_server import Served, serve
from tollgate.relay import web

from tollgate.context import RequestContext
from tollgate.mock import MockLLM
from tollgate.plugins.proxy.policy import ProxyPolicy
from tollgate.relay import upstream

PROXY = "tollgate-proxy"


@pytest.fixture
async def mock_llm() -> AsyncIterator[MockLLM]:
    async with MockLLM() as mock:
        yield mock


@pytest.fixture
async def relay() -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[str]]]:
    """``url = await relay(config)``: a relay serving one tollgate-proxy config; the last policy is ``relay.policy``."""
    session = upstream._session
    if session is not None and getattr(session, "_loop", None) is not asyncio.get_running_loop():
        upstream._session = None  # left behind by a test on another event loop
    served: list[Served] = []

    async def start(config: dict[str, Any]) -> str:
        policy = ProxyPolicy(config, PROXY)
        start.policy = policy  # type: ignore[attr-defined]
        start.contexts = []  # type: ignore[attr-defined]

        async def handle(request: web.Request) -> web.StreamResponse:
            ctx = RequestContext(method=request.method, path=request.path, query=request.query_string,
                                 headers=request.headers, body=await request.read(), identity={},
                                 policies={PROXY: policy})
            start.contexts.append(ctx)  # type: ignore[attr-defined]
            return await policy.before(ctx) or await policy.serve(ctx, request)

        served.append(await serve(handle))
        return served[-1].url

    yield start
    for one in served:
        await one.stop()
    await upstream.close()

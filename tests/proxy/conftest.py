"""Fixtures of the proxy tests.

In-process tests (``relay``): one ``tollgate-proxy`` config served the way the relay serves it (``before`` then
``serve``) on a real local port, in front of the mock LLM, without Kong. The end-to-end tests (``test_e2e_*``) use
the Kong double and the real ``tollgate serve`` process instead (see ``e2e.py``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.relay_server import Served, serve
from tollgate.relay import web

from tollgate import schema as schema_lang
from tollgate.context import RequestContext
from tollgate.mock import MockLLM
from tollgate.plugins.proxy.policy import ProxyPolicy
from tollgate.plugins.proxy.schema import Schema
from tollgate.relay import upstream

PROXY = "tollgate-proxy"


class Relay:
    def __init__(self, config: dict[str, Any], identity: dict[str, Any] | None = None,
                 attached: dict[str, Any] | None = None):
        # Balancer state is keyed by plugin id: a fresh one per relay keeps tests apart (pass one to share it).
        config = {"__plugin_id": f"test-{uuid.uuid4().hex[:12]}", **config}
        checked = schema_lang.validate(Schema, config)
        self.policy = ProxyPolicy({**config, **checked}, PROXY)
        self.identity = identity or {}
        self.attached = attached
        self.contexts: list[RequestContext] = []
        self.url = ""
        self._served: Served | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = RequestContext(method=request.method, path=request.path, query=request.query_string,
                             headers=request.headers, body=await request.read(), identity=dict(self.identity),
                             policies={PROXY: self.policy})
        if self.attached:
            ctx.meta["attached"] = {PROXY: self.attached}
        self.contexts.append(ctx)
        return await self.policy.before(ctx) or await self.policy.serve(ctx, request)

    async def start(self) -> "Relay":
        self._served = await serve(self.handle)
        self.url = self._served.url
        return self

    async def stop(self) -> None:
        if self._served is not None:
            await self._served.stop()


@pytest.fixture
async def mock() -> AsyncIterator[MockLLM]:
    async with MockLLM(shutdown_timeout=0.1) as m:
        yield m


@pytest.fixture
async def relay() -> AsyncIterator[Any]:
    session = upstream._session
    if session is not None and getattr(session, "_loop", None) is not asyncio.get_running_loop():
        upstream._session = None
    made: list[Relay] = []

    async def start(config: dict[str, Any], **kwargs: Any) -> Relay:
        r = await Relay(config, **kwargs).start()
        made.append(r)
        return r

    yield start
    for r in made:
        await r.stop()
    await upstream.close()

"""Fixtures of the cost-quota tests.

Two depths:

* ``gateway``: the real relay (`tollgate.relay.app.Relay`) in this process on a real port, with a fresh runtime on
  a fake clock, in front of the mock LLM. Requests carry attachments issued the way the plugins' ``access`` issues
  them, so the relay runs the real policies in their real order, without Kong.
* the Kong double (``tests/harness``) in front of real ``tollgate serve`` processes (``tollgate_process``,
  ``kong`` fixtures), whose runtime clock the test moves through a file (``clock_plugin/``).

Redis is a real ``redis-server`` (one per session, flushed per test).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from tests.relay_server import Served, serve

from tests.harness.fixtures import *  # noqa: F401,F403  (tollgate_process, kong, upstream)
from tests.redis_server import RedisServer, redis_available
from tollgate import runtime as runtime_module
from tollgate.attachments import HEADER, AttachmentTable
from tollgate.mock import MockLLM
from tollgate.pluginserver import loader
from tollgate.relay import upstream as upstream_module
from tollgate.relay.app import Relay
from tollgate.runtime import Runtime
from tollgate.settings import Settings

from tests.clocks import CLOCK_PLUGIN_DIR, EPOCH, FakeClock, FileClock  # noqa: F401  (re-exported for the tests)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fresh_runtime(clock: FakeClock) -> AsyncIterator[Runtime]:
    """A runtime of its own for the test (own stores, fake clock); the previous one comes back afterwards."""
    previous = runtime_module._current
    settings = Settings()
    made = runtime_module.install(Runtime(settings=settings, attachments=AttachmentTable(), clock=clock))
    session = upstream_module._session
    if session is not None and getattr(session, "_loop", None) is not asyncio.get_running_loop():
        upstream_module._session = None
    yield made
    for store in made.stores.values():
        await store.close()
    await upstream_module.close()
    runtime_module._current = previous


@pytest.fixture
async def mock_llm() -> AsyncIterator[MockLLM]:
    async with MockLLM() as mock:
        yield mock


def plugin_config(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """A config as Kong sends it: validated against the plugin's schema (defaults filled), with an id."""
    module = loader.load_builtin()[name]
    checked = module.validate(config)
    # Kong's own keys (route_id, service_id, __plugin_id...) reach the plugin as the plugin server passes them.
    handler_config = {**{k: v for k, v in config.items() if k not in checked}, **checked}
    handler_config.setdefault("__plugin_id", str(uuid.uuid4()))
    return handler_config


class Gateway:
    """The real relay on a port, fed with attachments for the configured plugins (what Kong's access does)."""

    def __init__(self, runtime: Runtime, plugins: dict[str, Any]):
        self.runtime = runtime
        self.plugins = plugins
        self.relay = Relay(runtime, {name: module.priority for name, module in loader.load_builtin().items()})
        self.url = ""
        self._served: Served | None = None
        self.session: aiohttp.ClientSession | None = None

    @property
    def quota(self) -> Any:
        return self.plugins["tollgate-cost-quota"].policy

    async def start(self) -> Gateway:
        self._served = await serve(self.relay.handle)
        self.url = self._served.url
        self.session = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self._served is not None:
            await self._served.stop()

    def attach(self, consumer: dict[str, Any] | None = None) -> str:
        identity = {k: consumer[k] for k in ("id", "username") if consumer and consumer.get(k)}
        tokens = [self.runtime.attachments.issue(name, plugin, identity) for name, plugin in self.plugins.items()]
        return ",".join(tokens)

    async def send(self, body: dict[str, Any], *, consumer: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        """POST a chat request; returns (status, headers, parsed JSON or the raw SSE text)."""
        assert self.session is not None
        sent = {HEADER: self.attach(consumer), "Content-Type": "application/json", "X-Real-IP": "10.0.0.1",
                **(headers or {})}
        async with self.session.post(self.url + "/v1/chat/completions", data=orjson.dumps(body),
                                     headers=sent) as answer:
            raw = await answer.read()
            if answer.content_type == "application/json":
                return answer.status, answer.headers, orjson.loads(raw)
            return answer.status, answer.headers, raw.decode()

    async def settle(self) -> None:
        """Let the background work (soft-limit notices, spend index writes) finish."""
        await self.quota.soft.drain()
        await self.quota.index.drain()


@pytest.fixture
async def gateway(fresh_runtime: Runtime) -> AsyncIterator[Any]:
    """``gw = await gateway(quota_config, proxy_config)``: the relay with both plugins (configs as Kong sends them)."""
    made: list[Gateway] = []

    async def make(quota: dict[str, Any], proxy: dict[str, Any]) -> Gateway:
        from tollgate.plugins.cost_quota import Plugin as QuotaPlugin
        from tollgate.plugins.proxy import Plugin as ProxyPlugin

        plugins = {"tollgate-cost-quota": QuotaPlugin(plugin_config("tollgate-cost-quota", quota)),
                   "tollgate-proxy": ProxyPlugin(plugin_config("tollgate-proxy", proxy))}
        gw = await Gateway(fresh_runtime, plugins).start()
        made.append(gw)
        return gw

    yield make
    for gw in made:
        await gw.settle()
        await gw.stop()


def openai_proxy(mock: MockLLM, model: str = "gpt-4o-mini", **options: Any) -> dict[str, Any]:
    return {"route_type": "llm/v1/chat", "auth": {"header_name": "Authorization", "header_value": "Bearer sk-test"},
            "model": {"provider": "openai", "name": model,
                      "options": {"upstream_url": mock.url + "/v1/chat/completions", **options}}}

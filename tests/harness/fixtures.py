"""pytest fixtures for tests that drive a plugin server through the Kong double.

Import them in a conftest.py: ``from tests.harness.fixtures import *  # noqa: F401,F403``

* ``tollgate_process``: factory starting ``tollgate serve`` (temporary socket dir, free
  relay and status ports, stderr captured to ``proc.stderr_path``), waiting until every
  socket accepts and the relay answers ``GET /__tollgate/health``; ``proc.restart()`` /
  ``await proc.arestart()`` kill it and start it again; all are stopped at teardown::

      proc = tollgate_process(plugins_dir=..., redis_url=..., env={...})

* ``kong``: async factory building a started :class:`KongDouble` from a decK-style dict
  pointing at a Tollgate process (one entry per plugin for 3.9, one for all on 3.8)::

      k = await kong(config, process=proc, kong_version="3.9", rpc_timeout=2.0)

  or at explicit ``entries=[...]``. Every double is stopped at teardown.
* ``kong_thread``: the same for synchronous tests (a :class:`KongDoubleThread`).
* ``stock_pdk_server``: factory starting the stock ``kong-python-pluginserver`` on
  fixture plugins (skips the test when kong-pdk is not installed).
* ``upstream``: async factory of a small aiohttp upstream ``(handler) -> base URL``.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import pytest
import pytest_asyncio
from aiohttp import web

from .kong import KongDouble
from .procs import FIXTURE_PLUGINS_DIR, StockPdkServer, TollgateServer, stock_server_bin
from .runner import KongDoubleThread

__all__ = ["tollgate_process", "kong", "kong_thread", "stock_pdk_server", "upstream", "FIXTURE_PLUGINS_DIR"]


@pytest.fixture
def tollgate_process() -> Any:
    made: list[TollgateServer] = []

    def make(*, plugins_dir: str | None = None, redis_url: str | None = None, log_level: str = "info",
             extra_args: tuple = (), env: dict[str, str] | None = None, start: bool = True,
             timeout: float = 30.0) -> TollgateServer:
        proc = TollgateServer(plugins_dir=plugins_dir, redis_url=redis_url, log_level=log_level,
                              extra_args=extra_args, env=env)
        made.append(proc)
        if start:
            proc.start(timeout)
        return proc

    yield make
    for p in made:
        p.cleanup()


def _entries(process: Any, entries: Any, kong_version: str, plugins_for_entries: Any) -> list:
    if entries is not None:
        return list(entries)
    if process is None:
        raise ValueError("give process= or entries=")
    if hasattr(process, "entries"):
        return process.entries(kong_version, plugins_for_entries)
    return [process.entry()]


@pytest_asyncio.fixture
async def kong() -> Any:
    made: list[KongDouble] = []

    async def make(config: dict | None = None, *, process: Any = None, entries: Any = None,
                   kong_version: str = "3.9", entry_plugins: Any = None, **kwargs: Any) -> KongDouble:
        k = KongDouble(_entries(process, entries, kong_version, entry_plugins), config, kong_version=kong_version,
                       **kwargs)
        made.append(k)
        await k.start()
        return k

    yield make
    for k in made:
        await k.stop()


@pytest.fixture
def kong_thread() -> Any:
    made: list[KongDoubleThread] = []

    def make(config: dict | None = None, *, process: Any = None, entries: Any = None, kong_version: str = "3.9",
             entry_plugins: Any = None, **kwargs: Any) -> KongDoubleThread:
        t = KongDoubleThread(_entries(process, entries, kong_version, entry_plugins), config,
                             kong_version=kong_version, **kwargs)
        made.append(t)
        t.start()
        return t

    yield make
    for t in made:
        t.stop()


@pytest.fixture
def stock_pdk_server() -> Any:
    if stock_server_bin() is None:
        pytest.skip("kong-pdk (kong-python-pluginserver) is not installed")
    made: list[StockPdkServer] = []

    def make(plugins: Any, *, start: bool = True, **kwargs: Any) -> StockPdkServer:
        s = StockPdkServer([plugins] if isinstance(plugins, str) else plugins, **kwargs)
        made.append(s)
        if start:
            s.start()
        return s

    yield make
    for s in made:
        s.cleanup()


@pytest_asyncio.fixture
async def upstream() -> Any:
    runners: list[web.AppRunner] = []

    async def make(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> str:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    yield make
    for r in runners:
        await r.cleanup()

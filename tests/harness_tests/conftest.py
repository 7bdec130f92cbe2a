"""Tests of the Kong double itself."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.harness.fixtures import *  # noqa: E402,F401,F403


import pytest  # noqa: E402

from tests.harness.procs import FIXTURE_PLUGINS_DIR, StockPdkServer, TollgateServer, stock_server_bin  # noqa: E402


def _server_kinds() -> list[str]:
    """HARNESS_PLUGIN_SERVER=stock|tollgate|all (default: the stock kong-pdk server when it
    is installed, else ``tollgate serve``)."""
    kind = os.environ.get("HARNESS_PLUGIN_SERVER", "auto")
    if kind == "all":
        return (["stock"] if stock_server_bin() else []) + ["tollgate"]
    if kind == "auto":
        kind = "stock" if stock_server_bin() else "tollgate"
    return [kind]


@pytest.fixture(params=_server_kinds())
async def fixture_entries(request):
    """``await fixture_entries("tag_header", "pdk_probe")``: plugin-server entries (Kong 3.9
    style, one per plugin) for modules of tests/fixtures/kong_pdk_plugins, served by the
    stock kong-pdk server or by ``tollgate serve``. ``fixture_entries.servers`` holds the
    processes (to kill or restart them)."""
    kind = request.param
    servers: list = []

    async def make(*names: str, env: dict | None = None) -> list:
        if kind == "stock":
            entries = []
            for n in names:
                s = StockPdkServer([n], env=env)
                servers.append(s)
                await s.astart()
                entries.append(s.entry())
            return entries
        s = TollgateServer(plugins_dir=FIXTURE_PLUGINS_DIR, env=env)
        servers.append(s)
        try:
            await s.astart()
        except Exception as e:  # pragma: no cover - depends on the state of tollgate serve
            pytest.skip(f"tollgate serve did not start: {e}")
        return s.entries("3.9", names)

    make.servers = servers  # type: ignore[attr-defined]
    make.kind = kind  # type: ignore[attr-defined]
    yield make
    for s in servers:
        s.cleanup()

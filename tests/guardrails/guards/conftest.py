"""The guard service mocks for the guard modules' tests (one server per test module), and guards built the way the
plugin builds them (the schema's defaults filled in)."""

from __future__ import annotations

import pytest_asyncio

from tollgate import schema
from tollgate.plugins.guardrails.guards import build
from tollgate.plugins.guardrails.guards.base import Guard
from tollgate.pluginserver.loader import load_builtin
from tollgate.relay import upstream

from ..mocks import GuardMocks

PLUGIN = load_builtin()["tollgate-guardrails"]


def make(kind: str, settings: dict, **common) -> Guard:
    config = schema.validate(PLUGIN.schema, {"guards": [{"name": kind, "type": kind, kind: settings, **common}]})
    return build(config)[0]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def mocks():
    server = GuardMocks()
    await server.start()
    yield server
    await upstream.close()
    await server.stop()


@pytest_asyncio.fixture(loop_scope="module", autouse=True)
async def fresh(mocks):
    mocks.reset()
    yield

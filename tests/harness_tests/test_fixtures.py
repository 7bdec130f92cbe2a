"""The fixtures other tests use: ``tollgate_process`` and ``kong`` (and the thread runner)."""

from __future__ import annotations

import os

import pytest
from aiohttp import web

from tests.harness.procs import FIXTURE_PLUGINS_DIR


@pytest.fixture
async def echo(upstream):
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"headers": {k.lower(): v for k, v in request.headers.items()}})

    return await upstream(handler)


def cfg(url: str) -> dict:
    return {"_format_version": "3.0", "services": [{"name": "s", "url": url, "routes": [
        {"name": "r", "paths": ["/"], "plugins": [{"name": "tag_header", "config": {"tag": "tg"}}]}]}]}


async def test_tollgate_process_and_kong_factories(tollgate_process, kong, echo):
    try:
        proc = tollgate_process(plugins_dir=FIXTURE_PLUGINS_DIR)
    except Exception as e:  # pragma: no cover - depends on the state of tollgate serve
        pytest.skip(f"tollgate serve did not start: {e}")
    names = proc.plugin_names
    assert "tollgate-proxy" in names and "tag_header" in names
    for n in names:
        assert os.path.exists(proc.socket_path(n))
    assert os.path.exists(proc.socket_path())  # the all-plugins socket (Kong 3.0-3.8)
    assert os.path.exists(proc.stderr_path)
    assert len(proc.entries("3.9")) == len(names) and len(proc.entries("3.8")) == 1

    k = await kong(cfg(echo), process=proc)  # one entry per plugin, every plugin registered
    assert set(names) <= set(k.registered)
    r = await k.request("GET", "/x")
    assert r.status == 200 and r.json()["headers"]["x-tag-a"] == "tg"

    first = proc.pid
    await proc.arestart()  # killed and started again: Kong's cached instance is gone there
    assert proc.pid != first
    r = await k.request("GET", "/x")
    assert r.status == 200 and r.json()["headers"]["x-tag-a"] == "tg"
    assert k.log_lines(contains="no plugin instance")

    k38 = await kong(cfg(echo), process=proc, kong_version="3.8")
    assert set(names) <= set(k38.registered)
    r = await k38.request("GET", "/x")
    assert r.status == 200 and r.json()["headers"]["x-tag-a"] == "tg"

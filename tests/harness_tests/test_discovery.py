"""``kong start`` as the double does it: query commands, registration per Kong version,
enabled-but-not-installed, and the plugin-server process Kong supervises."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time

import pytest
from aiohttp import web

from tests.harness import KongDouble, KongStartError, PluginServerEntry
from tests.harness.servers import wait_for_socket

from .fakeserver import FakeServer, plugin_info, query_cmd_printing


@pytest.fixture
async def ok_upstream(upstream):
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"headers": {k.lower(): v for k, v in request.headers.items()}})

    return await upstream(handler)


def entry(name, document, socket="/nonexistent.socket", **kw):
    return PluginServerEntry(name=name, socket=socket, query_cmd=query_cmd_printing(document), **kw)


async def test_both_dump_forms_are_accepted():
    a = entry("a", [plugin_info("a")])
    b = entry("b", {"Protocol": "MsgPack:1", "Plugins": [plugin_info("b", 10)]})
    k = KongDouble([a, b], wait_for_sockets=0)
    await k.start()
    try:
        assert set(k.registered) == {"a", "b"} and k.registered["b"].priority == 10
        assert {"a", "b", "key-auth"} <= set(k.handlers)
    finally:
        await k.stop()


async def test_kong_39_registers_only_the_first_plugin_of_a_dump_and_38_all():
    doc = [plugin_info("first"), plugin_info("second")]
    k = KongDouble([entry("both", doc)], wait_for_sockets=0, kong_version="3.9")
    await k.start()
    await k.stop()
    assert list(k.registered) == ["first"]
    k = KongDouble([entry("both", doc)], wait_for_sockets=0, kong_version="3.8")
    await k.start()
    await k.stop()
    assert list(k.registered) == ["first", "second"]


async def test_not_installed_plugin_stops_start():
    doc = [plugin_info("first"), plugin_info("second")]
    k = KongDouble([entry("both", doc)], plugins=["bundled", "first", "second"], wait_for_sockets=0)
    with pytest.raises(KongStartError, match="on plugin 'second': second plugin is enabled but not installed"):
        await k.start()


@pytest.mark.parametrize("stdout", ["", "not json", "42", '"a string"', '{"Plugins": [1]}'])
async def test_bad_query_output_stops_start(stdout):
    e = PluginServerEntry(name="bad", socket="/x.socket",
                          query_cmd=[sys.executable, "-c", f"import sys; sys.stdout.write({stdout!r})"])
    with pytest.raises(KongStartError, match="failed loading external plugins"):
        await KongDouble([e], wait_for_sockets=0).start()


async def test_missing_query_binary_stops_start():
    e = PluginServerEntry(name="bad", socket="/x.socket", query_cmd=["/nonexistent/query"])
    with pytest.raises(KongStartError):
        await KongDouble([e], wait_for_sockets=0).start()


async def test_kong_38_one_socket_many_plugins_share_one_msg_id_counter(ok_upstream):
    srv = await FakeServer("multi", phases=("access",)).start()
    try:
        doc = [plugin_info("pa", 20), plugin_info("pb", 10)]
        cfg = {"_format_version": "3.0", "services": [{"name": "s", "url": ok_upstream, "routes": [
            {"name": "r", "paths": ["/"], "plugins": [{"name": "pa"}, {"name": "pb"}]}]}]}
        k = KongDouble([entry("multi", doc, socket=srv.socket)], cfg, kong_version="3.8")
        await k.start()
        try:
            assert (await k.request("GET", "/")).status == 200
        finally:
            await k.stop()
        sent = [m for m in srv.received if m[0] == 0]
        assert [m[1] for m in sent] == list(range(1, len(sent) + 1))  # one counter for the whole entry
        started = [m[3][0]["Name"] for m in sent if m[2] == "plugin.StartInstance"]
        assert started == ["pa", "pb"]  # priority order
    finally:
        await srv.stop()


async def test_kong_39_each_plugin_has_its_own_msg_id_counter(ok_upstream):
    srv = await FakeServer("shared", phases=("access",)).start()
    try:
        cfg = {"_format_version": "3.0", "services": [{"name": "s", "url": ok_upstream, "routes": [
            {"name": "r", "paths": ["/"], "plugins": [{"name": "pa"}, {"name": "pb"}]}]}]}
        entries = [entry("pa", [plugin_info("pa", 20)], socket=srv.socket),
                   entry("pb", [plugin_info("pb", 10)], socket=srv.socket)]
        k = KongDouble(entries, cfg, kong_version="3.9")
        await k.start()
        try:
            assert (await k.request("GET", "/")).status == 200
        finally:
            await k.stop()
        sent = [(m[1], m[2]) for m in srv.received if m[0] == 0]
        assert sent == [(1, "plugin.StartInstance"), (2, "plugin.HandleEvent"),
                        (1, "plugin.StartInstance"), (2, "plugin.HandleEvent")]
    finally:
        await srv.stop()


SERVE_SCRIPT = r"""
import os, socket, sys, time
path, pidfile = sys.argv[1], sys.argv[2]
with open(pidfile, "a") as f:
    f.write(f"{os.getpid()}\n")
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen()
print("serving", flush=True)
while True:
    time.sleep(1)
"""


async def test_start_cmd_is_supervised_like_kong():
    d = tempfile.mkdtemp(prefix="sup-")
    sock, pids = os.path.join(d, "p.socket"), os.path.join(d, "pids")
    e = PluginServerEntry(name="p", socket=sock, query_cmd=query_cmd_printing([plugin_info("p")]),
                          start_cmd=[sys.executable, "-c", SERVE_SCRIPT, sock, pids])
    k = KongDouble([e])
    await k.start()
    try:
        sup = k.plugin_server("p")
        first = sup.proc.pid
        sup.kill()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (sup.proc.pid == first or sup.proc.returncode is not None):
            await asyncio.sleep(0.05)
        assert sup.proc.pid != first and sup.starts == 2
        assert await wait_for_socket(sock, 5)  # the new process serves
        await asyncio.sleep(0.1)
        assert any("serving" in r.message for r in k.log_lines(level="info"))
        last = sup.proc
    finally:
        await k.stop()
    assert last.returncode is not None  # SIGTERM at stop
    assert len(open(pids).read().split()) == 2


async def test_start_cmd_that_dies_is_restarted_at_most_once_a_second():
    e = PluginServerEntry(name="p", socket="/nonexistent.socket", query_cmd=query_cmd_printing([plugin_info("p")]),
                          start_cmd=[sys.executable, "-c", "raise SystemExit(1)"])
    k = KongDouble([e], wait_for_sockets=0)
    await k.start()
    await asyncio.sleep(2.2)
    starts = k.plugin_server("p").starts
    await k.stop()
    assert 2 <= starts <= 4

"""Replay of the capture in tests/harness/traces: the double must say to a plugin server exactly what real
Kong 3.9.3 said (after the normalisation documented in tests/harness/trace.py).

Set-up as in the capture: consumer alice (custom_id team-a, key alice-key); route chat
(/v1: key-auth + trace_plugin {message: traced}); route anon (/anon: trace_plugin); the
plugin server started outside Kong; the same entity ids as the capture. The same
requests, sent byte for byte as curl sent them, then the same server restart (with
the plugin's second version) and the 20 KB body.

Runs against the stock kong-pdk server and against ``tollgate serve``.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from tests.harness import KongDouble
from tests.harness.procs import FIXTURE_PLUGINS_DIR, StockPdkServer, TollgateServer, stock_server_bin
from tests.harness.trace import diff, load_trace, normalize

SERVICE_ID = "c01215fb-acce-5a3f-8bfa-a00f3f3c9618"
CHAT_ID = "e4b88d1c-623f-5a40-b298-b23cfabd46de"
ANON_ID = "6fd1bc4b-c2e1-527b-b8f7-6b0a6089b9b6"
CHAT_PLUGIN_ID = "2301a745-a2a3-5579-82cf-6b6041cc3b38"
ANON_PLUGIN_ID = "c76dea49-a391-5552-8e19-a73054f061be"
ALICE_ID = "b32379d9-3d28-5683-a79c-72139be6e34f"
ALICE_KEY_ID = "cf024b0a-b211-4d4d-a27c-0ad63e8d6695"

CHAT_BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"tools":[],"metadata":{}}'
#: the captured upstream answered these paths with bodies of these lengths
UPSTREAM_BODY_LENGTHS = {"/v1/chat/completions?x=1": 51, "/v1/exit": 50, "/anon/x": 48}


def config(upstream_url: str) -> dict:
    return {
        "_format_version": "3.0",
        "services": [{
            "id": SERVICE_ID, "name": "llm", "url": upstream_url,
            "routes": [
                {"id": CHAT_ID, "name": "chat", "paths": ["/v1"], "strip_path": False, "plugins": [
                    {"name": "key-auth"},
                    {"id": CHAT_PLUGIN_ID, "name": "trace_plugin", "config": {"message": "traced"}},
                ]},
                {"id": ANON_ID, "name": "anon", "paths": ["/anon"], "strip_path": False, "plugins": [
                    {"id": ANON_PLUGIN_ID, "name": "trace_plugin"},
                ]},
            ],
        }],
        "consumers": [{"id": ALICE_ID, "username": "alice", "custom_id": "team-a",
                       "keyauth_credentials": [{"id": ALICE_KEY_ID, "key": "alice-key"}]}],
    }


async def curl(port: int, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> int:
    """One request written the way curl 7.88.1 writes it; returns the status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "User-Agent: curl/7.88.1", "Accept: */*"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
    data = await reader.read()  # the double closes (keepalive off, as the capture shows)
    writer.close()
    return int(data.split(b" ", 2)[1])


async def start_upstream() -> tuple[web.AppRunner, str]:
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        n = UPSTREAM_BODY_LENGTHS.get(request.path_qs, 20)
        prefix = b'{"ok": true, "pad": "'
        body = prefix + b"x" * (n - len(prefix) - 2) + b'"}'
        return web.Response(body=body, content_type="application/json",
                            headers={"Server": "BaseHTTP/0.6 Python/3.11.7"})

    app = web.Application(client_max_size=1 << 26)
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


def big_body() -> bytes:
    head = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"'
    tail = b'"}]}'
    return head + b"x" * (20072 - len(head) - len(tail)) + tail


async def replay(server: object, entry_for: callable) -> list[dict]:
    """Run the captured request series through a double in front of ``server``;
    returns the recorded conversation in the trace's format."""
    runner, upstream_url = await start_upstream()
    try:
        kong = KongDouble([entry_for(server)], config(upstream_url), keepalive=False, record_messages=True)
        await kong.start()
        try:
            port = kong.port
            key = [("apikey", "alice-key")]
            assert await curl(port, "POST", "/v1/chat/completions?x=1",
                              key + [("Content-Type", "application/json")], CHAT_BODY) == 200
            await kong.settle()
            assert await curl(port, "GET", "/v1/exit", key) == 200
            await kong.settle()
            assert await curl(port, "POST", "/anon/x", [("Content-Type", "application/x-www-form-urlencoded")],
                              b"plain body") == 200
            await kong.settle()

            # the plugin server is killed and started again, with the plugin's second version
            await server.arestart(env={"TRACE_PLUGIN_EXIT_MATCH": "contains"})  # type: ignore[attr-defined]
            assert await curl(port, "GET", "/v1/exit", key) == 429
            await kong.settle()
            assert await curl(port, "GET", "/v1/exit", key) == 429
            await kong.settle()
            assert await curl(port, "POST", "/v1/chat/completions", [("apikey", "wrong")]) == 401
            await kong.settle()

            # a body over client_body_buffer_size: get_raw_body fails inside Kong
            assert await curl(port, "POST", "/v1/chat/completions",
                              key + [("Content-Type", "application/json")], big_body()) == 500
            await kong.settle()
            return kong.messages_jsonl(), kong
        finally:
            await kong.stop()
    finally:
        await runner.cleanup()


def compare(recorded: list[dict]) -> None:
    from tests.harness.trace import _decode_bytes

    expected = normalize(load_trace())
    actual = normalize([_decode_bytes(m) for m in recorded])
    problems = diff(expected, actual)
    assert not problems, "\n".join(problems)


@pytest.mark.skipif(stock_server_bin() is None, reason="kong-pdk is not installed")
async def test_trace_replay_stock_kong_pdk_server() -> None:
    server = StockPdkServer(["trace_plugin"], env={"TRACE_PLUGIN_EXIT_MATCH": "exact"})
    await server.astart()
    try:
        recorded, kong = await replay(server, lambda s: s.entry())
    finally:
        server.cleanup()
    compare(recorded)
    # what the capture shows beyond the messages themselves
    assert kong.log_lines(contains="no plugin instance"), "the retry after the restart was not logged"
    assert kong.log_lines(contains="attempt to get length of local 'str'")


async def test_trace_replay_tollgate() -> None:
    server = TollgateServer(plugins_dir=FIXTURE_PLUGINS_DIR, env={"TRACE_PLUGIN_EXIT_MATCH": "exact"})
    try:
        await server.astart()
    except Exception as e:  # the Tollgate process does not run yet
        server.cleanup()
        pytest.skip(f"tollgate serve did not start: {e}")
    try:
        recorded, _ = await replay(server, lambda s: s.entries("3.9", ["trace_plugin"])[0])
    finally:
        server.cleanup()
    compare(recorded)


def test_trace_is_what_the_readme_says() -> None:
    """Guards the replay's assumptions about the capture itself."""
    lines = load_trace()
    kong_msgs = [line["msg"] for line in lines if line.get("dir") == "kong->server"]
    ids = [m[1] for m in kong_msgs]
    assert ids == sorted(ids) and 142 not in ids  # msgid 142 was spent on the failed pack
    steps = [m for m in kong_msgs if m[2].startswith("plugin.Step")]
    assert all(set(m[3][0]) <= {"EventId", "Data"} for m in steps)
    assert any(m[2] == "plugin.StepMultiMap" and m[3][0].get("Data") == {} for m in steps)
    assert not any(m[2] == "plugin.StepError" for m in kong_msgs)
    assert json.loads(kong_msgs[0][3][0]["Config"])["__plugin_id"] == CHAT_PLUGIN_ID

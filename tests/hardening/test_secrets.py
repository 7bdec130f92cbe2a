"""No configured key and no Authorization value reaches any output channel, under bad input and provider faults.

The provider key comes from a Kong vault reference (``{vault://env/...}``) resolved in the Tollgate process; the
faulty provider echoes the key it was called with in its errors and streams, as real providers do ("Incorrect API
key provided: ..."). Channels searched: every answer's body and headers, the Tollgate process's log (plugin server,
relay, analytics lines), its /metrics, the Kong double's own log and the entries Kong's log plugins get
(``kong.log.serialize``, with the tollgate-analytics companion's ``ai.*``).
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.harness.kong import KongDouble
from tests.harness.lua import LuaPlugin
from tests.harness.procs import TollgateServer
from tests.mcp.upstreams import echo_server, mcp_upstream
from tests.proxy.e2e import CaptureLog
from tollgate.mock import MockLLM

# Not key-shaped on purpose: only the registered secrets, not the "sk-..." pattern, can keep them out.
VAULT_KEY = "Bearer vault-token-Zq8XwP2mLr5T"
PLAIN_KEY = "Bearer plain-token-Hn4Vb7Kc9Jd2"
MCP_KEY = "rest-token-Wm3Qx8Ty6Ua1"
MCP_SERVER_KEY = "Bearer server-token-Dk7Ye2Hq4Nw6"    # an upstream MCP server (mcp SDK) echoes it back
CLIENT_AUTH = "Bearer client-token-Pf5Gh2Rk7Ls9"
SECRETS = [VAULT_KEY, PLAIN_KEY, MCP_KEY, MCP_SERVER_KEY, CLIENT_AUTH]
FRAGMENTS = [s.split("-")[-1] for s in SECRETS]      # a secret cut short still shows its tail
CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hello"}]


def faulty_provider(seen: list[str]):
    async def handle(request: web.Request) -> web.StreamResponse:
        key = request.headers.get("Authorization", "") + request.headers.get("X-Api-Key", "")
        seen.append(key)
        kind = request.path.split("/")[1]
        if kind == "echo401":
            return web.json_response({"error": {"message": f"Incorrect API key provided: {key}.",
                                                "type": "invalid_request_error", "code": "invalid_api_key"}},
                                     status=401)
        if kind == "echo500":
            return web.Response(status=500, text=f"internal error while checking {key}")
        if kind == "garbage":
            return web.Response(body=f"data: {{broken {key}\n\n".encode(),
                                headers={"Content-Type": "text/event-stream"})
        if kind == "midstream":
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None}]}
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            await response.write(f"data: {{\"error\": \"{key}\"".encode())
            return response
        if kind == "badjson":
            return web.Response(text=f"<html>{key}</html>", content_type="text/html")
        if kind == "reset":
            request.transport.close()
            return web.Response()
        if kind == "hang":
            await asyncio.sleep(5)
        return web.json_response({"echo": key})
    return handle


def route(name: str, upstream: str, key: str, **extra) -> dict:
    config = {"route_type": "llm/v1/chat", "timeout": 1, "logging": {"log_statistics": True, "log_payloads": True},
              "auth": {"header_name": "Authorization", "header_value": key},
              "model": {"provider": "openai", "name": "gpt-4o-mini", "options": {"upstream_url": upstream + CHAT}},
              **extra}
    return {"name": name, "paths": [f"/{name}"], "strip_path": True,
            "plugins": [{"name": "tollgate-proxy", "config": config}, {"name": "file-log"},
                        {"name": "tollgate-analytics"}]}


@pytest.fixture
async def env(upstream):
    seen: list[str] = []
    provider = await upstream(faulty_provider(seen))
    async with MockLLM() as mock, mcp_upstream("echo", echo_server()) as echo:
        process = TollgateServer(env={"TG_LEAK_OPENAI_KEY": VAULT_KEY, "TG_LEAK_REST_KEY": MCP_KEY,
                                      "TG_LEAK_MCP_KEY": MCP_SERVER_KEY})
        await process.astart()
        logs = CaptureLog()
        reference = "{vault://env/tg-leak-openai-key}"
        routes = [route("good", mock.url, reference), route("plain", mock.url, PLAIN_KEY),
                  route("unknown-vault", mock.url, "{vault://aws/openai-key}"),
                  route("unset", mock.url, "{vault://env/tg-leak-unset}")]
        routes += [route(kind, f"{provider}/{kind}", reference)
                   for kind in ("echo401", "echo500", "garbage", "midstream", "badjson", "reset", "hang")]
        routes.append({"name": "mcp", "paths": ["/mcp"], "strip_path": True, "plugins": [{"name": "tollgate-mcp", "config": {
            "mode": "conversion-listener", "rest": {"base_url": f"{provider}/echo401",
                                                    "headers": {"X-Api-Key": "{vault://env/tg-leak-rest-key}"}},
            "tools": [{"name": "get_user", "method": "GET", "path": "/users/{id}",
                       "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]}],
            "logging": {"log_payloads": True}}}]})
        routes.append({"name": "mcp-echo", "paths": ["/mcp-echo"], "strip_path": True, "plugins": [{
            "name": "tollgate-mcp", "config": {
                "servers": [{"name": "echo", "url": echo.url, "prefix": "",
                             "headers": {"Authorization": "{vault://env/tg-leak-mcp-key}"}}],
                "logging": {"log_payloads": True}}}]})
        doc = {"_format_version": "3.0", "services": [{"name": "relay", "url": process.relay_url, "retries": 0,
                                                       "routes": routes}]}
        kong = KongDouble(process.entries("3.9", ["tollgate-proxy", "tollgate-mcp"]), doc,
                          bundled={"file-log": logs, "tollgate-analytics": LuaPlugin("tollgate-analytics")})
        await kong.start()
        try:
            yield process, kong, logs, seen, echo
        finally:
            await kong.stop()
            process.cleanup()


async def exchange(http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> str:
    """The whole answer as the client sees it: status line, headers and body."""
    try:
        async with http.post(url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=15)) as answer:
            data = await answer.read()
            return f"{answer.status} {dict(answer.headers)} " + data.decode("utf-8", "replace")
    except aiohttp.ClientPayloadError as exc:     # a stream cut short is also an outcome
        return f"cut: {exc}"


async def test_no_secret_in_any_output_channel(env):
    process, kong, logs, seen, echo = env
    chat = orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES})
    stream = orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True})
    json_headers = {"Content-Type": "application/json", "Authorization": CLIENT_AUTH}
    mcp_call = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                             "params": {"name": "get_user", "arguments": {"id": "7"}}})
    mcp_headers = {**json_headers, "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
    answers = []
    async with aiohttp.ClientSession() as http:
        for name in ("good", "plain", "echo401", "echo500", "garbage", "midstream", "badjson", "reset", "hang"):
            for body in (chat, stream):
                answers.append(await exchange(http, f"{kong.url}/{name}{CHAT}", body, json_headers))
        for body, headers in ((b"{bad json", json_headers), (b"x" * 2_000_000, json_headers),
                              (chat, {**json_headers, "Content-Type": "text/plain"}),
                              (b'{"messages": "\xff"}', json_headers)):
            answers.append(await exchange(http, f"{kong.url}/good{CHAT}", body, headers))
        # straight to the relay with a forged attachment
        answers.append(await exchange(http, process.relay_url + CHAT, chat,
                                      {**json_headers, "x-tollgate-attachment": CLIENT_AUTH}))
        initialize = orjson.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        async with http.post(f"{kong.url}/mcp", data=initialize, headers=mcp_headers) as answer:
            answers.append(await answer.text())
            session = answer.headers.get("Mcp-Session-Id")
        answers.append(await exchange(http, f"{kong.url}/mcp", mcp_call,
                                      {**mcp_headers, **({"Mcp-Session-Id": session} if session else {})}))
        answers.append(await exchange(http, f"{kong.url}/mcp", b"{not json", mcp_headers))
        async with http.post(f"{kong.url}/mcp-echo", data=initialize, headers=mcp_headers) as answer:
            answers.append(await answer.text())
            session = answer.headers.get("Mcp-Session-Id")
        for i, tool in enumerate(("whoami", "refuse", "reject")):
            call = orjson.dumps({"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call",
                                 "params": {"name": tool, "arguments": {}, "_meta": {"progressToken": i}}})
            answers.append(await exchange(http, f"{kong.url}/mcp-echo", call,
                                          {**mcp_headers, **({"Mcp-Session-Id": session} if session else {})}))
        await asyncio.sleep(0.5)                               # log timers and after stages
        async with http.get(f"http://127.0.0.1:{process.status_port}/metrics") as metrics:
            assert metrics.status == 200
            exposition = await metrics.text()

    # the faults happened, with the real keys on the wire to the provider
    assert VAULT_KEY in seen and MCP_KEY in seen
    assert {s.headers.get("authorization") for s in echo.seen if s.method == "tools/call"} == {MCP_SERVER_KEY}
    assert sum("[redacted]" in a for a in answers[-3:]) == 3          # the echo server's three echoes, scrubbed
    assert any(a.startswith("502") or a.startswith("401") for a in answers)
    assert "kong_ai_llm_requests_total" in exposition or "tollgate" in exposition
    channels = {
        "answers": "\n".join(answers),
        "tollgate log": process.stderr_text(),
        "metrics": exposition,
        "kong log": "\n".join(f"{r.level} {r.message}" for r in kong.logs),
        "kong log entries": "\n".join(orjson.dumps(e, default=str).decode() for e in logs.entries),
    }
    assert any(e.get("ai") for e in logs.entries) and '"msg":"ai request"' in channels["tollgate log"]
    for channel, text in channels.items():
        for secret in SECRETS + FRAGMENTS:
            assert secret not in text, f"{secret!r} leaked into {channel}"



async def test_an_unresolvable_reference_fails_the_route_with_a_clear_config_error(env):
    process, kong, _, seen, _ = env
    async with aiohttp.ClientSession() as http:
        for name in ("unknown-vault", "unset"):
            answer = await exchange(http, f"{kong.url}/{name}{CHAT}",
                                    orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}),
                                    {"Content-Type": "application/json"})
            assert answer.startswith("500 "), answer
    log = process.stderr_text()
    assert "auth.header_value: {vault://aws/openai-key}: vault 'aws' is not available" in log
    assert "auth.header_value: {vault://env/tg-leak-unset}: environment variable TG_LEAK_UNSET is not set" in log
    assert seen == []

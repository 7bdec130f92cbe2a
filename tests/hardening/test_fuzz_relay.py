"""Malformed HTTP, JSON and SSE through the Kong double and the real Tollgate process.

Decisions tested here (and written in the proxy's README): a body over the route's ``max_request_body_size`` is a
413 ``request_too_large``, refused before more than the limit is read (the relay never holds more than 64 MiB for
a request whatever the limit); a body that is not JSON (invalid UTF-8, too deeply nested, truncated) is a 400
``invalid_json``; a content type other than JSON is a 415 ``unsupported_media_type``; a provider stream that is not
SSE is a 502. MCP routes get the same refusals as JSON-RPC errors.
"""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import orjson
import psutil
import pytest
import pytest_asyncio
from aiohttp import web
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.gateway.routes import proxy_config
from tests.harness.kong import KongDouble
from tests.harness.procs import TollgateServer
from tollgate.mock import MockLLM

pytestmark = pytest.mark.asyncio(loop_scope="module")

LIMIT = 64 * 1024
json_scalars = st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) \
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=6)
                      | st.dictionaries(st.text(max_size=10), inner, max_size=6), max_leaves=40)
CHAT = "/v1/chat/completions"
GOOD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


class Gateway:
    def __init__(self, process, double, mock_llm, sse: dict):
        self.process, self.double, self.mock_llm, self.sse = process, double, mock_llm, sse

    @property
    def url(self) -> str:
        return self.double.url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env():
    sse = {"body": b"", "type": "text/event-stream"}

    async def provider(request: web.Request) -> web.StreamResponse:
        return web.Response(body=sse["body"], headers={"Content-Type": sse["type"]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", provider)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    provider_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    limit = {"limits": [{"limit": 10_000_000, "window_size": "minute"}]}
    mcp = {"upstream_url": "http://127.0.0.1:9/mcp", "max_request_body_size": LIMIT}
    async with MockLLM() as mock_llm:
        proxy = proxy_config(mock_llm.url + CHAT, max_request_body_size=LIMIT)
        routes = [
            ("/v1", [{"name": "tollgate-token-limit", "config": limit},
                     {"name": "tollgate-guardrails", "config": {"deny_patterns": ["(?i)ignore previous"]}},
                     {"name": "tollgate-proxy", "config": proxy}]),
            ("/sse", [{"name": "tollgate-proxy", "config": proxy_config(provider_url + CHAT)}]),
            ("/mcp", [{"name": "tollgate-mcp", "config": mcp}]),
            ("/mcp-limited", [{"name": "tollgate-token-limit", "config": limit},
                              {"name": "tollgate-mcp", "config": mcp}]),
        ]
        process = TollgateServer()
        await process.astart()
        doc = {"_format_version": "3.0", "services": [{"name": "relay", "url": process.relay_url, "routes": [
            {"name": path.strip("/"), "paths": [path], "strip_path": False, "plugins": plugins}
            for path, plugins in routes]}]}
        double = KongDouble(process.entries("3.9"), doc, client_body_buffer_size=16 * 1024 * 1024)
        await double.start()
        try:
            yield Gateway(process, double, mock_llm, sse)
        finally:
            await double.stop()
            process.cleanup()
            await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="module")
async def gateway(env):
    env.mock_llm.reset()
    yield env
    assert env.process.alive()


async def send(url: str, data: bytes | None, headers: dict[str, str] | None = None, method: str = "POST"):
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url, data=data, headers=headers if headers is not None else {"Content-Type": "application/json"},
                                timeout=aiohttp.ClientTimeout(total=20)) as answer:
            return answer.status, answer.headers, await answer.read()


def openai_error(status: int, body: bytes) -> dict:
    error = orjson.loads(body)["error"]
    assert isinstance(error["message"], str) and error["message"] and isinstance(error["type"], str), body
    assert 400 <= status < 600
    return error


def jsonrpc_error(body: bytes) -> dict:
    answer = orjson.loads(body)
    assert answer["jsonrpc"] == "2.0" and "id" in answer and isinstance(answer["error"]["code"], int), body
    return answer["error"]


@pytest.mark.parametrize("data, headers, status, code", [
    (b"[" * 60_000, None, 400, "invalid_json"),                                      # nesting past any parser
    (b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', None, 400, "invalid_json"),   # invalid UTF-8
    (b'{"messages": [', None, 400, "invalid_json"),
    (b"\x00\x01\x02", None, 400, "invalid_json"),
    (orjson.dumps(GOOD), {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    (orjson.dumps(GOOD), {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
    (orjson.dumps(GOOD), {}, 415, "unsupported_media_type"),
    (b"x" * (LIMIT + 1), None, 413, "request_too_large"),
    (orjson.dumps({**GOOD, "pad": "x" * 10_000_000}), None, 413, "request_too_large"),
])
async def test_bad_bodies_get_clear_openai_errors_and_reach_no_provider(gateway, data, headers, status, code):
    got, _, body = await send(gateway.url + CHAT, data, headers)
    error = openai_error(got, body)
    assert (got, error["code"]) == (status, code), body
    if status == 413:
        assert str(LIMIT) in error["message"] and "max_request_body_size" in error["message"]
    assert gateway.mock_llm.request_count == 0
    assert (await send(gateway.url + CHAT, orjson.dumps(GOOD)))[0] == 200


async def test_a_chunked_body_is_cut_off_at_the_limit(gateway):
    async def chunks():
        for _ in range(200):
            yield b"x" * 65536          # 12.5 MiB if it were all read

    async with aiohttp.ClientSession() as http:
        async with http.post(gateway.url + CHAT, data=chunks(), headers={"Content-Type": "application/json"}) as r:
            assert r.status == 413 and openai_error(r.status, await r.read())["code"] == "request_too_large"


async def test_many_oversize_bodies_at_once_do_not_grow_the_process(gateway):
    rss = psutil.Process(gateway.process.pid).memory_info().rss
    big = b"x" * (8 * 1024 * 1024)
    answers = await asyncio.gather(*(send(gateway.url + CHAT, big) for _ in range(24)))
    assert {status for status, _, _ in answers} == {413}
    grown = psutil.Process(gateway.process.pid).memory_info().rss - rss
    assert grown < 48 * 1024 * 1024, f"RSS grew by {grown / 2**20:.1f} MiB for 24 x 8 MiB bodies"


@FUZZ
@given(data=st.binary(max_size=4000))
async def test_random_bytes_as_a_json_body(gateway, data):
    status, _, body = await send(gateway.url + CHAT, data)
    if status != 200:
        assert status in (400, 413), body
        openai_error(status, body)


@FUZZ
@given(value=values)
async def test_any_json_value_as_the_body(gateway, value):
    status, _, body = await send(gateway.url + CHAT, orjson.dumps(value))
    assert status < 500, body
    if status != 200:
        openai_error(status, body)


@FUZZ
@given(messages=st.lists(values, max_size=4), model=values, stream=values)
async def test_chat_fields_of_any_type(gateway, messages, model, stream):
    status, headers, body = await send(gateway.url + CHAT, orjson.dumps(
        {"model": model, "messages": messages, "stream": stream}))
    assert status < 500, body
    if status != 200:
        openai_error(status, body)


@FUZZ
@given(data=st.binary(max_size=2000))
async def test_mcp_routes_answer_bad_bodies_with_jsonrpc_errors(gateway, data):
    status, _, body = await send(gateway.url + "/mcp", data, MCP_HEADERS)
    assert status < 500, body
    if status >= 400:
        jsonrpc_error(body)


@pytest.mark.parametrize("data, status, code", [
    (b"{not json", 400, -32700), (b"[" * 60_000, 400, -32700), (b'"\xff"', 400, -32700),
    (b"x" * (LIMIT + 1), 413, -32600), (orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping",
                                                      "params": {"pad": "x" * 5_000_000}}), 413, -32600),
])
async def test_mcp_bad_bodies(gateway, data, status, code):
    got, _, body = await send(gateway.url + "/mcp", data, MCP_HEADERS)
    assert (got, jsonrpc_error(body)["code"]) == (status, code), body


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_mcp_wrong_content_type_is_a_jsonrpc_415(gateway, content_type):
    headers = {**MCP_HEADERS, "Content-Type": content_type} if content_type else {"Accept": MCP_HEADERS["Accept"]}
    got, _, body = await send(gateway.url + "/mcp", orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
                              headers)
    assert (got, jsonrpc_error(body)["code"]) == (415, -32600), body


async def test_mcp_routes_get_the_relays_own_refusals_as_jsonrpc(gateway):
    ping = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    # a plugin of the route that did not run (Kong fails open and proxies anyway)
    gateway.double.faults.fail_event("tollgate-token-limit", "access", at_step=0, mode="socket")
    status, _, body = await send(gateway.url + "/mcp-limited", ping, MCP_HEADERS)
    error = jsonrpc_error(body)
    assert status == 403 and error["code"] == -32003 and "tollgate-token-limit" in error["message"]
    # no attachment at all (the plugin never ran, or a request straight to the relay): an MCP client's request
    for headers in (MCP_HEADERS, {"Content-Type": "application/json", "MCP-Protocol-Version": "2025-06-18"}):
        status, _, body = await send(gateway.process.relay_url + "/mcp", ping, headers)
        assert status == 403 and jsonrpc_error(body)["code"] == -32003
    # ... and an OpenAI client's request there still gets OpenAI's shape
    status, _, body = await send(gateway.process.relay_url + CHAT, orjson.dumps(GOOD),
                                 {"Content-Type": "application/json", "Accept": "application/json"})
    assert status == 403 and openai_error(status, body)["code"] == "policy_not_attached"


SSE_LINES = st.sampled_from([b"data: ", b"data: {", b"data: [DONE]", b"event: error", b": comment", b"\n", b"\r\n",
                             b'data: {"choices": []}', b'data: {"choices": [{"delta": 5}]}', b"id: 1", b"retry: x",
                             b'data: {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, '
                             b'"delta": {"content": "hi"}, "finish_reason": null}]}'])


@FUZZ
@given(parts=st.lists(SSE_LINES | st.binary(max_size=40), max_size=12))
async def test_malformed_provider_streams_end_in_a_clear_error(gateway, parts):
    gateway.sse["body"] = b"\n".join(parts)
    status, headers, body = await send(gateway.url + "/sse" + CHAT, orjson.dumps({**GOOD, "stream": True}))
    if status == 200:
        # the stream had begun: it ends with an error event and no [DONE], or it was a complete stream
        assert headers["Content-Type"].startswith("text/event-stream")
        assert body.rstrip().endswith(b"data: [DONE]") or b'"error"' in body, body
    else:
        assert status == 502, body
        assert openai_error(status, body)["code"].startswith("upstream_")


@FUZZ
@given(data=st.binary(max_size=3000))
async def test_malformed_provider_json_is_a_502(gateway, data):
    gateway.sse.update(body=data, type="application/json")
    status, _, body = await send(gateway.url + "/sse" + CHAT, orjson.dumps(GOOD))
    assert status in (200, 502), body
    if status == 502:
        openai_error(status, body)


def raw_http(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


@FUZZ
@given(data=st.binary(max_size=2000) | st.builds(
    lambda line, headers, tail: line + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + tail,
    st.sampled_from([b"POST / HTTP/1.1", b"GET /__tollgate/health HTTP/1.1", b"POST /v1 HTTP/9.9", b"BREW / HTTP/1.1",
                     b"POST " + b"/a" * 5000 + b" HTTP/1.1", b"POST / HTTP/1.1 extra"]),
    st.lists(st.sampled_from([b"Host: x", b"Content-Length: 5", b"Content-Length: -1", b"Content-Length: 99999999999",
                              b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked", b"X: \x00\xff",
                              b"x-tollgate-attachment: forged", b"NoColon", b"Content-Type: application/json"]),
             max_size=6),
    st.binary(max_size=200)))
async def test_malformed_http_to_the_relay_never_gets_a_5xx_and_the_relay_keeps_serving(gateway, data):
    loop = asyncio.get_running_loop()
    answer = await loop.run_in_executor(None, raw_http, gateway.process.relay_port, data)
    if answer:
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1."), answer[:200]
        assert int(status_line.split()[1]) < 500, answer[:300]
    status, _, _ = await send(gateway.process.relay_url + "/__tollgate/health", None, {}, "GET")
    assert status == 200

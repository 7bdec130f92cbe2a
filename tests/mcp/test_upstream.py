"""The gateway as an upstream MCP client, against hand-written servers that misbehave in the ways real ones do."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from tollgate.plugins.mcp.jsonrpc import REQUEST_TIMEOUT, UPSTREAM_ERROR, JsonRpcError
from tollgate.plugins.mcp.sessions import SharedUpstreamSessions
from tollgate.plugins.mcp import upstream as upstream_module
from tollgate.plugins.mcp.upstream import Upstream
from tollgate.relay import upstream as http


@pytest.fixture(autouse=True)
async def close_client_session():
    yield
    await http.close()


def sessions():
    return SharedUpstreamSessions().for_consumer("c")


async def _open_sse(request: web.Request) -> web.StreamResponse:
    """The server's answer to ``request``, begun as an SSE stream."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    return response


async def test_sse_answers_with_notifications_and_crlf_framing(upstream):
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        response = await _open_sse(request)
        note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}
        await response.write(b": keepalive\r\n\r\nevent: message\r\ndata: " + json.dumps(note).encode() + b"\r\n\r\n")
        answer = {"jsonrpc": "2.0", "id": body["id"], "result": {"tools": []}}
        text = json.dumps(answer)
        await response.write(f"id: 7\ndata:{text[:10]}\ndata: {text[10:]}\n\n".encode())   # split over two data lines
        return response

    url = await upstream(handle)
    notes = []

    class Channel:
        async def notify(self, message):
            notes.append(message)

        async def ask(self, message):
            raise AssertionError("nothing to ask here")

    server = Upstream("s", url + "/mcp", "", protocol="2026-07-28")
    assert await server.request("tools/list", {}, sessions(), Channel()) == {"tools": []}
    assert notes == [{"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}]


async def test_an_expired_upstream_session_is_reopened_once(upstream):
    opened: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        if body["method"] == "initialize":
            opened.append(f"s{len(opened) + 1}")
            return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "x", "version": "1"}}},
                headers={"Mcp-Session-Id": opened[-1]})
        if "id" not in body:
            return web.Response(status=202)
        if request.headers.get("Mcp-Session-Id") != opened[-1]:
            return web.json_response({"jsonrpc": "2.0", "id": None, "error": {"code": -32600,
                                                                                "message": "Session not found"}},
                                     status=404)
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": {"ok": opened[-1]}})

    url = await upstream(handle)
    kept = sessions()
    server = Upstream("s", url, "", protocol="2025-06-18")
    assert await server.request("ping", {}, kept) == {"ok": "s1"}
    opened.append("s2")                                # the upstream restarted and forgot s1
    assert await server.request("ping", {}, kept) == {"ok": "s3"}   # 404, then a new session, then the answer
    assert opened == ["s1", "s2", "s3"] and await kept.get("s") == "s3"


async def test_auto_falls_back_to_sessions_when_discover_is_refused(upstream):
    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        if body["method"] == "server/discover":
            return web.json_response({"jsonrpc": "2.0", "id": "server-error", "error": {
                "code": -32600, "message": "Bad Request: Missing session ID"}}, status=400)
        if body["method"] == "initialize":
            return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "x", "version": "1"}}})
        if "id" not in body:
            return web.Response(status=202)
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": {
            "version": request.headers.get("MCP-Protocol-Version")}})

    server = Upstream("s", await upstream(handle), "")
    assert await server.request("tools/list", {}, sessions()) == {"version": "2025-06-18"}


async def test_a_failing_probe_is_not_taken_for_an_answer(upstream):
    replies = [web.Response(status=503, text="starting"), None]

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        if replies[0] is not None:
            return replies.pop(0)
        if body["method"] == "server/discover":
            return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": {
                "supportedVersions": ["2026-07-28"], "capabilities": {}}})
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": {
            "version": request.headers.get("MCP-Protocol-Version")}})

    server = Upstream("s", await upstream(handle), "")
    with pytest.raises(JsonRpcError) as first:
        await server.request("tools/list", {}, sessions())
    assert first.value.status == 502
    assert await server.request("tools/list", {}, sessions()) == {"version": "2026-07-28"}   # probed again


@pytest.mark.parametrize("reply,code", [
    (web.Response(status=500, text="<html>oops</html>"), UPSTREAM_ERROR),
    (web.json_response({"jsonrpc": "2.0", "id": 1, "result": "not an object"}), UPSTREAM_ERROR),
])
async def test_answers_that_are_not_json_rpc_are_upstream_errors(upstream, reply, code):
    async def handle(request: web.Request) -> web.Response:
        return reply

    with pytest.raises(JsonRpcError) as caught:
        await Upstream("s", await upstream(handle), "", protocol="2026-07-28").request("tools/list", {}, sessions())
    assert caught.value.code == code and caught.value.status == 502


async def test_an_upstream_error_keeps_its_code_and_a_silent_one_times_out(upstream):
    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        if body["method"] == "slow":
            await asyncio.sleep(5)
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32602, "message": "bad"}})

    server = Upstream("s", await upstream(handle), "", protocol="2026-07-28", timeout=0.3)
    with pytest.raises(JsonRpcError) as own:
        await server.request("tools/call", {"name": "x"}, sessions())
    assert (own.value.code, own.value.message, own.value.status) == (-32602, "bad", 400)
    with pytest.raises(JsonRpcError) as slow:
        await server.request("slow", {}, sessions())
    assert slow.value.code == REQUEST_TIMEOUT and slow.value.status == 504


async def test_a_server_request_to_its_client_is_declined_at_once(upstream):
    declined: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if "error" in body:                                  # the gateway's answer to our elicitation request
            declined.set_result(body)
            return web.Response(status=202)
        response = await _open_sse(request)
        ask = {"jsonrpc": "2.0", "id": "srv-1", "method": "elicitation/create", "params": {"message": "sure?"}}
        await response.write(f"data: {json.dumps(ask)}\n\n".encode())
        answer = await asyncio.wait_for(declined, 2)           # a server that waits for its client
        result = {"content": [{"type": "text", "text": answer["error"]["message"]}]}
        await response.write(f"data: {json.dumps({'jsonrpc': '2.0', 'id': body['id'], 'result': result})}\n\n"
                             .encode())
        return response

    server = Upstream("s", await upstream(handle), "", protocol="2026-07-28", timeout=5)
    result = await server.request("tools/call", {"name": "x"}, sessions())
    assert result["content"][0]["text"] == "elicitation/create is not relayed to this client by the MCP gateway"
    assert (await declined)["id"] == "srv-1" and (await declined)["error"]["code"] == -32601


def _sse_answer(body: dict, text: str = "ok") -> bytes:
    result = {"content": [{"type": "text", "text": text}]}
    return f"event: message\ndata: {json.dumps({'jsonrpc': '2.0', 'id': body['id'], 'result': result})}\n\n".encode()


def _answering_in_sse(peers: list[object], stream_ends_after: float):
    """A server that answers in SSE and ends the stream ``stream_ends_after`` seconds after the answer, noting
    each request's client address (one per connection)."""
    async def handle(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername"))
        body = await request.json()
        response = await _open_sse(request)
        await response.write(_sse_answer(body))
        await asyncio.sleep(stream_ends_after)
        await response.write(b": done\n\n")
        return response
    return handle


async def test_an_sse_answer_keeps_its_connection_once_the_stream_ends(upstream):
    peers: list[object] = []
    # the stream ends a little after the answer, as SDK servers' do
    server = Upstream("s", await upstream(_answering_in_sse(peers, 0.05)), "", protocol="2026-07-28", timeout=5)
    loop = asyncio.get_running_loop()
    for _ in range(3):
        started = loop.time()
        assert (await server.request("tools/call", {"name": "x"}, sessions()))["content"][0]["text"] == "ok"
        assert loop.time() - started < 0.05   # the answer did not wait for the stream's end
        await asyncio.sleep(0.1)
    assert len(peers) == 3 and len(set(peers)) == 1


async def test_an_sse_stream_left_open_after_the_answer_loses_its_connection(upstream, monkeypatch):
    peers: list[object] = []
    monkeypatch.setattr(upstream_module, "DRAIN_S", 0.1)
    server = Upstream("s", await upstream(_answering_in_sse(peers, 3)), "", protocol="2026-07-28", timeout=5)
    for _ in range(2):
        assert (await asyncio.wait_for(server.request("tools/call", {"name": "x"}, sessions()), 1))["content"]
        await asyncio.sleep(0.2)
    assert len(set(peers)) == 2


async def test_an_sse_line_over_the_cap_is_a_json_rpc_error(upstream, monkeypatch):
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        response = await _open_sse(request)
        await response.write(b"data: " + b"x" * 600)          # no line end in sight, in several writes
        await response.write(b"x" * 600)
        await response.write(_sse_answer(body))
        return response

    monkeypatch.setattr(upstream_module, "MAX_SSE_LINE", 1000)
    server = Upstream("s", await upstream(handle), "", protocol="2026-07-28", timeout=5)
    with pytest.raises(JsonRpcError) as failed:
        await server.request("tools/call", {"name": "x"}, sessions())
    assert failed.value.code == UPSTREAM_ERROR and failed.value.status == 502
    assert "longer than 1000 bytes" in failed.value.message


async def test_the_deadline_covers_what_an_sse_answer_sends_the_client(upstream):
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        response = await _open_sse(request)
        note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}
        await response.write(f"data: {json.dumps(note)}\n\n".encode())
        await asyncio.sleep(0.5)
        await response.write(_sse_answer(body))
        return response

    class StuckClient:
        async def notify(self, message):
            await asyncio.sleep(5)            # a client that does not read its stream

        async def ask(self, message):
            return None

    server = Upstream("s", await upstream(handle), "", protocol="2026-07-28", timeout=0.3)
    started = asyncio.get_running_loop().time()
    with pytest.raises(JsonRpcError) as slow:
        await server.request("tools/call", {"name": "x"}, sessions(), StuckClient())
    assert slow.value.code == REQUEST_TIMEOUT and asyncio.get_running_loop().time() - started < 1

"""tollgate-mcp end to end: the official `mcp` SDK client (2026-07-28 and, with ``mode="legacy"``, the 2025 session
generation) and raw JSON-RPC -> the Kong double (key-auth) -> two real ``tollgate serve`` processes on one Redis
-> MCP servers built with the SDK, and a REST API exposed as tools."""

from __future__ import annotations

import asyncio
import time

import pytest
from mcp.shared.exceptions import MCPError

from .env import KEYS, Env, sdk_client
from .rpc import call, in_session, modern, open_session, post, send

pytestmark = pytest.mark.asyncio(loop_scope="module")


# -- the 2026-07-28 generation (the SDK's default) -------------------------------------------------------------------

async def test_sdk_client_lists_and_calls_one_upstream_statelessly(env: Env):
    before = len(env.weather.seen)
    async with sdk_client(env.url("one")) as client:
        tools = await client.list_tools()
        result = await client.call_tool("forecast", {"city": "Paris"})
    assert {t.name for t in tools.tools} == {"forecast", "purge_cache", "slow", "count", "regional"}
    assert result.content[0].text == "sunny in Paris" and not result.is_error
    seen = env.weather.seen[before:]
    call_seen = next(s for s in seen if s.method == "tools/call")
    assert call_seen.headers["mcp-method"] == "tools/call" and call_seen.headers["mcp-name"] == "forecast"
    assert call_seen.headers["mcp-protocol-version"] == "2026-07-28"
    assert all("apikey" not in s.headers and "mcp-session-id" not in s.headers for s in seen)  # no client secrets


async def test_listener_aggregates_servers_with_prefixes_and_bridges_to_a_2025_server(env: Env):
    before = len(env.calc.seen)
    async with sdk_client(env.url("all"), user="bob") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        added = await client.call_tool("calc_add", {"a": 2, "b": 40})
        weather = await client.call_tool("weather_forecast", {"city": "Oslo"})
        numbers = await client.call_tool("calc_forecast", {"days": 3})
    assert names == {"weather_forecast", "weather_purge_cache", "weather_slow", "weather_count", "weather_regional",
                     "calc_add",
                     "calc_forecast", "get_user"}          # create_user is alice's only
    assert added.structured_content == {"result": 42}
    assert weather.content[0].text == "sunny in Oslo" and numbers.content[0].text == "3 days of numbers"
    # calc speaks 2025-11-25 only (config): the gateway opened a session there for this stateless client.
    seen = env.calc.seen[before:]
    assert [s.method for s in seen][:2] == ["initialize", "notifications/initialized"]
    calls = [s for s in seen if s.method in ("tools/list", "tools/call")]
    assert calls and all(s.headers["mcp-session-id"] and s.headers["mcp-protocol-version"] == "2025-11-25"
                         and "mcp-method" not in s.headers for s in calls)


async def test_client_credentials_reach_the_upstream_only_with_passthrough_credentials(env: Env):
    token = {"apikey": KEYS["alice"], "Authorization": "Bearer upstream-token-123"}
    for route, expected in (("one", None), ("pass", "Bearer upstream-token-123")):
        before = len(env.weather.seen)
        async with sdk_client(env.url(route), headers=token) as client:
            await client.call_tool("forecast", {"city": "Rome"})
        (called,) = [s for s in env.weather.seen[before:] if s.method == "tools/call"]
        assert called.headers.get("authorization") == expected and "apikey" not in called.headers


async def test_fifty_concurrent_sdk_clients_on_two_processes(env: Env):
    async def one(i: int) -> str:
        async with sdk_client(env.url("all", i % 2), user=("alice", "bob")[i % 2]) as client:
            return (await client.call_tool("calc_add", {"a": i, "b": 1})).structured_content["result"]

    assert await asyncio.gather(*(one(i) for i in range(50))) == [i + 1 for i in range(50)]


async def test_prompts_and_resources_pass_through_the_gateway(env: Env):
    async with sdk_client(env.url("all")) as client:
        prompts = await client.list_prompts()
        prompt = await client.get_prompt("weather_greet", {"name": "Ada"})
        resources = await client.list_resources()
        read = await client.read_resource("weather://stations")
    assert [p.name for p in prompts.prompts] == ["weather_greet"]
    assert prompt.messages[0].content.text == "Say hello to Ada"
    assert [str(r.uri) for r in resources.resources] == ["weather://stations"]
    assert read.contents[0].text == "KSFO,KJFK"


async def test_mcp_param_headers_reach_the_upstream_that_declared_them(env: Env):
    async with sdk_client(env.url("all")) as client:
        await client.list_tools()                     # the client learns which argument has a header
        before = len(env.weather.seen)
        result = await client.call_tool("weather_regional", {"region": "eu-west"})
    assert result.content[0].text == "served from eu-west" and not result.is_error
    (called,) = [s for s in env.weather.seen[before:] if s.method == "tools/call"]
    assert called.headers["mcp-param-region"] == "eu-west" and called.headers["mcp-name"] == "regional"


async def test_progress_notifications_reach_the_sdk_client_as_sse(env: Env):
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async with sdk_client(env.url("one")) as client:
        result = await client.call_tool("count", {"steps": 3}, progress_callback=on_progress)
    assert result.content[0].text == "counted 3"
    assert progress == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


# -- the 2025 session generation --------------------------------------------------------------------------------------

async def test_sdk_legacy_client_uses_a_session_and_ends_it(env: Env):
    before = len(env.calc.seen)
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with sdk_client(env.url("all"), mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        added = await client.call_tool("calc_add", {"a": 1, "b": 2})
        counted = await client.call_tool("weather_count", {"steps": 2}, progress_callback=on_progress)
    assert "calc_add" in names and "create_user" in names      # alice may create users
    assert added.structured_content == {"result": 3}
    assert counted.content[0].text == "counted 2" and progress == [1, 2]    # an SSE answer with event ids
    seen = env.calc.seen[before:]
    upstream_session = next(s.headers["mcp-session-id"] for s in seen if s.method == "tools/call")
    # Ending the client's session ends the one the gateway opened upstream for it.
    assert any(s.http_method == "DELETE" and s.headers.get("mcp-session-id") == upstream_session for s in seen)


async def test_one_session_served_alternately_by_two_processes(env: Env, http):
    url0, url1 = env.url("all", 0), env.url("all", 1)
    before = len(env.calc.seen)
    session = await open_session(http, url0)
    for i in range(6):
        reply = await post(http, (url0, url1)[i % 2], call("calc_add", {"a": i, "b": 1}, i), in_session(session))
        assert reply.status == 200, reply.text
        assert reply.json()["result"]["structuredContent"] == {"result": i + 1}
        assert reply.headers["Mcp-Session-Id"] == session
        assert "resultType" not in reply.json()["result"]          # a 2025 client gets a 2025 result
    # Both processes used the one upstream session kept with the client's session in Redis.
    seen = env.calc.seen[before:]
    assert [s.method for s in seen].count("initialize") == 1
    assert len({s.headers["mcp-session-id"] for s in seen if s.method == "tools/call"}) == 1
    ended = await send(http, "DELETE", url1, in_session(session))
    assert ended.status == 200
    gone = await post(http, url0, call("calc_add", {"a": 1, "b": 1}), in_session(session))
    assert gone.status == 404 and gone.error["code"] == -32600


async def test_a_session_belongs_to_the_consumer_that_opened_it(env: Env, http):
    session = await open_session(http, env.url("all"), user="alice")
    stolen = await post(http, env.url("all", 1), call("calc_add", {"a": 1, "b": 1}), in_session(session), user="bob")
    assert stolen.status == 404 and stolen.error["message"] == "Session not found"


async def test_session_requests_need_a_known_session(env: Env, http):
    missing = await post(http, env.url("all"), {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert missing.status == 400 and missing.error["code"] == -32600
    unknown = await post(http, env.url("all"), {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                         in_session("no-such-session"))
    assert unknown.status == 404
    no_session_delete = await send(http, "DELETE", env.url("all"))
    assert no_session_delete.status == 400


async def test_sse_answer_in_a_session_carries_progress_then_the_result(env: Env, http):
    session = await open_session(http, env.url("one"))
    body = call("count", {"steps": 2}, 7)
    body["params"]["_meta"] = {"progressToken": "tok-1"}
    streamed = await post(http, env.url("one"), body, in_session(session))
    assert streamed.status == 200 and streamed.headers["Content-Type"].startswith("text/event-stream")
    events = streamed.events()
    assert [e.get("method") for e in events] == ["notifications/progress", "notifications/progress", None]
    assert events[0]["params"]["progressToken"] == "tok-1"
    assert events[-1]["id"] == 7 and events[-1]["result"]["content"][0]["text"] == "counted 2"
    # A client that accepts only JSON gets one JSON answer (the progress is dropped, not the result).
    plain = await post(http, env.url("one"), body, in_session(session), accept="application/json")
    assert plain.headers["Content-Type"].startswith("application/json")
    assert plain.json()["result"]["content"][0]["text"] == "counted 2"


async def test_batches_only_where_the_version_has_them(env: Env, http):
    batch = [call("calc_add", {"a": 1, "b": 1}, 1), {"jsonrpc": "2.0", "id": 2, "method": "ping"}]
    old = await open_session(http, env.url("all"), version="2025-03-26")
    answered = await post(http, env.url("all", 1), batch, in_session(old, "2025-03-26"))
    assert answered.status == 200
    assert [(a["id"], "result" in a) for a in answered.json()] == [(1, True), (2, True)]
    new = await open_session(http, env.url("all"), version="2025-06-18")
    refused = await post(http, env.url("all"), batch, in_session(new))
    assert refused.status == 400 and refused.error["code"] == -32600
    stateless = await post(http, env.url("all"), [modern("ping")[0]], modern("ping")[1])
    assert stateless.status == 400 and stateless.error["code"] == -32600


# -- governance ---------------------------------------------------------------------------------------------------------

async def test_denied_tools_are_hidden_and_their_calls_refused_with_403(env: Env, http):
    async with sdk_client(env.url("one"), user="bob") as bob:
        bob_tools = {t.name for t in (await bob.list_tools()).tools}
        with pytest.raises(MCPError) as refused:
            await bob.call_tool("purge_cache", {})
    assert bob_tools == {"forecast", "slow", "count", "regional"}
    assert refused.value.code == -32003 and "not allowed" in refused.value.message
    async with sdk_client(env.url("one"), user="alice") as alice:
        assert "purge_cache" in {t.name for t in (await alice.list_tools()).tools}
        assert (await alice.call_tool("purge_cache", {})).content[0].text == "purged"
    # carol is denied every tool by default_acl: an empty list, and a 403 with a JSON-RPC body on a call.
    body, headers = modern("tools/list")
    listed = await post(http, env.url("one"), body, headers, user="carol")
    assert listed.status == 200 and listed.json()["result"]["tools"] == []
    body, headers = modern("tools/call", {"name": "forecast", "arguments": {"city": "x"}})
    before = len(env.weather.seen)
    forbidden = await post(http, env.url("one"), body, headers, user="carol")
    assert forbidden.status == 403 and forbidden.error["code"] == -32003 and forbidden.json()["id"] == 1
    assert len(env.weather.seen) == before                      # never reached the upstream


async def test_per_tool_call_limit_is_shared_by_both_processes(env: Env, http):
    async def add(node: int, user: str):
        body, headers = modern("tools/call", {"name": "add", "arguments": {"a": 1, "b": 1}})
        return await post(http, env.url("limited", node), body, headers, user=user)

    replies = [await add(i % 2, "carol") for i in range(4)]
    assert [r.status for r in replies] == [200, 200, 200, 429]
    refused = replies[-1]
    assert refused.error["code"] == -32029 and int(refused.headers["Retry-After"]) >= 1
    assert "add call limit reached" in refused.error["message"]
    assert (await add(1, "bob")).status == 200                 # per consumer: bob has his own window
    async with sdk_client(env.url("limited"), user="carol") as client:
        with pytest.raises(MCPError) as limited:
            await client.call_tool("add", {"a": 1, "b": 2})
    assert limited.value.code == -32029


async def test_every_call_leaves_an_audit_record_without_secrets(env: Env, http):
    async with sdk_client(env.url("all"), user="alice") as client:
        await client.call_tool("get_user", {"id": "7"})
        with pytest.raises(MCPError):
            await client.call_tool("nope_tool", {})
    await asyncio.sleep(0.3)                                   # the log handler writes at the end of a loop turn
    records = env.nodes[0].audit()
    consumer = env.nodes[0].kong.declarative.consumer_by_username("alice").id
    ok = [r for r in records if r["name"] == "get_user"][-1]
    assert ok["method"] == "tools/call" and ok["consumer"] == consumer and ok["upstream"] == "rest"
    assert ok["status"] == 200 and ok["error_code"] is None and ok["latency_ms"] > 0 and "arguments" not in ok
    bad = [r for r in records if r["name"] == "nope_tool"][-1]
    assert bad["status"] == 400 and bad["error_code"] == -32602
    logs = "".join(node.proc.stderr_text() for node in env.nodes)
    assert "rest-secret" not in logs and not any(key in logs for key in KEYS.values())
    metrics = env.nodes[0].metrics()
    assert 'tollgate_mcp_requests_total{method="tools/call",name="get_user",outcome="ok"' in metrics
    assert 'name="nope_tool"' not in metrics                   # names nobody serves never become series


async def test_payloads_are_audited_only_where_the_route_says_so(env: Env):
    async with sdk_client(env.url("rest"), user="bob") as client:
        await client.call_tool("get_user", {"id": "payload-check"})
    await asyncio.sleep(0.3)
    record = [r for r in env.nodes[0].audit() if r.get("arguments") == {"id": "payload-check"}][-1]
    assert record["result"]["structuredContent"]["id"] == "payload-check"
    assert all("arguments" not in r for r in env.nodes[0].audit() if r["route_id"] != record["route_id"])


# -- REST APIs as tools --------------------------------------------------------------------------------------------------

async def test_rest_tools_call_the_api_with_encoded_path_parameters(env: Env):
    before = len(env.api.paths)
    async with sdk_client(env.url("rest")) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        user = await client.call_tool("get_user", {"id": "42", "q": "a b&c"})
        created = await client.call_tool("create_user", {"body": {"name": "Ada"}})
        missing = await client.call_tool("get_user", {"id": "nobody"})
        found = await client.call_tool("findUser", {"userId": "a/../b"})
    assert tools["get_user"].input_schema["required"] == ["id"]
    assert tools["findUser"].description == "A user, found through the OpenAPI document"
    assert user.structured_content == {"id": "42", "name": "user 42", "q": "a b&c"}
    assert created.structured_content == {"created": {"name": "Ada"}} and not created.is_error
    assert missing.is_error is False and missing.structured_content["id"] == "nobody"
    assert found.structured_content["id"] == "a%2F..%2Fb"      # one segment, from the OpenAPI tool too
    assert env.api.paths[before:][:2] == ["/api/users/42?q=a+b%26c", "/api/users"]
    assert env.api.headers[-1].get("apikey") is None           # the client's key stays at the gateway


@pytest.mark.parametrize("attack", ["../admin", "..%2F..%2Fadmin", "a/../../admin", "%2e%2e", "..\\admin",
                                    "42/../../../etc/passwd", "..;/admin"])
async def test_path_parameters_never_leave_the_declared_path(env: Env, attack: str):
    before = len(env.api.paths)
    async with sdk_client(env.url("rest")) as client:
        result = await client.call_tool("get_user", {"id": attack})
    (path,) = env.api.paths[before:]
    assert path.startswith("/api/users/") and "/" not in path[len("/api/users/"):]
    assert result.structured_content["id"] == path[len("/api/users/"):]   # one encoded segment, as sent
    assert "outside" not in result.content[0].text


@pytest.mark.parametrize("segment", ["..", ".", ""])
async def test_dot_segments_are_refused_as_invalid_params(env: Env, segment: str):
    before = len(env.api.paths)
    async with sdk_client(env.url("rest")) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("get_user", {"id": segment})
    assert refused.value.code == -32602 and len(env.api.paths) == before


# -- bad input ------------------------------------------------------------------------------------------------------------

async def test_bad_json_rpc_gets_json_rpc_errors_with_the_spec_statuses(env: Env, http):
    url = env.url("one")
    malformed = await post(http, url, b'{"jsonrpc": "2.0", "id": 1, "method": ')
    assert malformed.status == 400 and malformed.json() == {"jsonrpc": "2.0", "id": None, "error": {
        "code": -32700, "message": "Parse error: the body is not valid JSON"}}
    not_rpc = await post(http, url, {"hello": "world"})
    assert not_rpc.status == 400 and not_rpc.error["code"] == -32600
    body, headers = modern("tools/unheard_of")
    unknown = await post(http, url, body, headers)
    assert unknown.status == 404 and unknown.error["code"] == -32601 and unknown.json()["id"] == 1
    body, headers = modern("tools/call", {"name": "no_such_tool", "arguments": {}})
    no_tool = await post(http, env.url("all"), body, headers)          # no server's prefix, no converted tool
    assert no_tool.status == 400 and no_tool.error["code"] == -32602
    body, headers = modern("tools/list")
    del body["params"]["_meta"]
    no_envelope = await post(http, url, body, headers)
    assert no_envelope.status == 400 and no_envelope.error["code"] in (-32602, -32600)
    body, headers = modern("tools/list")
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2099-01-01"
    future = await post(http, url, body, {**headers, "MCP-Protocol-Version": "2099-01-01"})
    assert future.status == 400 and future.error["code"] == -32022
    assert future.error["data"] == {"supported": ["2026-07-28"], "requested": "2099-01-01"}
    notified = await post(http, url, {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {
        "_meta": modern("x")[0]["params"]["_meta"]}}, {"MCP-Protocol-Version": "2026-07-28",
                                                       "Mcp-Method": "notifications/cancelled"})
    assert notified.status == 202 and notified.text == ""
    get = await send(http, "GET", url, {"Accept": "text/event-stream"})
    assert get.status == 405 and "POST" in get.headers["Allow"]
    huge = await post(http, url, {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "x" * 1_100_000}})
    assert huge.status == 413 and huge.error["code"] == -32600


@pytest.mark.parametrize("header,value", [("Mcp-Method", "tools/list"), ("Mcp-Name", "purge_cache"),
                                          ("MCP-Protocol-Version", "2025-06-18"), ("Mcp-Name", None)])
async def test_routing_headers_that_disagree_with_the_body_are_400_header_mismatch(env: Env, http, header, value):
    body, headers = modern("tools/call", {"name": "forecast", "arguments": {"city": "x"}})
    if value is None:
        del headers[header]
    else:
        headers[header] = value
    before = len(env.weather.seen)
    reply = await post(http, env.url("one"), body, headers)
    assert reply.status == 400 and reply.error["code"] == -32020, reply.text
    assert len(env.weather.seen) == before                      # the body is what counts; nothing was called


async def test_non_ascii_names_travel_base64_in_mcp_name(env: Env, http):
    body, headers = modern("tools/call", {"name": "prévision", "arguments": {}})
    headers["Mcp-Name"] = "=?base64?" + __import__("base64").b64encode("prévision".encode()).decode() + "?="
    reply = await post(http, env.url("all"), body, headers)
    assert reply.status == 400 and reply.error["code"] == -32602   # agreed; the tool just does not exist


async def test_a_hung_upstream_ends_in_a_json_rpc_error_within_the_timeout(env: Env, http):
    body, headers = modern("tools/call", {"name": "slow", "arguments": {"seconds": 5}})
    started = time.monotonic()
    reply = await post(http, env.url("slow"), body, headers)
    assert reply.status == 504 and reply.error["code"] == -32001
    assert time.monotonic() - started < 2.5                     # timeout: 1 s


async def test_a_dead_upstream_is_a_502_json_rpc_error(env: Env, http):
    body, headers = modern("tools/list")
    started = time.monotonic()
    reply = await post(http, env.url("dead"), body, headers)
    assert reply.status == 502 and reply.error["code"] == -32050
    assert "apikey" not in reply.text and time.monotonic() - started < 3


# -- resumption ----------------------------------------------------------------------------------------------------------

async def test_a_dropped_sse_answer_resumes_on_another_process_with_last_event_id(env: Env, http):
    session = await open_session(http, env.url("all", 0))         # a redis route: both processes know the session
    body = call("weather_count", {"steps": 6}, 9)
    body["params"]["_meta"] = {"progressToken": "resume-me"}
    headers = {"apikey": KEYS["alice"], "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream", **in_session(session)}
    async with http.post(env.url("all", 0), json=body, headers=headers) as answer:
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        first = b""
        while not first.endswith(b"\n\n"):
            first += await answer.content.readany()
        answer.close()                                          # the client drops the connection mid-answer
    event_id = next(line[3:].strip() for line in first.decode().splitlines() if line.startswith("id:"))
    assert event_id.endswith("-1")
    resumed = await send(http, "GET", env.url("all", 1), {**in_session(session), "Last-Event-ID": event_id,
                                                           "Accept": "text/event-stream"})
    assert resumed.status == 200 and resumed.headers["Content-Type"].startswith("text/event-stream")
    events = resumed.events()
    assert [e["params"]["progress"] for e in events[:-1]] == [2, 3, 4, 5, 6]   # nothing lost, nothing repeated
    assert events[-1]["id"] == 9 and events[-1]["result"]["content"][0]["text"] == "counted 6"
    ids = [line[3:].strip() for line in resumed.text.splitlines() if line.startswith("id:")]
    assert ids == [event_id[:-1] + str(i) for i in range(2, 8)]                 # 6 progress events, then the result


async def test_resumption_needs_the_session_and_a_known_stream(env: Env, http):
    session = await open_session(http, env.url("one"))
    unknown = await send(http, "GET", env.url("one"), {**in_session(session), "Last-Event-ID": "nosuchstream-1"})
    assert unknown.status == 404 and unknown.error["code"] == -32600
    bad = await send(http, "GET", env.url("one"), {**in_session(session), "Last-Event-ID": "garbage"})
    assert bad.status == 400
    other = await open_session(http, env.url("one"), user="bob")
    foreign = await send(http, "GET", env.url("one"), {**in_session(other), "Last-Event-ID": "x-1"}, user="alice")
    assert foreign.status == 404

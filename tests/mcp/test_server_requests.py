"""What an upstream sends its client outside the plain answer, relayed through the gateway (session generation):
sampling and elicitation requests mid-call (the client's answer may reach either Tollgate process), and
``notifications/resources/updated`` after ``resources/subscribe``, on the session's GET stream. The stateless
2026-07-28 generation has neither: its clients are asked nothing mid-call (declined), and it subscribes with
``subscriptions/listen``, which the gateway does not offer."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from .env import KEYS, Env, sdk_client
from .rpc import ACCEPT_BOTH, call, in_session, modern, open_session, post

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_elicitation_reaches_the_session_client_and_its_answer_the_server(env: Env):
    asked: list[str] = []

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async with sdk_client(env.url("desk"), mode="legacy", elicitation_callback=elicit) as client:
        result = await client.call_tool("ask_name", {})
    assert not result.is_error and result.content[0].text == "hello Ada"
    assert asked == ["What is your name?"]


async def test_sampling_reaches_the_session_client_and_its_answer_the_server(env: Env):
    async def sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        return types.CreateMessageResult(role="assistant", model="client-model",
                                         content=types.TextContent(type="text", text=f"{len(params.messages)} msg"))

    async with sdk_client(env.url("desk", 1), mode="legacy", sampling_callback=sample) as client:
        result = await client.call_tool("summarize", {"text": "a long text"})
    assert not result.is_error and result.content[0].text == "summary: 1 msg"


async def test_a_client_that_cannot_be_asked_is_not_asked(env: Env):
    """No elicitation capability at initialize (or a stateless client): the server's request is declined at once."""
    for mode in ("legacy", "auto"):
        async with sdk_client(env.url("desk"), mode=mode) as client:
            with pytest.raises(MCPError, match="elicitation/create is not relayed to this client"):
                await client.call_tool("ask_name", {})


async def test_the_answer_may_reach_the_other_process(env: Env, http):
    """Raw 2025 client: the elicitation arrives on the call's SSE answer from process 0; the client posts its
    answer to process 1; process 0 sends it on to the server and the result follows on the same stream."""
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
            "capabilities": {"elicitation": {}}, "clientInfo": {"name": "raw", "version": "1"}}}
    session = (await post(http, env.url("desk"), init)).headers["Mcp-Session-Id"]
    done = await post(http, env.url("desk"), {"jsonrpc": "2.0", "method": "notifications/initialized"},
                      in_session(session, "2025-11-25"))
    assert done.status == 202
    headers = {"apikey": KEYS["alice"], "Content-Type": "application/json", "Accept": ACCEPT_BOTH,
               **in_session(session, "2025-11-25")}
    events: list[dict[str, Any]] = []
    async with http.post(env.url("desk", 0), data=json.dumps(call("ask_name", {}, 5)), headers=headers) as answer:
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        async for line in answer.content:
            if not line.startswith(b"data:"):
                continue
            message = json.loads(line[5:])
            events.append(message)
            if message.get("method") == "elicitation/create":
                assert message["id"].startswith("tollgate-")
                posted = await post(http, env.url("desk", 1), {"jsonrpc": "2.0", "id": message["id"], "result": {
                    "action": "accept", "content": {"name": "Grace"}}}, in_session(session, "2025-11-25"))
                assert posted.status == 202
            if message.get("id") == 5:
                break
    assert events[-1]["result"]["content"][0]["text"] == "hello Grace"


async def test_subscribed_resource_updates_arrive_on_the_session_stream(env: Env):
    updates: list[str] = []
    updated = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(message.params.uri)
            updated.set()

    async with sdk_client(env.url("desk"), mode="legacy", message_handler=on_message) as client:
        await client.subscribe_resource("desk://inbox")
        assert "desk://inbox" in env.subscriptions
        assert (await client.call_tool("touch", {"uri": "desk://inbox"})).content[0].text == "touched"
        await asyncio.wait_for(updated.wait(), 10)
    assert updates == ["desk://inbox"]


async def test_a_relayed_upstream_stream_stops_when_its_session_expires(env: Env, http):
    """The client subscribes and then goes quiet (no DELETE): once its session has expired in the store (route
    "brief": 3 s after its last write), the process relaying the server's standing stream stops relaying and ends
    our session at the server, which closes that stream."""
    url, version = env.url("brief"), "2025-11-25"
    session = await open_session(http, url, version)
    subscribe = {"jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": {"uri": "desk://inbox"}}
    reply = await post(http, url, subscribe, in_session(session, version))
    subscribed = time.monotonic()
    assert reply.status == 200, reply.text
    ours = next(s.headers["mcp-session-id"] for s in reversed(env.desk.seen) if s.method == "resources/subscribe")

    def seen(http_method: str) -> bool:
        return any(s.http_method == http_method and s.headers.get("mcp-session-id") == ours for s in env.desk.seen)

    await _eventually(lambda: seen("GET"), 5)                # the relay listens on our session's standing stream
    assert not seen("DELETE")
    await _eventually(lambda: seen("DELETE"), 15)             # ended there, after the session expired here
    assert time.monotonic() - subscribed >= 2.5               # not before (the session lived 3 s from its last write)
    assert "upstream standing stream stopped: its client session has expired" in env.nodes[0].proc.stderr_text()
    gone = await post(http, url, subscribe, in_session(session, version))
    assert gone.status == 404


async def _eventually(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_the_stateless_generation_has_no_subscriptions_or_standing_stream(env: Env, http):
    body, headers = modern("resources/subscribe", {"uri": "desk://inbox"})
    reply = await post(http, env.url("desk"), body, headers)
    assert reply.status == 404 and reply.error["code"] == -32601
    async with http.get(env.url("desk"), headers={"apikey": KEYS["alice"], "Accept": "text/event-stream"}) as answer:
        assert answer.status == 405


async def test_stateless_input_required_rounds_pass_through_the_gateway(env: Env):
    """2026-07-28 client and server: the server's question is an input_required result; the client answers by
    calling again with inputResponses and requestState, which the gateway relays as they are."""
    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"name": "Lin"})

    async with sdk_client(env.url("desk26"), elicitation_callback=elicit) as client:
        result = await client.call_tool("welcome", {})
    assert not result.is_error and result.content[0].text == "welcome Lin"

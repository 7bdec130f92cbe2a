"""Kong's conversion-only + listener pair, end to end: tools defined by a conversion-only tollgate-mcp on a REST route
(whose traffic still goes to the REST API), served by a listener on another route (``server.tag``) of either
Tollgate process, with the conversion-only plugin's ACLs, matched on consumers and on their groups (Kong's acl
plugin on the listener's route hands them on)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from .env import KEYS, Env, sdk_client
from .rpc import call, modern, post

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _tools(env: Env, user: str, node: int = 0) -> set[str]:
    async with sdk_client(env.url("shop", node), user=user) as client:
        return {t.name for t in (await client.list_tools()).tools}


async def _published(env: Env, http) -> None:
    """Kong starts the conversion-only instance at its route's first request; its tools then reach the listener."""
    async with http.get(f"{env.nodes[0].kong.url}/api/orders", headers={"apikey": KEYS["bob"]}) as answer:
        assert answer.status == 200 and (await answer.json())["orders"], "the REST route serves its own traffic"
    deadline = time.monotonic() + 15
    while "list_orders" not in await _tools(env, "alice"):
        assert time.monotonic() < deadline, "the listener never served the conversion-only tools"
        await asyncio.sleep(0.5)


async def test_a_listener_serves_the_tools_of_conversion_only_plugins_with_their_acls(env: Env, http):
    await _published(env, http)
    assert await _tools(env, "alice") == {"list_orders", "refund"}        # admin: both
    assert await _tools(env, "bob", node=1) == {"list_orders"}             # developer: refund is admin-only
    assert await _tools(env, "carol") == set()                             # suspended: deny wins over developer
    async with sdk_client(env.url("shop", 1), user="bob") as client:
        result = await client.call_tool("list_orders", {"id": "7"})
    assert not result.is_error and json.loads(result.content[0].text)["user"] == "7"
    assert env.api.paths[-1] == "/api/users/7/orders"


async def test_a_denied_group_gets_403_with_a_json_rpc_body(env: Env, http):
    await _published(env, http)
    for user, tool in (("carol", "list_orders"), ("bob", "refund")):
        body, headers = modern("tools/call", {"name": tool, "arguments": {"id": "1"}})
        reply = await post(http, env.url("shop"), body, headers, user=user)
        assert reply.status == 403 and reply.error["code"] == -32003, reply.text
    body, headers = modern("tools/call", {"name": "refund", "arguments": {"body": {"order": 1}}})
    reply = await post(http, env.url("shop"), body, headers, user="alice")
    assert reply.status == 200 and not reply.json()["result"].get("isError"), reply.text
    assert env.api.paths[-1] == "/api/refunds"


async def test_a_client_cannot_name_its_own_groups(env: Env, http):
    """Kong's acl plugin replaces a client's X-Consumer-Groups with the consumer's groups."""
    await _published(env, http)
    body, headers = modern("tools/call", {"name": "refund", "arguments": {}})
    reply = await post(http, env.url("shop"), body, {**headers, "X-Consumer-Groups": "admin"}, user="bob")
    assert reply.status == 403, reply.text


async def test_the_conversion_only_route_serves_no_mcp(env: Env, http):
    """Its route is a REST route: an MCP request there is the REST API's business, and the plugin adds nothing."""
    reply = await post(http, f"{env.nodes[0].kong.url}/api/orders", call("list_orders", {"id": "7"}))
    assert reply.status == 200 and "jsonrpc" not in reply.json()

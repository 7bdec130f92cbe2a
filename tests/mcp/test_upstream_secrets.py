"""An upstream MCP server that echoes the credential the gateway calls it with: the client never sees it.

    mcp SDK client -> Kong double /mcp/echo -> tollgate-mcp -> relay -> echo server (mcp SDK), called with
    ``Authorization: Bearer <token>`` from the route's config

The server repeats the header in a result (text and structured content), a log notification, a tool error and a
JSON-RPC error; both generations are spoken to it (2026-07-28 self-contained calls, and a 2025 session over SSE).
"""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

import pytest
import pytest_asyncio
from mcp.shared.exceptions import MCPError

from tests.harness import KongDouble
from tests.harness.procs import TollgateServer

from .env import sdk_client
from .upstreams import Upstream, echo_server, mcp_upstream

TOKEN = "echoed-token-Vd3Nq8Rx5Kw2"      # not key-shaped: only its registration can keep it out
AUTHORIZATION = f"Bearer {TOKEN}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway() -> AsyncIterator[tuple[str, Upstream, TollgateServer]]:
    async with contextlib.AsyncExitStack() as stack:
        echo = await stack.enter_async_context(mcp_upstream("echo", echo_server()))
        proc = TollgateServer()
        stack.callback(proc.cleanup)
        await proc.astart()
        config = {"servers": [{"name": "echo", "url": echo.url, "prefix": "",
                               "headers": {"Authorization": AUTHORIZATION}}]}
        kong = KongDouble(proc.entries("3.9", ["tollgate-mcp"]), {"_format_version": "3.0", "services": [
            {"name": "relay", "url": proc.relay_url, "retries": 0, "routes": [
                {"name": "echo", "paths": ["/mcp/echo"], "strip_path": False,
                 "plugins": [{"name": "tollgate-mcp", "config": config}]}]}]})
        await kong.start()
        stack.push_async_callback(kong.stop)
        yield f"{kong.url}/mcp/echo", echo, proc


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_an_upstream_echoing_the_configured_credential_never_passes_it_on(gateway, mode):
    url, echo, proc = gateway
    progress: list[str | None] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message)

    before = len(echo.seen)
    async with sdk_client(url, headers={}, mode=mode) as client:
        result = await client.call_tool("whoami", {}, progress_callback=on_progress)
        failed = await client.call_tool("refuse", {})
        with pytest.raises(MCPError) as rejected:
            await client.call_tool("reject", {})
    # the server did get the credential, and did echo it
    calls = [s for s in echo.seen[before:] if s.method == "tools/call"]
    assert len(calls) == 3 and all(s.headers["authorization"] == AUTHORIZATION for s in calls)
    # the whole header value goes, and the token where it comes alone
    assert result.structured_content == {"authorization": "[redacted]"} and not result.is_error
    assert "[redacted]" in result.content[0].text
    assert failed.is_error and failed.content[0].text.endswith(": credential [redacted] is not allowed")
    assert rejected.value.error.code == -32001
    assert rejected.value.error.message == "invalid token [redacted]"
    assert rejected.value.error.data == {"token": "[redacted]"}
    assert progress == ["called with [redacted]"]
    seen_by_client = repr((result, failed, rejected.value.error, progress))
    assert TOKEN not in seen_by_client and TOKEN not in proc.stderr_text()


async def test_answers_without_the_credential_are_passed_on_as_they_are(gateway):
    url, _, _ = gateway
    async with sdk_client(url, headers={}) as client:
        tools = await client.list_tools()
    assert sorted(t.name for t in tools.tools) == ["refuse", "reject", "whoami"]
    assert next(t.description for t in tools.tools if t.name == "whoami") == "Who the server thinks is calling."

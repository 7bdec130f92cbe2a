"""Raw JSON-RPC over HTTP for the tests that must see the wire: statuses, headers, SSE frames, bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from .env import KEYS

MODERN = "2026-07-28"
ACCEPT_BOTH = "application/json, text/event-stream"


@dataclass
class Reply:
    status: int
    headers: Any
    text: str

    def json(self) -> Any:
        return json.loads(self.text)

    def events(self) -> list[dict[str, Any]]:
        """The JSON-RPC messages of an SSE answer, in order."""
        return [json.loads(line[5:].strip()) for line in self.text.splitlines() if line.startswith("data:")]

    @property
    def error(self) -> dict[str, Any]:
        return self.json()["error"]


def envelope(version: str = MODERN) -> dict[str, Any]:
    return {"io.modelcontextprotocol/protocolVersion": version, "io.modelcontextprotocol/clientCapabilities": {}}


def modern(method: str, params: dict[str, Any] | None = None, request_id: int = 1, **header_overrides: str
           ) -> tuple[dict[str, Any], dict[str, str]]:
    """A 2026-07-28 request and the headers the spec requires for it (override any to break them)."""
    params = {**(params or {}), "_meta": envelope()}
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    name = params.get("name") or params.get("uri")
    if name:
        headers["Mcp-Name"] = name
    headers.update(header_overrides)
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}, headers


async def post(http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None,
               user: str = "alice", accept: str = ACCEPT_BOTH) -> Reply:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    all_headers = {"apikey": KEYS[user], "Content-Type": "application/json", "Accept": accept, **(headers or {})}
    async with http.post(url, data=data, headers=all_headers) as answer:
        return Reply(answer.status, answer.headers, await answer.text())


async def send(http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str] | None = None,
               user: str = "alice") -> Reply:
    async with http.request(method, url, headers={"apikey": KEYS[user], **(headers or {})}) as answer:
        return Reply(answer.status, answer.headers, await answer.text())


async def open_session(http: aiohttp.ClientSession, url: str, version: str = "2025-06-18", user: str = "alice"
                       ) -> str:
    """``initialize`` + ``notifications/initialized``, as a 2025 client does; returns the session id."""
    reply = await post(http, url, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}, user=user)
    assert reply.status == 200, reply.text
    assert reply.json()["result"]["protocolVersion"] == version
    session = reply.headers["Mcp-Session-Id"]
    done = await post(http, url, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                      {"Mcp-Session-Id": session, "MCP-Protocol-Version": version}, user=user)
    assert done.status == 202
    return session


def in_session(session: str, version: str = "2025-06-18") -> dict[str, str]:
    return {"Mcp-Session-Id": session, "MCP-Protocol-Version": version}


def call(name: str, arguments: dict[str, Any], request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}

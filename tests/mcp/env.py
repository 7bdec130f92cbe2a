"""The MCP gateway's end-to-end environment: MCP servers built with the SDK and a REST API on loopback, two real
``tollgate serve`` processes sharing one Redis, a Kong double in front of each (key-auth, then tollgate-mcp), all
started once per test module.

    mcp SDK client / raw aiohttp -> Kong double /mcp/<route> -> access: tollgate-mcp -> relay -> upstream MCP servers
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from dataclasses import dataclass
from typing import Any, AsyncIterator

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.harness import KongDouble
from tests.harness.procs import TollgateServer

from .upstreams import (Issuer, RestApi, Upstream, calc_server, desk_server, issuer, mcp_upstream, rest_api,
                        weather_server)

KEYS = {"alice": "alice-key", "bob": "bob-key", "carol": "carol-key", "demo": "tollgate-demo-key"}
GROUPS = {"alice": ["admin"], "bob": ["developer"], "carol": ["suspended", "developer"]}   # Kong's acls
PLUGIN_IDS = {name: f"6d0c1e2a-0000-4000-8000-{i:012d}" for i, name in
              enumerate(["one", "all", "rest", "slow", "dead", "limited", "oauth", "pass", "shop", "orders", "desk",
                         "desk26", "brief"],
                        start=1)}


OPENAPI = """
openapi: 3.0.3
paths:
  /api/users/{userId}:
    get:
      operationId: findUser
      summary: A user, found through the OpenAPI document
      parameters:
        - $ref: '#/components/parameters/UserId'
components:
  parameters:
    UserId: {name: userId, in: path, required: true, schema: {type: string}}
"""
OAUTH_RESOURCE = "https://gateway.test/mcp/oauth"
OPEN_ROUTES = {"oauth": ["/mcp/oauth", "/.well-known/oauth-protected-resource/mcp/oauth"]}  # no key-auth
# conversion-only routes: REST traffic to the REST API itself; their tools are served by the "shop" listener.
REST_ROUTES = {"orders": ["/api/orders"]}


def mcp_configs(weather: Upstream, calc: Upstream, api: RestApi, idp: Issuer, desk: Upstream
                ) -> dict[str, dict[str, Any]]:
    """Route name -> tollgate-mcp config."""
    rest_tools = [
        {"name": "get_user", "description": "One user", "method": "GET", "path": "/api/users/{id}",
         "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "q", "in": "query"}]},
        {"name": "create_user", "method": "POST", "path": "/api/users",
         "request_body": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
         "acl": {"allow": ["alice"]}},
    ]
    return {
        "one": {"mode": "passthrough-listener", "upstream_url": weather.url,
                "default_acl": [{"scope": "tools", "deny": ["carol"]}],
                "tools": [{"name": "purge_cache", "acl": {"allow": ["alice"]}}]},
        "all": {"servers": [{"name": "weather", "url": weather.url},
                            {"name": "calc", "url": calc.url, "protocol": "2025-11-25"}],
                "tools": rest_tools, "rest": {"base_url": api.url, "headers": {"X-Api-Key": "rest-secret"}},
                "strategy": "redis", "logging": {"log_payloads": False}},
        "rest": {"mode": "conversion-listener", "tools": rest_tools, "rest": {"base_url": api.url},
                 "openapi": {"spec": OPENAPI}, "logging": {"log_payloads": True}},
        "limited": {"upstream_url": calc.url, "strategy": "redis",
                    "limits": [{"tools": ["add"], "limit": 3, "window_size": "minute"}]},
        "slow": {"upstream_url": weather.url, "timeout": 1},
        "pass": {"upstream_url": weather.url, "passthrough_credentials": True},
        "dead": {"upstream_url": "http://127.0.0.1:9/mcp", "timeout": 2},
        # Kong's conversion-only + listener pair, with ACLs by consumer group (the acl plugin on the listener's route).
        "orders": {"mode": "conversion-only", "tags": ["shop"], "strategy": "redis", "include_consumer_groups": True,
                   "rest": {"base_url": api.url},
                   "default_acl": [{"scope": "tools", "allow": ["developer", "admin"], "deny": ["suspended"]}],
                   "tools": [{"name": "list_orders", "description": "A user's orders", "method": "GET",
                              "path": "/api/users/{id}/orders",
                              "parameters": [{"name": "id", "in": "path", "required": True}]},
                             {"name": "refund", "description": "Refund an order", "method": "POST",
                              "path": "/api/refunds", "acl": {"allow": ["admin"]},
                              "request_body": {"required": True, "content": {"application/json": {
                                  "schema": {"type": "object"}}}}}]},
        "shop": {"mode": "listener", "server": {"tag": "shop"}, "strategy": "redis", "include_consumer_groups": True},
        # a 2025 server that asks its client things mid-call and has a resource to subscribe to
        "desk": {"servers": [{"name": "desk", "url": desk.url, "prefix": "", "protocol": "2025-11-25"}],
                 "strategy": "redis", "timeout": 10},
        "desk26": {"servers": [{"name": "desk", "url": desk.url, "prefix": ""}]},     # the same, spoken to in 2026
        # the same in 2025, with sessions that expire 3 s after their last write
        "brief": {"servers": [{"name": "desk", "url": desk.url, "prefix": "", "protocol": "2025-11-25"}],
                  "strategy": "redis", "session_ttl": 3},
        "oauth": {"upstream_url": weather.url, "default_acl": [{"scope": "tools", "allow": ["alice-sub"]}],
                  "oauth": {"resource": OAUTH_RESOURCE, "issuer": idp.url, "jwks_url": idp.jwks_url,
                            "scopes_required": ["mcp:tools"]}},
    }


def declarative(relay_url: str, rest_url: str, configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    key_auth = {"name": "key-auth", "config": {"key_names": ["apikey"]}}
    acl = {"name": "acl", "config": {"deny": ["banned"]}}    # admits all but hands the consumer's groups on

    def route(name: str, config: dict[str, Any]) -> dict[str, Any]:
        plugins = [] if name in OPEN_ROUTES else [key_auth]
        if config.get("include_consumer_groups") and name not in REST_ROUTES:
            plugins.append(acl)
        return {"name": name, "paths": OPEN_ROUTES.get(name) or REST_ROUTES.get(name) or [f"/mcp/{name}"],
                "strip_path": False, "plugins": [*plugins, {"id": PLUGIN_IDS[name], "name": "tollgate-mcp",
                                                            "config": config}]}

    return {"_format_version": "3.0",
            "services": [{"name": "relay", "url": relay_url, "retries": 0,
                          "routes": [route(n, c) for n, c in configs.items() if n not in REST_ROUTES]},
                         {"name": "rest", "url": rest_url, "retries": 0,
                          "routes": [route(n, c) for n, c in configs.items() if n in REST_ROUTES]}],
            "consumers": [{"username": user, "keyauth_credentials": [{"key": key}],
                           "acls": [{"group": g} for g in GROUPS.get(user, [])]} for user, key in KEYS.items()]}


@dataclass
class Node:
    proc: TollgateServer
    kong: KongDouble

    def url(self, route: str) -> str:
        return f"{self.kong.url}/mcp/{route}"

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.proc.status_port}/metrics", timeout=5) as answer:
            return answer.read().decode()

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.proc.stderr_text().splitlines()
                if line.startswith("{") and '"msg":"mcp request"' in line]


@dataclass
class Env:
    nodes: list[Node]
    weather: Upstream
    calc: Upstream
    api: RestApi
    idp: Issuer
    desk: Upstream
    subscriptions: list[str]

    def url(self, route: str, node: int = 0) -> str:
        return self.nodes[node].url(route)


@contextlib.asynccontextmanager
async def environment(redis_url: str) -> AsyncIterator[Env]:
    async with contextlib.AsyncExitStack() as stack:
        weather = await stack.enter_async_context(mcp_upstream("weather", weather_server()))
        calc = await stack.enter_async_context(mcp_upstream("calc", calc_server(), json_response=True))
        api = await stack.enter_async_context(rest_api())
        idp = await stack.enter_async_context(issuer())
        subscriptions: list[str] = []
        desk = await stack.enter_async_context(mcp_upstream("desk", desk_server(subscriptions)))
        configs = mcp_configs(weather, calc, api, idp, desk)
        nodes = []
        for _ in range(2):
            proc = TollgateServer(redis_url=redis_url, env={"TOLLGATE_LOG_LEVEL": "info"})
            stack.callback(proc.cleanup)
            await proc.astart()
            kong = KongDouble(proc.entries("3.9", ["tollgate-mcp"]), declarative(proc.relay_url, api.url, configs))
            await kong.start()
            stack.push_async_callback(kong.stop)
            nodes.append(Node(proc, kong))
        yield Env(nodes, weather, calc, api, idp, desk, subscriptions)


@contextlib.asynccontextmanager
async def sdk_client(url: str, user: str = "alice", mode: str = "auto", headers: dict[str, str] | None = None,
                     **options: Any) -> AsyncIterator[Client]:
    """The official SDK client through Kong: ``auto`` speaks 2026-07-28 here, ``legacy`` the session generation;
    ``options`` go to `mcp.Client` (callbacks for sampling, elicitation, messages)."""
    async with create_mcp_http_client(headers=headers if headers is not None else {"apikey": KEYS[user]},
                                      timeout=httpx2.Timeout(10, read=10)) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode, **options) as client:
            yield client

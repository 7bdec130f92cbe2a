"""Upstreams for the MCP gateway tests, on free loopback ports in the test's event loop:

- MCP servers built with the `mcp` SDK's own server (``mcp.server.mcpserver``), which speaks both generations; a
  recorder in front of each keeps what the gateway sent (method, session and version headers);
- a small REST API (aiohttp) for converted tools, which records the paths it was asked for;
- an OAuth issuer: an RSA key, its JWKS over HTTP, and tokens signed with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, AsyncIterator

import jwt
import uvicorn
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp.server.mcpserver import Context, Elicit, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import EmptyResult, SamplingMessage, SubscribeRequestParams, TextContent
from pydantic import BaseModel, Field

from tests.harness.procs import free_port


@dataclass
class Seen:
    method: str
    http_method: str
    headers: dict[str, str]


@dataclass
class Upstream:
    name: str
    url: str
    seen: list[Seen] = field(default_factory=list)

    def methods(self) -> list[str]:
        return [s.method for s in self.seen]


class Person(BaseModel):
    name: str


def who() -> Elicit[Person]:
    """desk's ``welcome`` asks this (module level: tool annotations are evaluated in the module's namespace)."""
    return Elicit("Who is asking?", Person)


def weather_server() -> MCPServer:
    server = MCPServer("weather")

    @server.tool()
    def forecast(city: str) -> str:
        """Tomorrow's weather for a city."""
        return f"sunny in {city}"

    @server.tool()
    def purge_cache() -> str:
        """An admin-only tool."""
        return "purged"

    @server.tool()
    async def slow(seconds: float) -> str:
        """Takes its time."""
        await asyncio.sleep(seconds)
        return "done"

    @server.tool()
    async def count(steps: int, ctx: Context) -> str:
        """Counts, reporting progress on the way."""
        for i in range(steps):
            await ctx.report_progress(i + 1, steps, f"step {i + 1}")
            await asyncio.sleep(0.05)
        return f"counted {steps}"

    @server.tool()
    def regional(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})]) -> str:
        """Routed by region: the client mirrors the argument in an Mcp-Param-Region header."""
        return f"served from {region}"

    @server.prompt()
    def greet(name: str) -> str:
        return f"Say hello to {name}"

    @server.resource("weather://stations")
    def stations() -> str:
        return "KSFO,KJFK"

    return server


def desk_server(subscriptions: list[str]) -> MCPServer:
    """A server that asks its client things mid-call (2025 generation), and has a resource to subscribe to;
    ``subscriptions`` collects the URIs subscribed to."""
    server = MCPServer("desk")

    @server.tool()
    async def ask_name(ctx: Context) -> str:
        """Asks the user (elicitation, mid-call: the 2025 generation)."""
        answer = await ctx.elicit("What is your name?", Person)
        return f"hello {answer.data.name}" if answer.action == "accept" else f"no name ({answer.action})"

    @server.tool()
    async def summarize(text: str, ctx: Context) -> str:
        """Asks the client's model (sampling, mid-call)."""
        result = await ctx.session.create_message(
            [SamplingMessage(role="user", content=TextContent(type="text", text=text))], max_tokens=20,
            related_request_id=ctx.request_id)
        return f"summary: {result.content.text}"

    @server.tool()
    async def touch(uri: str, ctx: Context) -> str:
        """Says a resource changed (resources/updated, on the session's standing stream)."""
        await ctx.session.send_resource_updated(uri)
        return "touched"

    @server.tool()
    def welcome(person: Annotated[Person, Resolve(who)]) -> str:
        """Asks the user in whichever way the generation has (2026-07-28: an input_required result)."""
        return f"welcome {person.name}"

    async def subscribe(ctx: Any, params: Any) -> EmptyResult:
        subscriptions.append(str(params.uri))
        return EmptyResult()

    server._lowlevel_server.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)

    @server.resource("desk://inbox")
    def inbox() -> str:
        return "3 letters"

    return server


def calc_server() -> MCPServer:
    server = MCPServer("calc")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @server.tool()
    def forecast(days: int) -> str:
        """Same name as weather's tool: the prefixes keep them apart."""
        return f"{days} days of numbers"

    return server


class Caller(BaseModel):
    authorization: str


def echo_server() -> MCPServer:
    """A careless server that repeats the Authorization header it was called with: in a result (text and
    structured), a progress notification, a tool error and a JSON-RPC error."""
    server = MCPServer("echo")

    def authorization(ctx: Context) -> str:
        return ctx.request_context.request.headers.get("authorization", "")

    @server.tool()
    async def whoami(ctx: Context) -> Caller:
        """Who the server thinks is calling."""
        await ctx.report_progress(1, 1, f"called with {authorization(ctx)}")
        return Caller(authorization=authorization(ctx))

    @server.tool()
    def refuse(ctx: Context) -> str:
        """Fails as a tool, naming the credential."""
        raise ToolError(f"credential {authorization(ctx)} is not allowed")

    @server.tool()
    def reject(ctx: Context) -> str:
        """Fails as a protocol error, naming the credential."""
        raise MCPError(code=-32001, message=f"invalid token {authorization(ctx)}",
                       data={"token": authorization(ctx).partition(" ")[2]})

    return server


def _recorder(app: Any, upstream: Upstream) -> Any:
    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            method = json.loads(body).get("method", "") if body else ""
        except (ValueError, AttributeError):
            method = "?"
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        upstream.seen.append(Seen(method, scope["method"], headers))
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await app(scope, replay, send)
    return asgi


@contextlib.asynccontextmanager
async def mcp_upstream(name: str, server: MCPServer, *, json_response: bool = False) -> AsyncIterator[Upstream]:
    port = free_port()
    upstream = Upstream(name, f"http://127.0.0.1:{port}/mcp")
    app = server.streamable_http_app(json_response=json_response)
    config = uvicorn.Config(_recorder(app, upstream), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    runner = uvicorn.Server(config)
    task = asyncio.create_task(runner.serve())
    while not runner.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield upstream
    finally:
        runner.should_exit = True
        await task


@dataclass
class RestApi:
    url: str
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def rest_api() -> AsyncIterator[RestApi]:
    """Users and their orders; anything outside /api/users answers 403 "outside", which a traversal would reach."""
    api = RestApi("")

    async def handle(request: web.Request) -> web.Response:
        api.paths.append(request.raw_path)
        api.headers.append(dict(request.headers))
        parts = request.raw_path.split("?")[0].split("/")
        if request.path.startswith("/api/users/") and len(parts) == 4:
            return web.json_response({"id": parts[3], "name": f"user {parts[3]}", "q": request.query.get("q")})
        if request.method == "POST" and request.path == "/api/users":
            return web.json_response({"created": await request.json()}, status=201)
        if request.path.startswith("/api/users/") and len(parts) == 5 and parts[4] == "orders":
            return web.json_response({"user": parts[3], "orders": [{"id": 1, "total": 12.5}]})
        if request.path == "/api/orders":
            return web.json_response({"orders": [{"id": 1, "user": "7"}]})
        if request.method == "POST" and request.path == "/api/refunds":
            return web.json_response({"refunded": await request.json()}, status=201)
        if request.path.startswith("/api/"):
            return web.json_response({"error": "no such user"}, status=404)
        return web.json_response({"error": "outside"}, status=403)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    api.url = f"http://127.0.0.1:{port}"
    try:
        yield api
    finally:
        await runner.cleanup()


@dataclass
class Issuer:
    """An OAuth authorization server as far as a resource server sees one: an issuer name, and its JWKS."""

    url: str
    key: Any
    kid: str = "key-1"

    @property
    def jwks_url(self) -> str:
        return self.url + "/jwks.json"

    def token(self, key: Any = None, kid: str | None = None, algorithm: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "sub": "alice-sub", "aud": "https://gateway.test/mcp/oauth", "iat": now,
                "exp": now + 300, "scope": "mcp:tools openid", **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key if key is not None else self.key, algorithm=algorithm,
                          headers={"kid": kid or self.kid})


@contextlib.asynccontextmanager
async def issuer() -> AsyncIterator[Issuer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    found = Issuer("", key)

    async def jwks(request: web.Request) -> web.Response:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        return web.json_response({"keys": [{**public, "kid": found.kid, "use": "sig", "alg": "RS256"}]})

    app = web.Application()
    app.router.add_get("/jwks.json", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    found.url = f"http://127.0.0.1:{port}"
    try:
        yield found
    finally:
        await runner.cleanup()

"""The relay side of tollgate-mcp: the route's terminal stage, speaking MCP Streamable HTTP to the client.

It decides the client's generation per request, opens 2025-generation sessions in the store, and answers a POST
in JSON, or in SSE when the client accepts it and an upstream sends notifications (progress) before its result (see
stream.py; resumable in a session). A session's GETs and DELETE are session_streams.py's. Every refusal is a
JSON-RPC error with the HTTP status the spec gives.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ...relay import web

from ... import log, runtime
from ...context import RequestContext
from ...store import StoreUnavailable
from ..base import Policy
from . import jsonrpc, protocol, registry
from .acl import GROUPS_HEADER, Acl, groups_of
from .audit import Record
from .calls import CallLimits
from .catalog import Catalog, CatalogError, rest_tools_of
from .gateway import CAPABILITIES, SERVER_INFO, Caller, Gateway
from .jsonrpc import INVALID_REQUEST, METHOD_NOT_FOUND, JsonRpcError, Message
from .oauth import METADATA_PATH, ResourceServer
from .questions import Inbox, client_capabilities
from .session_streams import SessionStreams, consumer_of, refused, store_unavailable
from .sessions import Session, SessionBook, SharedUpstreamSessions
from .stream import Answer, EventLog

logger = log.get("mcp")

_MODERN_ONLY_FIELDS = ("resultType", "ttlMs", "cacheScope")
_CACHEABLE = frozenset({"tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read",
                        "server/discover"})


class McpPolicy(Policy):
    def __init__(self, config: dict[str, Any], plugin: str):
        super().__init__(config, plugin)
        self.scope = str(config.get("__plugin_id") or config.get("route_id") or "default")
        self.conversion_only = config.get("mode") == "conversion-only"
        self.gateway = Gateway(Catalog.from_config(config), Acl.from_config(config),
                               CallLimits.from_config(config, self.scope), config)
        tag = (config.get("server") or {}).get("tag")
        self.registry = registry.Registry(tag) if tag else None
        self._publishing = (registry.publish_soon(runtime.current().store_for(config), self.scope, config)
                            if self.conversion_only else None)
        self.groups = bool(config.get("include_consumer_groups"))
        self.passthrough = bool(config.get("passthrough_credentials"))
        self.shared = SharedUpstreamSessions()
        self._working: set[asyncio.Task[Any]] = set()   # resumable answers still being worked out
        self.oauth = ResourceServer.from_config(config.get("oauth"))
        self.max_body = int(config.get("max_request_body_size") or 1048576)
        self.timeout = float(config.get("timeout") or 30)
        self.sessions = SessionStreams(self.book, lambda: self.gateway.catalog.upstreams, self.timeout)
        logging_config = config.get("logging") or {}
        self.log_statistics = logging_config.get("log_statistics", True) is not False
        self.log_payloads = bool(logging_config.get("log_payloads"))

    def book(self) -> SessionBook:
        return SessionBook(runtime.current().store_for(self.config), self.scope,
                           float(self.config.get("session_ttl") or 3600))

    async def serve(self, ctx: RequestContext, request: web.BaseRequest) -> web.StreamResponse:
        if self.conversion_only:
            return jsonrpc.error_response(None, JsonRpcError(
                METHOD_NOT_FOUND, "this route's tollgate-mcp is conversion-only: a listener serves its tools"))
        if self.registry is not None:
            await self._refresh()
        if self.oauth is not None:
            if ctx.method == "GET" and ctx.path.startswith(METADATA_PATH):
                return jsonrpc.json_response(self.oauth.metadata())
            try:
                # The token's subject stands for the caller from here on (ACLs, limits, sessions, audit).
                ctx.identity = await self.oauth.identify(ctx.headers.get("Authorization"))
            except JsonRpcError as exc:
                return jsonrpc.error_response(None, exc)
        elif self.groups and ctx.identity:
            # Kong's acl plugin, on this route, replaced the client's header with the consumer's groups (acl.py).
            ctx.identity = {**ctx.identity, "groups": groups_of(ctx.headers.get(GROUPS_HEADER))}
        if ctx.method == "DELETE":
            return await self.sessions.end(ctx)
        if ctx.method == "GET" and "Last-Event-ID" in ctx.headers:
            return await self.sessions.resume(ctx, request)
        if ctx.method == "GET" and protocol.SESSION_HEADER in ctx.headers:
            return await self.sessions.standing(ctx, request)
        if ctx.method != "POST":
            # Only a session has a standing GET stream (2026-07-28 has none; the spec allows a 405 here).
            return web.Response(status=405, headers={"Allow": "POST, DELETE"})
        if len(ctx.body) > self.max_body:
            return jsonrpc.error_response(None, JsonRpcError(
                INVALID_REQUEST, f"request body is larger than {self.max_body} bytes", status=413))
        if "json" not in ctx.headers.get("Content-Type", "").lower():   # as the MCP SDK's own server answers
            return jsonrpc.error_response(None, JsonRpcError(
                INVALID_REQUEST, "Unsupported Media Type: Content-Type must be application/json", status=415))
        try:
            parsed = jsonrpc.parse(ctx.body)
        except JsonRpcError as exc:
            return jsonrpc.error_response(None, exc)
        if isinstance(parsed, list):
            return await self._batch(ctx, parsed)
        if isinstance(parsed, dict):
            return await self._client_answer(ctx, parsed)
        return await self._one(ctx, request, parsed)

    async def _refresh(self) -> None:
        """A listener's tools from the conversion-only instances tagged ``server.tag`` (registry.py), with their
        ACLs; a source whose names collide with what is already served is left out (and logged)."""
        assert self.registry is not None
        try:
            sources = await self.registry.sources(runtime.current().store_for(self.config))
        except StoreUnavailable as exc:
            log.event(logger, "tool registry unavailable", logging.WARNING, error=str(exc))
            return
        if sources is None:
            return
        catalog, acl = Catalog.from_config(self.config), Acl.from_config(self.config)
        inherited: list[Any] = []
        for source in sources:
            try:
                tools = rest_tools_of(source.config)
                candidate = Catalog.from_config(self.config, [*inherited, *tools])
            except (CatalogError, ValueError) as exc:
                log.event(logger, "conversion-only tools left out", logging.ERROR, plugin_id=source.plugin_id,
                          error=str(exc))
                continue
            catalog, inherited = candidate, [*inherited, *tools]
            acl = acl.inheriting(Acl.from_config(source.config), [t.name for t in tools])
        self.gateway.catalog, self.gateway.acl = catalog, acl

    # -- one message -------------------------------------------------------------------------------------------

    async def _one(self, ctx: RequestContext, request: web.BaseRequest, message: Message) -> web.StreamResponse:
        session: Session | None = None
        try:
            generation = protocol.generation_of(message, ctx.headers)
            if generation is not None:
                protocol.check_modern(message, ctx.headers)
            elif message.method == "initialize":
                return await self._initialize(ctx, message)
            else:
                session = await self.sessions.find(ctx)
        except JsonRpcError as exc:
            return jsonrpc.error_response(message.id if message.is_request else None, exc)
        if not message.is_request:
            return web.Response(status=202)
        accepts_sse = "text/event-stream" in ctx.headers.get("Accept", "")
        if session is None:
            answer = Answer(request, accepts_sse, {})
        else:
            store = self.book().store
            answer = Answer(request, accepts_sse, {protocol.SESSION_HEADER: session.id},
                            EventLog(store, self.scope, session.id), Inbox(store, self.scope, session.id),
                            session.capabilities, self.timeout)
        caller = Caller(ctx.identity, session is None, session or self.shared.for_consumer(consumer_of(ctx)),
                        answer, self._credentials(ctx), ctx.headers,
                        (lambda upstream: self.sessions.watch(session, upstream)) if session is not None else None)
        if not answer.resumable:
            return await answer.finish(*await self._dispatch(ctx, message, caller, not caller.modern))
        # A resumable answer is worked out to the end even if the client drops the connection meanwhile.
        work = asyncio.create_task(self._answer(ctx, message, caller, answer))
        self._working.add(work)
        work.add_done_callback(self._working.discard)
        return await asyncio.shield(work)

    async def _answer(self, ctx: RequestContext, message: Message, caller: Caller, answer: Answer
                      ) -> web.StreamResponse:
        body, status, headers = await self._dispatch(ctx, message, caller, not caller.modern)
        return await answer.finish(body, status, headers)

    async def _dispatch(self, ctx: RequestContext, message: Message, caller: Caller, in_session: bool
                        ) -> tuple[dict[str, Any], int, dict[str, str]]:
        """(JSON-RPC answer, HTTP status, headers) for one request, audited."""
        record = Record(message.method, ctx.route_id, ctx.identity.get("id"), in_session)
        try:
            result = await self.gateway.handle(message, caller, record, ctx)
            record.result = result if self.log_payloads else None
        except JsonRpcError as exc:
            record.status, record.error_code = exc.status, exc.code
            return jsonrpc.error_body(message.id, exc), exc.status, exc.headers
        except StoreUnavailable:
            exc = store_unavailable()
            record.status, record.error_code = 503, exc.code
            return jsonrpc.error_body(message.id, exc), 503, {}
        except asyncio.CancelledError:
            record.status = 499                 # the client left; the upstream call was cancelled with it
            raise
        finally:
            record.finish(self.log_statistics, self.log_payloads)
        return jsonrpc.result_body(message.id, _for_client(message.method, result, caller.modern)), 200, {}

    # -- sessions (2025 generation) ----------------------------------------------------------------------------

    async def _initialize(self, ctx: RequestContext, message: Message) -> web.StreamResponse:
        if not message.is_request:
            raise JsonRpcError(INVALID_REQUEST, "initialize must be a request")
        if protocol.SESSION_HEADER in ctx.headers:
            raise JsonRpcError(INVALID_REQUEST, "initialize opens a session; it cannot carry one")
        version = protocol.negotiate(message.params.get("protocolVersion"))
        try:
            session = await self.book().open(version, consumer_of(ctx),
                                             client_capabilities(message.params.get("capabilities")))
        except StoreUnavailable:
            raise store_unavailable() from None
        result = {"protocolVersion": version, "capabilities": CAPABILITIES, "serverInfo": SERVER_INFO}
        return jsonrpc.json_response(jsonrpc.result_body(message.id, result),
                                     headers={protocol.SESSION_HEADER: session.id})

    # -- a client's answer to a server's request, and batches (sessions) -----------------------------------------

    async def _client_answer(self, ctx: RequestContext, message: dict[str, Any]) -> web.StreamResponse:
        """A client's answer to a request the gateway relayed from an upstream (questions.py): kept in the store
        for the process holding that upstream's call."""
        try:
            session = await self.sessions.find(ctx)
            await Inbox(self.book().store, self.scope, session.id).put(message)
        except (JsonRpcError, StoreUnavailable) as exc:
            return refused(exc)
        return web.Response(status=202)

    async def _batch(self, ctx: RequestContext, items: list[Any]) -> web.StreamResponse:
        """A JSON-RPC batch: only in a session whose version still has them (2025-03-26)."""
        try:
            session = await self.sessions.find(ctx) if protocol.SESSION_HEADER in ctx.headers else None
            if session is None or session.version not in protocol.BATCH_VERSIONS:
                raise JsonRpcError(INVALID_REQUEST, "JSON-RPC batches are not supported in this protocol version")
            if not items:
                raise JsonRpcError(INVALID_REQUEST, "empty batch")
        except JsonRpcError as exc:
            return jsonrpc.error_response(None, exc)
        caller = Caller(ctx.identity, False, session, None, self._credentials(ctx))
        answers = []
        for item in items:
            try:
                message = jsonrpc.message_of(item)
            except JsonRpcError as exc:
                answers.append(jsonrpc.error_body(None, exc))
                continue
            if isinstance(message, Message) and message.is_request:
                answers.append((await self._dispatch(ctx, message, caller, True))[0])
        if not answers:
            return web.Response(status=202)
        return jsonrpc.json_response(answers, headers={protocol.SESSION_HEADER: session.id})

    def _credentials(self, ctx: RequestContext) -> dict[str, str]:
        if not self.passthrough:
            return {}
        value = ctx.headers.get("Authorization")
        return {"Authorization": value} if value else {}


def _for_client(method: str, result: dict[str, Any], modern: bool) -> dict[str, Any]:
    """A result in the client's generation: 2026-07-28 results say they are complete, and cacheable ones carry
    their caching hints, always ``private`` (what a caller sees depends on its ACL); older ones lack those fields."""
    if modern:
        out = result if "resultType" in result else {**result, "resultType": "complete"}
        if method in _CACHEABLE:
            out = {**out, "ttlMs": int(out.get("ttlMs") or 0), "cacheScope": "private"}
        return out
    if any(k in result for k in _MODERN_ONLY_FIELDS):
        return {k: v for k, v in result.items() if k not in _MODERN_ONLY_FIELDS}
    return result

"""What the gateway does with one JSON-RPC request once the transport has admitted it: answer it itself
(``ping``, ``server/discover``), merge the lists of every upstream and converted tool, filtered by the caller's
ACL, or send one call to the server that owns the name, after the ACL and the call limits agreed."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ... import __version__, log, runtime
from ..limits import identifier_value
from . import protocol
from .acl import Acl
from .audit import Record
from .calls import CallLimits
from .catalog import KINDS, SCOPE_OF, Catalog, Target
from .jsonrpc import FORBIDDEN, INVALID_PARAMS, METHOD_NOT_FOUND, JsonRpcError, Message
from .sessions import UpstreamSessions
from .upstream import Channel, Upstream

logger = log.get("mcp")

MAX_PAGES = 20
SERVER_INFO = {"name": "tollgate-mcp", "version": __version__}
CAPABILITIES = {"tools": {"listChanged": False}, "prompts": {"listChanged": False},
                "resources": {"listChanged": False, "subscribe": True}}
SUBSCRIPTIONS = ("resources/subscribe", "resources/unsubscribe")


@dataclass(slots=True)
class Caller:
    """One request's caller: who (Kong's consumer), how it speaks, where its upstream sessions live."""

    identity: dict[str, Any]
    modern: bool
    sessions: UpstreamSessions
    channel: Channel | None
    credentials: dict[str, str]      # client credentials to pass upstream (only with passthrough_credentials)
    headers: Mapping[str, str] = field(default_factory=dict)   # the request's (Mcp-Param-* go to the tool's server)
    # Starts relaying an upstream's standing stream to the client's session (after a subscription).
    watch: Callable[[Upstream], None] | None = None


class Gateway:
    def __init__(self, catalog: Catalog, acl: Acl, limits: CallLimits, config: dict[str, Any]):
        self.catalog = catalog
        self.acl = acl
        self.limits = limits
        self.config = config

    async def handle(self, message: Message, caller: Caller, record: Record, ctx: Any) -> dict[str, Any]:
        method = message.method
        if method == "ping":
            return {}
        if method == "server/discover" and caller.modern:
            return {"supportedVersions": list(protocol.MODERN_VERSIONS), "capabilities": CAPABILITIES,
                    "_meta": {protocol.META_SERVER_INFO: SERVER_INFO}}
        if method in KINDS:
            return await self._list(method, message.params, caller)
        if method in protocol.NAME_PARAM:
            return await self._use(method, message.params, caller, record, ctx)
        if method in SUBSCRIPTIONS and not caller.modern:     # 2026-07-28 has subscriptions/listen instead
            return await self._subscription(method, message.params, caller, record)
        raise JsonRpcError(METHOD_NOT_FOUND, f"Method not found: {method}")

    # -- lists -------------------------------------------------------------------------------------------------

    async def _list(self, method: str, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        key, field, _ = KINDS[method]
        scope = SCOPE_OF[method]
        pages = await asyncio.gather(*(self._list_one(u, method, params, caller) for u in self.catalog.upstreams),
                                     return_exceptions=True)
        items: list[dict[str, Any]] = []
        failures = 0
        for upstream, page in zip(self.catalog.upstreams, pages):
            if isinstance(page, BaseException):
                if not isinstance(page, JsonRpcError):
                    raise page
                failures += 1
                log.event(logger, "upstream list failed", logging.WARNING, server=upstream.name, method=method,
                          error=page.message)
                continue
            for item in page:
                if field == "name":
                    item = {**item, "name": self.catalog.exposed(upstream, str(item.get("name", "")))}
                items.append(item)
        if method == "tools/list":
            items.extend(tool.descriptor() for tool in self.catalog.rest.values())
        if failures and failures == len(self.catalog.upstreams) and not items:
            raise next(p for p in pages if isinstance(p, JsonRpcError))
        if self.acl.active:
            items = [i for i in items if self.acl.allows(scope, str(i.get(field, "")), caller.identity)]
        return {key: items}

    async def _list_one(self, upstream: Upstream, method: str, params: dict[str, Any], caller: Caller
                        ) -> list[dict[str, Any]]:
        """Every page of one upstream's list (the merged list has no cursor of its own)."""
        key = KINDS[method][0]
        out: list[dict[str, Any]] = []
        page_params = {k: v for k, v in params.items() if k != "cursor"}
        for _ in range(MAX_PAGES):
            try:
                result = await upstream.request(method, page_params, caller.sessions, None, caller.credentials)
            except JsonRpcError as exc:
                if exc.code == METHOD_NOT_FOUND:
                    return out      # a server without prompts or resources has none to show
                raise
            out.extend(item for item in result.get(key) or [] if isinstance(item, dict))
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
            page_params = {**page_params, "cursor": cursor}
        return out

    # -- one tool, prompt or resource --------------------------------------------------------------------------

    async def _use(self, method: str, params: dict[str, Any], caller: Caller, record: Record, ctx: Any
                   ) -> dict[str, Any]:
        key = protocol.NAME_PARAM[method]
        scope = SCOPE_OF[method]
        name = params.get(key)
        if not isinstance(name, str) or not name:
            raise JsonRpcError(INVALID_PARAMS, f"{method} needs params.{key}")
        record.name = name
        if method == "resources/read":
            target = await self._resource_owner(name, caller)
        else:
            target = self.catalog.target(name)
        if target is None:
            raise JsonRpcError(INVALID_PARAMS, f"Unknown {scope[:-1]}: {name}")
        record.upstream = target.upstream.name if target.upstream is not None else "rest"
        if not self.acl.allows(scope, name, caller.identity):
            raise JsonRpcError(FORBIDDEN, f"{scope[:-1]} {name} is not allowed for this consumer")
        arguments = params.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise JsonRpcError(INVALID_PARAMS, "arguments must be an object")
        record.arguments = arguments
        if method == "tools/call" and self.limits.limits:
            subject = identifier_value("consumer", ctx)   # the consumer; its address when Kong named none
            await self.limits.admit(runtime.current().store_for(self.config), name, subject, ctx)
        if target.rest is not None:
            return await target.rest.call(arguments or {}, float(self.config.get("timeout") or 30))
        assert target.upstream is not None
        # Mcp-Param-* headers mirror arguments the tool's schema marks (x-mcp-header); the client made them from
        # the upstream's own schema (listed unchanged), so they go to that upstream, which checks them.
        headers = {**caller.credentials, **protocol.param_headers(caller.headers)} if method == "tools/call" \
            else caller.credentials
        return await target.upstream.request(method, {**params, key: target.name}, caller.sessions, caller.channel,
                                             headers)

    async def _subscription(self, method: str, params: dict[str, Any], caller: Caller, record: Record
                            ) -> dict[str, Any]:
        """``resources/subscribe`` or ``unsubscribe``, to the server that lists the resource; its updates then
        come on the client's standing stream (the GET of its session)."""
        uri = params.get("uri")
        if not isinstance(uri, str) or not uri:
            raise JsonRpcError(INVALID_PARAMS, f"{method} needs params.uri")
        record.name = uri
        target = await self._resource_owner(uri, caller)
        if target is None or target.upstream is None:
            raise JsonRpcError(INVALID_PARAMS, f"Unknown resource: {uri}")
        record.upstream = target.upstream.name
        if not self.acl.allows("resources", uri, caller.identity):
            raise JsonRpcError(FORBIDDEN, f"resource {uri} is not allowed for this consumer")
        result = await target.upstream.request(method, params, caller.sessions, caller.channel, caller.credentials)
        if method == "resources/subscribe" and caller.watch is not None:
            caller.watch(target.upstream)
        return result

    async def _resource_owner(self, uri: str, caller: Caller) -> Target | None:
        """The server that lists ``uri`` (URIs are not prefixed: they are the servers' own addresses)."""
        upstreams = self.catalog.upstreams
        if len(upstreams) == 1:
            return Target(upstreams[0], uri)
        listings = await asyncio.gather(*(self._list_one(u, "resources/list", {}, caller) for u in upstreams),
                                        return_exceptions=True)
        for upstream, listing in zip(upstreams, listings):
            if isinstance(listing, list) and any(item.get("uri") == uri for item in listing):
                return Target(upstream, uri)
        return None

"""The relay's request path: admit only requests Kong's Tollgate plugins vouched for, then run the route's
policies (`pipeline`) around the call that answers it."""

from __future__ import annotations

from typing import Any

from .. import log
from ..attachments import HEADER, Attachment, InvalidAttachment
from ..context import RequestContext
from ..runtime import Runtime
from . import body, pipeline, web
from .errors import refusal

logger = log.get("relay")

PROXY = "tollgate-proxy"
MCP = "tollgate-mcp"
HEALTH_PATH = "/__tollgate/health"


class Relay:
    def __init__(self, runtime: Runtime, priorities: dict[str, int]):
        self.runtime = runtime
        self.priorities = priorities

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == HEALTH_PATH and HEADER not in request.headers:
            return web.json_response({"status": "ok"})
        tokens = [t for value in request.headers.getall(HEADER, []) for t in value.split(",") if t.strip()]
        if not tokens:
            return _refuse("no Tollgate policy is attached to this request; it must come through a Kong route "
                           "with Tollgate plugins", _looks_like_mcp(request))
        try:
            attachments = self.runtime.attachments.claim(tokens)
        except InvalidAttachment as exc:
            return _refuse(str(exc), _looks_like_mcp(request))
        missing = self._missing_plugins(attachments)
        mcp = MCP in missing or any(a.plugin == MCP for a in attachments)
        if missing:
            log.event(logger, "refused: plugin did not run", 30, missing=sorted(missing))
            return _refuse(f"Tollgate plugin(s) {', '.join(sorted(missing))} did not run on this request; "
                           "refusing rather than bypassing them", mcp)
        policies = {a.plugin: a.handler.policy for a in attachments}
        terminal = _terminal(policies)
        if terminal is None:
            return refusal(500, "this route has Tollgate plugins but none that answers it (tollgate-proxy, "
                           "tollgate-mcp)", "misconfigured", mcp=mcp, type_="server_error")
        try:
            data = await body.read(request, body.limit_of(terminal))
        except body.BodyTooLarge as exc:
            log.event(logger, "refused: request body too large", 30, limit=exc.limit, size=exc.size)
            return refusal(413, str(exc), "request_too_large", mcp=mcp)
        ctx = RequestContext(method=request.method, path=request.path, query=request.query_string,
                             headers=request.headers, body=data,
                             identity=next((a.identity for a in attachments if a.identity), {}),
                             policies=policies, route_id=_route_of(attachments))
        extras = {a.plugin: a.extra for a in attachments if a.extra}
        if extras:
            ctx.meta["attached"] = extras  # per plugin: what its access handler learnt for the relay
        ordered = sorted(policies.values(), key=lambda p: -self.priorities.get(p.plugin, 0))
        contexts = self.runtime.contexts
        contexts.open(ctx)
        try:
            return await pipeline.run(ctx, request, ordered, terminal)
        finally:
            contexts.close(ctx)

    def _missing_plugins(self, attachments: list[Attachment]) -> set[str]:
        """Tollgate plugins that the config this request ran under puts on it, and that did not attach.

        The anchor is the attachment of the plugin that ran last (the lowest priority): its instance tells which
        nginx worker and which config build the request ran under (see `InstanceTable.expected`).
        """
        table = self.runtime.instances
        if table is None:
            return set()
        known = [(a.instance, a) for a in attachments if a.instance is not None]
        if not known:
            return set()
        anchor = min(known, key=lambda pair: self.priorities.get(pair[1].plugin, 0))[0]
        service_id = next((i.service_id for i, _ in known if i.service_id), None)
        consumer_id = next((a.identity.get("id") for a in attachments if a.identity.get("id")), None)
        expected = table.expected(anchor, _route_of(attachments), service_id, consumer_id)
        return expected - {a.plugin for a in attachments}


def _terminal(policies: dict[str, Any]) -> Any:
    """The stage that answers the request: the policy with a ``serve`` (the proxy first, else e.g. tollgate-mcp)."""
    if PROXY in policies:
        return policies[PROXY]
    return next((p for p in policies.values() if hasattr(p, "serve")), None)


def _route_of(attachments: list[Attachment]) -> str | None:
    return next((a.handler.route_id for a in attachments if a.handler.route_id), None)


def _refuse(message: str, mcp: bool) -> web.Response:
    return refusal(403, message, "policy_not_attached", mcp=mcp, type_="permission_error")


def _looks_like_mcp(request: web.BaseRequest) -> bool:
    """Whether a request that no valid attachment describes comes from an MCP client: an MCP header, or the
    ``Accept`` of both JSON and SSE that Streamable HTTP requires of every POST (OpenAI's SDKs send JSON only)."""
    headers = request.headers
    if "Mcp-Session-Id" in headers or "MCP-Protocol-Version" in headers or "Mcp-Method" in headers:
        return True
    accept = headers.get("Accept", "")
    return "text/event-stream" in accept and "application/json" in accept


MAX_BODY = body.MAX_BODY   # the server's cap; the route's limit (`body.limit_of`) is what is read


def build_server(relay: Relay) -> web.Server:
    """The relay's server: every path goes to ``relay.handle`` (it routes by attachment, not by path).

    A client that goes away (Kong closes the connection to the relay when its own client does) cancels the
    relay's handler, and with it the provider call, streamed or not; the after stages (limits and budgets settle)
    still run, in the handler's own cleanup, with what is known by then."""
    return web.Server(relay.handle, max_body=MAX_BODY)


def priorities_of(plugins: dict[str, Any]) -> dict[str, int]:
    return {name: module.priority for name, module in plugins.items()}

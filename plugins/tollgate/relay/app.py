"""The relay's request path: admit only requests Kong's Tollgate plugins vouched for, then
run each plugin's relay-side policy around the provider call."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .. import analytics, log
from ..attachments import HEADER, Attachment, InvalidAttachment
from ..context import RequestContext
from ..runtime import Runtime
from .errors import openai_error

logger = log.get("relay")

PROXY = "tollgate-proxy"
HEALTH_PATH = "/__tollgate/health"


class Relay:
    def __init__(self, runtime: Runtime, priorities: dict[str, int]):
        self.runtime = runtime
        self.priorities = priorities

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == HEALTH_PATH and HEADER not in request.headers:
            return web.json_response({"status": "ok"})
        tokens = [t for value in request.headers.getall(HEADER, []) for t in value.split(",") if t.strip()]
        if not tokens:
            return _refuse("no Tollgate policy is attached to this request; it must come through a Kong route "
                           "with Tollgate plugins")
        try:
            attachments = self.runtime.attachments.claim(tokens)
        except InvalidAttachment as exc:
            return _refuse(str(exc))
        missing = self._missing_plugins(attachments)
        if missing:
            log.event(logger, "refused: plugin did not run", 30, missing=sorted(missing))
            return _refuse(f"Tollgate plugin(s) {', '.join(sorted(missing))} did not run on this request; "
                           "refusing rather than bypassing them")
        policies = {a.plugin: a.handler.policy for a in attachments}
        if PROXY not in policies:
            return openai_error(500, "this route has Tollgate plugins but no tollgate-proxy to answer it",
                                "server_error", "misconfigured")
        ctx = RequestContext(method=request.method, path=request.path, query=request.query_string,
                             headers=request.headers, body=await request.read(),
                             identity=next((a.identity for a in attachments if a.identity), {}),
                             policies=policies, route_id=_route_of(attachments))
        extras = {a.plugin: a.extra for a in attachments if a.extra}
        if extras:
            ctx.meta["attached"] = extras  # per plugin: what its access handler learnt for the relay
        return await self._run(ctx, request)

    async def _run(self, ctx: RequestContext, request: web.Request) -> web.StreamResponse:
        contexts = self.runtime.contexts
        contexts.open(ctx)
        ordered = sorted(ctx.policies.values(), key=lambda p: -self.priorities.get(p.plugin, 0))
        proxy = ctx.policies[PROXY]
        response: web.StreamResponse | None = None
        try:
            for policy in ordered:
                response = await policy.before(ctx)
                if response is not None:
                    return response
            response = await proxy.serve(ctx, request)
            return response
        finally:
            ctx.status = response.status if response is not None else 499
            for policy in ordered:
                try:
                    await policy.after(ctx)
                except Exception as exc:  # one stage's failure must not lose the others' accounting
                    log.event(logger, "after-stage failed", 40, plugin=policy.plugin, error=repr(exc))
            analytics.record(ctx, proxy.config.get("logging"))
            contexts.close(ctx)

    def _missing_plugins(self, attachments: list[Attachment]) -> set[str]:
        route_id = _route_of(attachments)
        instances = self.runtime.instances
        if route_id is None or instances is None:
            return set()
        since = time.time() - self.runtime.settings.instance_active_window
        return instances.expected_on_route(route_id, since) - {a.plugin for a in attachments}


def _route_of(attachments: list[Attachment]) -> str | None:
    return next((a.handler.route_id for a in attachments if a.handler.route_id), None)


def _refuse(message: str) -> web.Response:
    return openai_error(403, message, "permission_error", "policy_not_attached")


def build_app(relay: Relay) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", relay.handle)
    return app


def priorities_of(plugins: dict[str, Any]) -> dict[str, int]:
    return {name: module.priority for name, module in plugins.items()}

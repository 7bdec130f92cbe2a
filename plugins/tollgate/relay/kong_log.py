"""Handing a request's analytics to Kong's own log, through the tollgate-analytics companion plugin.

Kong's log plugins and its prometheus exporter read ``ai.proxy.*`` from Kong's serialized log. Only a plugin
running inside Kong can set those keys before the log phase, and only the relay knows the usage, at the end of the
answer. So when the companion asks (``X-Tollgate-Analytics: 1`` on the upstream request, set by Kong), the relay
answers with the entry: in a response header for a whole answer; for a stream, in a header with what is known
when it starts (``"trailer": true`` and a random ``nonce``) and, after its last byte, a trailer line
``: tollgate-analytics <nonce> {json}`` and a blank line. The companion (kong/plugins/tollgate-analytics/handler.lua)
takes both off the response, so the client never sees them. The nonce, which neither the client nor the model ever
sees, is what makes the trailer unmistakable: text a model writes cannot look like it, in any stream format.

A client that leaves mid-stream gets no trailer: nginx closes the connection to the relay and runs Kong's log phase
the moment the client leaves, before the usage is known (kong/plugins/tollgate-analytics/README.md has the source
lines). Kong's log then has the meta sent at the start; Tollgate's own metrics and log line carry the usage charged.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from . import web

from ..context import RequestContext

HEADER = "X-Tollgate-Analytics"
TRAILER = b": tollgate-analytics "


def wanted(ctx: RequestContext) -> bool:
    return ctx.headers.get(HEADER) == "1"


def encode(entry: dict[str, Any]) -> str:
    """Compact ASCII JSON without nulls (a header value, and what Lua's cjson turns into tables)."""
    return json.dumps(_without_nulls(entry), ensure_ascii=True, separators=(",", ":"))


def promise_trailer(ctx: RequestContext) -> dict[str, str]:
    """The header of an answer whose entry follows its last byte (a stream): what is known now, and the promise."""
    if not wanted(ctx):
        return {}
    nonce = ctx.meta["kong_log_trailer"] = secrets.token_hex(8)
    meta = {"provider_name": ctx.meta.get("provider"), "request_model": ctx.meta.get("request_model"),
            "response_model": ctx.meta.get("model"), "plugin_id": ctx.meta.get("plugin_id")}
    return {HEADER: encode({"proxy": {"meta": meta}, "trailer": True, "nonce": nonce})}


def trailer(nonce: str, entry: str) -> bytes:
    """The line that follows a stream's last byte (``entry`` is `encode`'s JSON)."""
    return TRAILER + nonce.encode() + b" " + entry.encode() + b"\n\n"


async def deliver(ctx: RequestContext, response: web.StreamResponse, proxy: dict[str, Any]) -> None:
    """Hand ``proxy`` (the ``ai.proxy`` entry) to the companion: as the header of a response not yet sent, or as
    the trailer of a stream that has been."""
    if not (ctx.meta.get("provider") or ctx.meta.get("cache_status") == "Hit") or not wanted(ctx):
        return   # neither a provider nor the cache answered: nothing for Kong's AI metrics, as with Kong's ai-proxy
    data = encode({"proxy": proxy})
    if not response.prepared:
        response.headers[HEADER] = data
        return
    nonce = ctx.meta.get("kong_log_trailer")
    if not nonce or ctx.meta.get("client_disconnected"):
        return   # no trailer was promised; a client that left gets none
    try:
        await response.write(trailer(nonce, data))
    except (ConnectionResetError, RuntimeError):
        ctx.meta["client_disconnected"] = True


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value

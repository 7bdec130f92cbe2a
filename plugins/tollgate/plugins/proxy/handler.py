"""Kong side of tollgate-proxy: attach this instance's policy to the request, and tell Kong's log what is known.

Round trips per request in access: HandleEvent, the consumer (read here once for every Tollgate plugin of the
request, see plugins/base.py) and the attachment header. With ``logging.log_statistics`` (Kong's ai-proxy switch for
its analytics in Kong's log), one more: ``kong.log.set_serialize_value("ai.proxy.meta", {...})`` with what the config
alone decides (plugin_id, and provider_name / request_model when every target agrees), so Kong's own log plugins see
Kong's ai-proxy keys; only that crosses the socket for them. Routes whose targets use ``$(uri_captures.x)`` templates
add one call to read the captures, which only Kong's router knows.
"""

from __future__ import annotations

from typing import Any

from ...attachments import HEADER
from ..base import AttachingPlugin
from .policy import ProxyPolicy


class Plugin(AttachingPlugin):
    name = "tollgate-proxy"
    policy_class = ProxyPolicy

    async def access(self, kong: Any) -> None:
        policy: ProxyPolicy = self.policy  # type: ignore[assignment]
        extra = None
        if policy.needs_uri_captures:
            extra = {"uri_captures": captures_of(await kong.request.get_uri_captures())}
        await kong.service.request.add_header(HEADER, await self.attach(kong, extra))
        if policy.access_meta:
            await kong.log.set_serialize_value("ai.proxy.meta", policy.access_meta)


def captures_of(raw: Any) -> dict[str, str]:
    """Kong's ``{named = {...}, unnamed = {...}}`` as one map: names, and positions as "1", "2"..."""
    out: dict[str, str] = {}
    if not isinstance(raw, dict):
        return out
    unnamed = raw.get("unnamed")
    if isinstance(unnamed, dict):
        items = unnamed.items()
    elif isinstance(unnamed, list):
        items = ((i, v) for i, v in enumerate(unnamed, start=1))
    else:
        items = ()
    for key, value in items:
        if isinstance(value, (str, int, float)):
            out[str(key)] = str(value)
    named = raw.get("named")
    if isinstance(named, dict):
        for key, value in named.items():
            if isinstance(value, (str, int, float)):
                out[str(key)] = str(value)
    return out

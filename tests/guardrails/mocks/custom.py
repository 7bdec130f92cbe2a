"""A custom guard service for the generic HTTP guard (like one behind Kong's ai-custom-guardrail): ``POST
/custom/check`` with ``{"input", "phase"}`` and ``X-Api-Key`` -> ``{"verdict": {"action": "BLOCK" | "ALLOW",
"reasons": [...]}, "redacted": text}``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import masked, violent

KEY = "custom-guard-key"


async def check(request: web.Request, data: Any) -> web.Response:
    if request.headers.get("X-Api-Key") != KEY and request.query.get("key") != KEY:
        return web.json_response({"error": "unauthorized"}, status=401)
    if not isinstance(data, dict) or not isinstance(data.get("input"), str):
        return web.json_response({"error": "input is required"}, status=400)
    text = data["input"]
    blocked = violent(text)
    return web.json_response({"verdict": {"action": "BLOCK" if blocked else "ALLOW",
                                          "reasons": ["violence"] if blocked else []},
                              "redacted": masked(text)})


ROUTES = [("POST", "/custom/check", check)]

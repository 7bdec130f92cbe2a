"""Lakera Guard's ``POST /v2/guard``: ``{"messages", "project_id"?, "breakdown"?}`` -> ``{"flagged", "metadata",
"breakdown"?: [{"project_id", "policy_id", "detector_id", "detector_type", "detected", "message_id"}]}``, Bearer key
required."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import violent

KEY = "lk-test-key"
DETECTORS = ["prompt_attack", "moderated_content/violence", "pii/credit_card"]


async def guard(request: web.Request, data: Any) -> web.Response:
    if request.headers.get("Authorization") != f"Bearer {KEY}":
        return web.json_response({"message": "Unauthorized"}, status=401)
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, list) or not messages:
        return web.json_response({"message": "messages is required"}, status=400)
    text = "\n".join(m.get("content", "") for m in messages if isinstance(m, dict))
    found = {"prompt_attack": "ignore all previous" in text.lower(),
             "moderated_content/violence": violent(text), "pii/credit_card": False}
    answer: dict[str, Any] = {"flagged": any(found.values()), "metadata": {"request_uuid": "mock-uuid"}}
    if data.get("breakdown"):
        answer["breakdown"] = [{"project_id": data.get("project_id") or "project-default", "policy_id": "policy-1",
                                "detector_id": f"detector-{d}", "detector_type": d, "detected": found[d],
                                "message_id": len(messages) - 1} for d in DETECTORS]
    return web.json_response(answer)


ROUTES = [("POST", "/v2/guard", guard)]

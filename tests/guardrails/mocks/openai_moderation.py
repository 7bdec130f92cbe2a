"""OpenAI's ``POST /v1/moderations``: ``{"model", "input"}`` -> ``{"id", "model", "results": [{"flagged",
"categories", "category_scores"}]}``, Bearer key required."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import mild, violent

KEY = "sk-moderation-test-key"
CATEGORIES = ["harassment", "hate", "self-harm", "sexual", "violence"]


def error(status: int, message: str, code: str | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                        "code": code}}, status=status)


async def moderate(request: web.Request, data: Any) -> web.Response:
    if request.headers.get("Authorization") != f"Bearer {KEY}":
        return error(401, "Incorrect API key provided", "invalid_api_key")
    if not isinstance(data, dict) or not isinstance(data.get("input"), (str, list)):
        return error(400, "'input' is a required property")
    inputs = [data["input"]] if isinstance(data["input"], str) else data["input"]
    results = []
    for text in inputs:
        scores = {c: 0.0001 for c in CATEGORIES}
        if violent(text):
            scores["violence"] = 0.93
        elif mild(text):
            scores["violence"] = 0.42
        marked = {c: s >= 0.5 for c, s in scores.items()}
        results.append({"flagged": any(marked.values()), "categories": marked, "category_scores": scores})
    return web.json_response({"id": "modr-mock", "model": data.get("model") or "omni-moderation-latest",
                              "results": results})


ROUTES = [("POST", "/v1/moderations", moderate)]

"""Azure AI Content Safety's ``POST /contentsafety/text:analyze?api-version=...``: ``{"text", "categories"?,
"blocklistNames"?, "haltOnBlocklistHit"?, "outputType"?}`` -> ``{"blocklistsMatch": [...], "categoriesAnalysis":
[{"category", "severity"}]}``, ``Ocp-Apim-Subscription-Key`` required. The mock knows one blocklist,
``competitors``, holding ``acme``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import mild, violent

KEY = "azure-cs-test-key"
CATEGORIES = ["Hate", "SelfHarm", "Sexual", "Violence"]
BLOCKLISTS = {"competitors": ["acme"]}


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def analyze(request: web.Request, data: Any) -> web.Response:
    if request.headers.get("Ocp-Apim-Subscription-Key") != KEY:
        return error(401, "401", "Access denied due to invalid subscription key")
    if not request.query.get("api-version"):
        return error(404, "404", "Resource not found")
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return error(400, "InvalidRequestBody", "text is required")
    text = data["text"]
    if len(text) > 10000:
        return error(400, "InvalidRequestBody", "text is longer than 10000 characters")
    matches = []
    for name in data.get("blocklistNames") or ():
        if name not in BLOCKLISTS:
            return error(404, "NotFound", f"blocklist {name} not found")
        for k, item in enumerate(BLOCKLISTS[name]):
            if item in text.lower():
                matches.append({"blocklistName": name, "blocklistItemId": f"item-{k}", "blocklistItemText": item})
    if matches and data.get("haltOnBlocklistHit"):
        return web.json_response({"blocklistsMatch": matches, "categoriesAnalysis": []})
    eight = data.get("outputType") == "EightSeverityLevels"
    analyses = []
    for category in data.get("categories") or CATEGORIES:
        severity = 0
        if category == "Violence":
            severity = 6 if violent(text) else 2 if mild(text) else 0
            if eight and severity:
                severity += 1
        analyses.append({"category": category, "severity": severity})
    return web.json_response({"blocklistsMatch": matches, "categoriesAnalysis": analyses})


ROUTES = [("POST", "/contentsafety/text:analyze", analyze)]

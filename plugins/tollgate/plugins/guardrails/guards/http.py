"""A generic HTTP guard service, like Kong's ai-custom-guardrail.

``request``: ``url``, ``headers``, ``queries``, ``auth`` (``location`` header or query, ``name``, ``value``) and a
``body`` template: JSON in which the string ``$(content)`` stands for the text judged and ``$(phase)`` for
``input`` / ``output``. They are replaced inside JSON strings after the template is parsed, so the text can never
change the body's structure. ``response`` reads the service's JSON answer with dotted paths (``results.0.flagged``):
``block`` blocks when its value is ``true`` or one of ``block_values``; ``block_reason`` (a string or a list of
them) names the categories; ``masked`` is a text to send on instead, when the service rewrote it. Kong writes these
as Lua expressions; Tollgate takes data paths, which cannot run code.
"""

from __future__ import annotations

from typing import Any

import orjson

from .base import GuardConfigError, Phase, Verdict
from .service import ServiceGuard

CONTENT, PHASE = "$(content)", "$(phase)"
MISSING = object()


def lookup(data: Any, path: str) -> Any:
    """The value at a dotted path (list items by index), or ``MISSING``."""
    for key in path.removeprefix("$.").split("."):
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and key.lstrip("-").isdigit() and -len(data) <= int(key) < len(data):
            data = data[int(key)]
        else:
            return MISSING
    return data


def fill(template: Any, values: dict[str, str]) -> Any:
    """The template with each placeholder replaced inside its strings (keys and values)."""
    if isinstance(template, str):
        for placeholder, value in values.items():
            template = template.replace(placeholder, value)
        return template
    if isinstance(template, list):
        return [fill(item, values) for item in template]
    if isinstance(template, dict):
        return {fill(k, values): fill(v, values) for k, v in template.items()}
    return template


class HttpGuard(ServiceGuard):
    type = "http"
    fields = [
        {"request": {"type": "record", "fields": [
            {"url": {"type": "string"}},
            {"headers": {"type": "map", "keys": {"type": "string", "len_min": 1},
                         "values": {"type": "string", "referenceable": True}}},
            {"queries": {"type": "map", "keys": {"type": "string", "len_min": 1},
                         "values": {"type": "string", "referenceable": True}}},
            {"auth": {"type": "record", "fields": [
                {"location": {"type": "string", "default": "header", "one_of": ["header", "query"]}},
                {"name": {"type": "string"}},
                {"value": {"type": "string", "referenceable": True, "encrypted": True}},
            ]}},
            {"body": {"type": "string", "default": '{"text": "$(content)"}', "len_min": 2}},
        ]}},
        {"response": {"type": "record", "fields": [
            {"block": {"type": "string", "len_min": 1}},
            {"block_values": {"type": "array", "elements": {"type": "string"}}},
            {"block_reason": {"type": "string", "len_min": 1}},
            {"masked": {"type": "string", "len_min": 1}},
        ]}},
    ]

    def configure(self, settings: dict[str, Any]) -> None:
        request, response = settings.get("request") or {}, settings.get("response") or {}
        if not request.get("url"):
            raise GuardConfigError(f"guard {self.name}: http.request.url is required")
        if not response.get("block"):
            raise GuardConfigError(f"guard {self.name}: http.response.block (a path in the answer) is required")
        try:
            self.template = orjson.loads(request.get("body") or '{"text": "$(content)"}')
        except orjson.JSONDecodeError:
            raise GuardConfigError(f"guard {self.name}: http.request.body is not JSON") from None
        if CONTENT not in (request.get("body") or CONTENT):
            raise GuardConfigError(f"guard {self.name}: http.request.body must contain {CONTENT}")
        self.url = request["url"]
        self.headers = dict(request.get("headers") or {})
        self.params = dict(request.get("queries") or {})
        auth = request.get("auth") or {}
        if auth.get("name") and auth.get("value"):
            (self.params if auth.get("location") == "query" else self.headers)[auth["name"]] = auth["value"]
        self.block = response["block"]
        self.block_values = set(response.get("block_values") or ())
        self.reason, self.masked = response.get("block_reason"), response.get("masked")

    async def _check(self, text: str, phase: Phase) -> Verdict:
        answer = await self.post_json(self.url, fill(self.template, {CONTENT: text, PHASE: phase}), self.headers,
                                      self.params or None)
        decision = lookup(answer, self.block)
        if decision is MISSING:
            self.unreadable(f"nothing at {self.block}")
        if decision is True or (isinstance(decision, (str, int, float)) and not isinstance(decision, bool)
                                and str(decision) in self.block_values):
            return Verdict(blocked=True, categories=self._reasons(answer))
        masked = lookup(answer, self.masked) if self.masked else MISSING
        if isinstance(masked, str) and masked != text:
            return Verdict(blocked=False, masked=masked)
        return Verdict(blocked=False)

    def _reasons(self, answer: Any) -> tuple[str, ...]:
        found = lookup(answer, self.reason) if self.reason else MISSING
        if isinstance(found, str):
            return (found,)
        if isinstance(found, list):
            return tuple(r for r in found if isinstance(r, str))
        return ()

"""Prompt templates, as Kong's ai-prompt-template.

A client sends ``"messages": "{template://NAME}"`` (or ``"prompt"`` for completions) and ``"properties"``; the
template, a JSON request body with ``{{property}}`` placeholders, is filled in and becomes the request. Property
values are JSON-escaped before they go in, so a value can only ever be text inside its string: it cannot close the
string, add fields or add messages. Unlike Kong, the client's other fields (``model``, ``stream``, ``temperature``...)
are kept, under the template's own.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_PLACEHOLDER = re.compile(r"\{\{([A-Za-z0-9_]+)\}\}")
_PREFIX, _SUFFIX = "{template://", "}"


class TemplateError(ValueError):
    """The request cannot be templated (400 for the client); the message says why."""


class TemplateConfigError(ValueError):
    """A template that can never render to a JSON object (a config error when the instance starts)."""


class Templates:
    def __init__(self, config: dict[str, Any]):
        self.by_name: dict[str, str] = {}
        for i, entry in enumerate(config.get("templates") or []):
            name, template = entry["name"], entry["template"]
            if name in self.by_name:
                raise TemplateConfigError(f"templates[{i}].name: {name!r} is defined twice")
            try:
                sample = orjson.loads(_PLACEHOLDER.sub("x", template))
            except orjson.JSONDecodeError as exc:
                raise TemplateConfigError(f"templates[{i}].template: not a JSON request body ({exc})") from None
            if not isinstance(sample, dict):
                raise TemplateConfigError(f"templates[{i}].template: must be a JSON object")
            self.by_name[name] = template
        self.allow_untemplated = config.get("allow_untemplated_requests") is not False

    def __bool__(self) -> bool:
        return bool(self.by_name) or not self.allow_untemplated

    def apply(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The templated request, or None when ``body`` calls no template (and may go on as it is)."""
        messages, prompt = body.get("messages"), body.get("prompt")
        if messages is not None and prompt is not None:
            raise TemplateError("cannot run 'messages' and 'prompt' templates at the same time")
        name = _reference(messages if messages is not None else prompt)
        if name is None:
            if self.allow_untemplated:
                return None
            raise TemplateError("this LLM route only supports templated requests")
        template = self.by_name.get(name)
        if template is None:
            raise TemplateError(f"could not find template name [{name}]")
        rendered = render(template, body.get("properties") or {})
        rest = {k: v for k, v in body.items() if k not in ("messages", "prompt", "properties")}
        return {**rest, **rendered}


def _reference(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(_PREFIX) and value.endswith(_SUFFIX):
        return value[len(_PREFIX):-len(_SUFFIX)]
    return None


def render(template: str, properties: Any) -> dict[str, Any]:
    """``template`` with each ``{{name}}`` replaced by its property, JSON-escaped; TemplateError when a property
    is missing or not a string."""
    if not isinstance(properties, dict):
        raise TemplateError("properties must be an object")
    escaped: dict[str, str] = {}
    for key, value in properties.items():
        if not isinstance(value, str):
            raise TemplateError(f"property values must be strings, got {type(value).__name__} for [{key}]")
        escaped[key] = orjson.dumps(value).decode()[1:-1]
    missing = sorted({m for m in _PLACEHOLDER.findall(template) if m not in escaped})
    if missing:
        raise TemplateError("missing template parameters: " + ", ".join(f"[{m}]" for m in missing))
    text = _PLACEHOLDER.sub(lambda m: escaped[m.group(1)], template)
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise TemplateError("the template did not render to a JSON request body") from None
    if not isinstance(body, dict):
        raise TemplateError("the template did not render to a JSON object")
    return body

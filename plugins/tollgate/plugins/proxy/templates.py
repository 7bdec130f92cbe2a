"""``$(headers.x)``, ``$(query_params.x)`` and ``$(uri_captures.x)`` in a target's model name and options.

Kong's ai-proxy syntax. A template is the one way a client can pick a model, and only where the config puts one,
so a rendered value is held to what a model name (or one URL path segment) may contain: it can never add a path,
a query, another host or credentials.

* ``headers.x``: the request header ``x`` (case-insensitive), as the client sent it through Kong.
* ``query_params.x``: the first ``x`` parameter of the client's query string.
* ``uri_captures.x``: a named (or numbered, ``uri_captures.1``) capture of the Kong route's regex path. The relay
  only sees the upstream path, so the proxy's ``access`` handler fetches the captures from Kong (one extra PDK
  call, made only on routes whose config uses ``uri_captures``) and hands them to the relay with its attachment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import parse_qsl

KINDS = ("headers", "query_params", "uri_captures")
_TEMPLATE = re.compile(r"\$\((headers|query_params|uri_captures)\.([^()\s]+)\)")
# A model name or option value: letters, digits and the punctuation real model ids use
# (gpt-4o-mini, claude-3-5-sonnet@20240620, meta-llama/Llama-3-8B, anthropic.claude-v2:1).
_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,255}")
# Inside a URL a value is one path segment (or query value) at most.
_URL_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,255}")
URL_OPTIONS = ("upstream_url", "upstream_path")


class TemplateError(ValueError):
    """A template could not be rendered for this request (the client's fault: a 400)."""


@dataclass
class Sources:
    """What templates read, for one request."""

    headers: Any                                   # case-insensitive mapping (aiohttp's CIMultiDict)
    query: str = ""                                # the raw query string
    captures: Mapping[str, Any] = field(default_factory=dict)
    _params: dict[str, str] | None = None

    def value(self, kind: str, name: str) -> str | None:
        if kind == "headers":
            return self.headers.get(name) if self.headers is not None else None
        if kind == "query_params":
            if self._params is None:
                self._params = {}
                for key, value in parse_qsl(self.query or "", keep_blank_values=True):
                    self._params.setdefault(key, value)
            return self._params.get(name)
        value = self.captures.get(name)
        return None if value is None else str(value)


def has_templates(value: Any) -> bool:
    if isinstance(value, str):
        return _TEMPLATE.search(value) is not None
    if isinstance(value, dict):
        return any(has_templates(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_templates(v) for v in value)
    return False


def kinds_used(value: Any) -> set[str]:
    if isinstance(value, str):
        return {m.group(1) for m in _TEMPLATE.finditer(value)}
    if isinstance(value, dict):
        return set().union(*(kinds_used(v) for v in value.values())) if value else set()
    if isinstance(value, (list, tuple)):
        return set().union(*(kinds_used(v) for v in value)) if value else set()
    return set()


def check_url_template(url: str, where: str) -> None:
    """Refuse a template in the scheme or host of a URL: a client must never choose where credentials go."""
    first = _TEMPLATE.search(url)
    if first is None:
        return
    scheme_end = url.find("://")
    authority_end = url.find("/", scheme_end + 3) if scheme_end >= 0 else 0
    if scheme_end >= 0 and (authority_end < 0 or first.start() < authority_end):
        raise ValueError(f"{where}: a template may not choose the scheme or host of a URL (only path or query)")


def render(text: str, sources: Sources, *, in_url: bool = False) -> str:
    """``text`` with its templates filled in; TemplateError names what is missing or not allowed."""
    if "$(" not in text:
        return text
    allowed = _URL_VALUE if in_url else _VALUE

    def fill(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2)
        value = sources.value(kind, name)
        if value is None or value == "":
            raise TemplateError(f"this route chooses its model from {_describe(kind, name)}, which the request "
                                "does not have")
        if not allowed.fullmatch(value) or ".." in value or "//" in value:
            raise TemplateError(f"{_describe(kind, name)} has characters that are not allowed in a model name")
        return value

    return _TEMPLATE.sub(fill, text)


def render_options(options: dict[str, Any], sources: Sources) -> dict[str, Any]:
    """A copy of a target's options with every string template filled in."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, str):
            out[key] = render(value, sources, in_url=key in URL_OPTIONS)
        elif isinstance(value, dict):
            out[key] = render_options(value, sources)
        else:
            out[key] = value
    return out


def _describe(kind: str, name: str) -> str:
    return {"headers": f"the header {name}", "query_params": f"the query parameter {name}",
            "uri_captures": f"the path capture {name}"}[kind]

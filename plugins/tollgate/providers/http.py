"""What drivers of JSON-over-HTTP providers share: auth placement and the request envelope.

A driver says which path serves each route type and how to write the body; this writes the
URL, the headers and the configured credentials the same way for all of them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from .base import ProviderError, Target, UpstreamRequest


def apply_auth(url: str, headers: dict[str, str], body: dict[str, Any], auth: dict[str, Any]) -> str:
    """Kong's generic auth fields: a header, or a parameter in the query or the body."""
    if auth.get("header_name") and auth.get("header_value"):
        headers[auth["header_name"]] = auth["header_value"]
    if auth.get("param_name") and auth.get("param_value"):
        if auth.get("param_location") == "body":
            body[auth["param_name"]] = auth["param_value"]
        else:
            parts = urlsplit(url)
            query = parse_qsl(parts.query) + [(auth["param_name"], auth["param_value"])]
            url = urlunsplit(parts._replace(query=urlencode(query)))
    return url


class JSONDriver:
    """Base of drivers whose provider takes one JSON POST per request, at a path per route type."""

    name: str
    default_base: str
    paths: dict[str, str]

    def url(self, route_type: str, target: Target, body: dict[str, Any] | None = None) -> str:
        options = target.options or {}
        if options.get("upstream_url"):
            return options["upstream_url"]
        return self.default_base + (options.get("upstream_path") or self.paths[route_type])

    def payload(self, route_type: str, body: dict[str, Any], target: Target, stream: bool
                ) -> tuple[dict[str, Any], bool]:
        """The provider's request body for an OpenAI-format ``body``, and whether it streams."""
        raise NotImplementedError

    def build_request(self, route_type: str, body: dict[str, Any], target: Target, stream: bool) -> UpstreamRequest:
        if route_type not in self.paths:
            raise ProviderError(400, f"{self.name} does not serve route type {route_type}", "invalid_request_error",
                                "unsupported_route")
        payload, stream = self.payload(route_type, body, target, stream)
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
        url = apply_auth(self.url(route_type, target, body), headers, payload, target.auth or {})
        return UpstreamRequest("POST", url, headers, orjson.dumps(payload))

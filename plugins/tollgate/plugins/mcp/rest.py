"""REST endpoints exposed as MCP tools (Kong's conversion modes).

A tool names an HTTP method, a path template (``/users/{id}/orders``) and OpenAPI-style parameters in the path, the
query or a header; arguments fill them in. A path parameter is one whole path segment, percent-encoded with nothing
left safe, and the dot segments ``.`` and ``..`` are refused: neither ``../``, nor an encoded slash, nor a bare
``..`` can take the call outside the declared path.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from ... import scrub
from ...relay import upstream as http
from .jsonrpc import INVALID_PARAMS, REQUEST_TIMEOUT, UPSTREAM_ERROR, JsonRpcError

_PLACEHOLDER = re.compile(r"\{([^{}/]+)\}")
_SCALARS = (str, int, float)
MAX_ANSWER = 4 * 1024 * 1024


class RestConfigError(ValueError):
    """A converted tool's config cannot work (checked when the plugin instance starts)."""


@dataclass(frozen=True)
class Parameter:
    name: str
    where: str            # path | query | header
    required: bool
    schema: dict[str, Any]
    description: str | None


@dataclass(frozen=True)
class RestTool:
    name: str
    description: str
    method: str
    path: str
    parameters: tuple[Parameter, ...]
    body_schema: dict[str, Any] | None
    body_required: bool
    annotations: dict[str, Any] | None
    base_url: str
    headers: dict[str, str]

    @classmethod
    def from_config(cls, tool: dict[str, Any], rest: dict[str, Any]) -> "RestTool":
        name, path = tool["name"], tool.get("path") or ""
        base = (rest or {}).get("base_url")
        if not base:
            raise RestConfigError(f"tool {name}: converted tools need rest.base_url")
        if not path.startswith("/"):
            raise RestConfigError(f"tool {name}: path must start with '/'")
        params = tuple(Parameter(p["name"], p["in"], bool(p.get("required")) or p["in"] == "path",
                                 p.get("schema") if isinstance(p.get("schema"), dict) else {"type": "string"},
                                 p.get("description")) for p in tool.get("parameters") or [])
        declared = {p.name for p in params if p.where == "path"}
        used = set(_PLACEHOLDER.findall(path))
        if used != declared:
            raise RestConfigError(f"tool {name}: path placeholders {sorted(used)} and path parameters "
                                  f"{sorted(declared)} differ")
        body = tool.get("request_body") if isinstance(tool.get("request_body"), dict) else None
        body_schema = None
        if body is not None:
            content = body.get("content") if isinstance(body.get("content"), dict) else {}
            media = content.get("application/json") if isinstance(content.get("application/json"), dict) else {}
            body_schema = media.get("schema") or body.get("schema") or {"type": "object"}
        return cls(name, tool.get("description") or f"{tool['method']} {path}", tool["method"], path, params,
                   body_schema, bool(body and body.get("required")), tool.get("annotations") or None,
                   base.rstrip("/"), dict((rest or {}).get("headers") or {}))

    def descriptor(self) -> dict[str, Any]:
        """The tool as ``tools/list`` shows it."""
        properties: dict[str, Any] = {}
        for p in self.parameters:
            properties[p.name] = {**p.schema, **({"description": p.description} if p.description else {})}
        required = [p.name for p in self.parameters if p.required]
        if self.body_schema is not None:
            properties["body"] = self.body_schema
            if self.body_required:
                required.append("body")
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        out: dict[str, Any] = {"name": self.name, "description": self.description, "inputSchema": schema}
        if self.annotations:
            out["annotations"] = self.annotations
        return out

    def build(self, arguments: dict[str, Any]) -> tuple[URL, dict[str, str], dict[str, str], bytes | None]:
        """(url, query, headers, body) for ``arguments``; `JsonRpcError` -32602 when they cannot fill the call."""
        path = self.path
        query: dict[str, str] = {}
        headers: dict[str, str] = dict(self.headers)
        for p in self.parameters:
            value = arguments.get(p.name)
            if value is None:
                if p.required:
                    raise JsonRpcError(INVALID_PARAMS, f"missing required argument {p.name!r}")
                continue
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, _SCALARS):
                text = str(value)
            else:
                raise JsonRpcError(INVALID_PARAMS, f"argument {p.name!r} must be a string, number or boolean")
            if p.where == "path":
                path = path.replace("{" + p.name + "}", _segment(p.name, text))
            elif p.where == "query":
                query[p.name] = text
            else:
                if any(c in text for c in "\r\n\0"):
                    raise JsonRpcError(INVALID_PARAMS, f"argument {p.name!r} is not a valid header value")
                headers[p.name] = text
        body = None
        if self.body_schema is not None and arguments.get("body") is not None:
            body = orjson.dumps(arguments["body"])
            headers["Content-Type"] = "application/json"
        elif self.body_required:
            raise JsonRpcError(INVALID_PARAMS, "missing required argument 'body'")
        return URL(self.base_url + path, encoded=True), query, headers, body

    async def call(self, arguments: dict[str, Any], timeout: float) -> dict[str, Any]:
        """The REST call as an MCP ``CallToolResult``: an HTTP error status is a tool error (``isError``), which
        the model can read and act on; a dead or silent API is a JSON-RPC error."""
        url, query, headers, body = self.build(arguments)
        try:
            async with asyncio.timeout(timeout):
                async with http.session().request(self.method, url.with_query(query) if query else url,
                                                  headers=headers, data=body) as answer:
                    raw = await answer.content.read(MAX_ANSWER + 1)
                    status = answer.status
        except TimeoutError:
            raise JsonRpcError(REQUEST_TIMEOUT, f"tool {self.name}: the API did not answer within {timeout:g} s"
                               ) from None
        except aiohttp.ClientError as exc:
            raise JsonRpcError(UPSTREAM_ERROR, f"tool {self.name}: the API is unreachable: {type(exc).__name__}"
                               ) from None
        if len(raw) > MAX_ANSWER:
            raise JsonRpcError(UPSTREAM_ERROR, f"tool {self.name}: the API's answer is larger than {MAX_ANSWER} bytes")
        text = raw.decode("utf-8", "replace")
        if status >= 400:   # an API's error may echo the credential it was called with ("invalid key X")
            text = scrub.redact(text)
        result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": status >= 400}
        try:
            parsed = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and status < 400:
            result["structuredContent"] = parsed
        return result


def _segment(name: str, value: str) -> str:
    """One path segment: every reserved character encoded (``/`` and ``%`` included); dot segments refused."""
    if value in ("", ".", ".."):
        raise JsonRpcError(INVALID_PARAMS, f"argument {name!r} is not a valid path segment")
    return quote(value, safe="")

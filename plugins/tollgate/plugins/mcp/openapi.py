"""Converted tools from an OpenAPI 3 document: one tool per operation that has an ``operationId``.

The document's path, query and header parameters (path-level ones included) and its JSON request body become the
tool's config, exactly as if written under ``tools``; local ``$ref``s are resolved (cycles are refused).
"""

from __future__ import annotations

from typing import Any

import yaml

from .rest import RestConfigError

METHODS = ("get", "post", "put", "patch", "delete")
MAX_DEPTH = 32


def tools_from_openapi(document: Any, only: list[str] | None = None) -> list[dict[str, Any]]:
    """Tool configs (the ``tools`` entry format) for the document's operations, or those named in ``only``."""
    if isinstance(document, str):
        try:
            document = yaml.safe_load(document)
        except yaml.YAMLError as exc:
            raise RestConfigError(f"openapi: not a JSON or YAML document: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
        raise RestConfigError("openapi: the document has no paths")
    tools = []
    for path, item in document["paths"].items():
        item = _resolve(document, item)
        shared = [_resolve(document, p) for p in item.get("parameters") or []]
        for method in METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict) or not operation.get("operationId"):
                continue
            name = operation["operationId"]
            if only and name not in only:
                continue
            own = [_resolve(document, p) for p in operation.get("parameters") or []]
            merged = {(p.get("name"), p.get("in")): p for p in [*shared, *own]}   # the operation's win
            tool: dict[str, Any] = {
                "name": name, "method": method.upper(), "path": path,
                "description": operation.get("summary") or operation.get("description") or f"{method.upper()} {path}",
                "parameters": [{"name": p["name"], "in": p["in"], "required": bool(p.get("required")),
                                "description": p.get("description"), "schema": p.get("schema") or {"type": "string"}}
                               for p in merged.values() if p.get("in") in ("path", "query", "header")],
            }
            body = _resolve(document, operation.get("requestBody")) if operation.get("requestBody") else None
            if body:
                tool["request_body"] = body
            tools.append(tool)
    if only and len(tools) != len(set(only)):
        missing = sorted(set(only) - {t["name"] for t in tools})
        raise RestConfigError(f"openapi: no operation with operationId {', '.join(missing)}")
    return tools


def _resolve(document: dict[str, Any], value: Any, depth: int = 0, seen: frozenset[str] = frozenset()) -> Any:
    """``value`` with every local ``$ref`` replaced by what it points at."""
    if depth > MAX_DEPTH:
        raise RestConfigError("openapi: the document nests too deeply")
    if isinstance(value, list):
        return [_resolve(document, v, depth + 1, seen) for v in value]
    if not isinstance(value, dict):
        return value
    ref = value.get("$ref")
    if isinstance(ref, str):
        if not ref.startswith("#/"):
            raise RestConfigError(f"openapi: only local references are supported ({ref})")
        if ref in seen:
            raise RestConfigError(f"openapi: {ref} refers to itself")
        target: Any = document
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise RestConfigError(f"openapi: {ref} points nowhere")
            target = target[part]
        return _resolve(document, target, depth + 1, seen | {ref})
    return {k: _resolve(document, v, depth + 1, seen) for k, v in value.items()}

"""Errors as the client's SDK expects them: OpenAI's JSON error body with the right status on LLM routes, a
JSON-RPC error on MCP routes (tollgate-mcp's clients are MCP SDKs, which only read JSON-RPC)."""

from __future__ import annotations

from . import web
import orjson

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 413: "invalid_request_error", 415: "invalid_request_error",
          429: "rate_limit_exceeded", 502: "api_error", 503: "api_error", 504: "timeout"}



def openai_error(status: int, message: str, type_: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None, param: str | None = None) -> web.Response:
    default = "invalid_request_error" if 400 <= status < 500 else "server_error"  # OpenAI's type for other 4xx
    body = {"error": {"message": message, "type": type_ or _TYPES.get(status, default),
                      "param": param, "code": code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        headers=headers)


def refusal(status: int, message: str, code: str, *, mcp: bool, type_: str | None = None) -> web.Response:
    """The relay's own refusal (before any plugin's stage ran) in the format of the route's clients."""
    if mcp:
        from ..plugins.mcp import jsonrpc   # here: tollgate-mcp's modules import this one

        codes = {400: jsonrpc.INVALID_REQUEST, 403: jsonrpc.FORBIDDEN, 413: jsonrpc.INVALID_REQUEST}
        error = jsonrpc.JsonRpcError(codes.get(status, jsonrpc.INTERNAL_ERROR), message,
                                     {"reason": code}, status=status)
        return jsonrpc.error_response(None, error)
    return openai_error(status, message, type_, code)

"""JSON-RPC 2.0 as MCP uses it: parsing one message, error codes with their HTTP statuses, and the two answer
encodings of Streamable HTTP (one JSON body, or SSE events)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from ...relay import web

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# MCP's own codes (2026-07-28 transport).
REQUEST_TIMEOUT = -32001
HEADER_MISMATCH = -32020
UNSUPPORTED_PROTOCOL_VERSION = -32022
# Tollgate's, in JSON-RPC's implementation-defined server range.
FORBIDDEN = -32003
RATE_LIMITED = -32029
UPSTREAM_ERROR = -32050

# The HTTP status each code answers with when it ends the request (the SDK's table plus Tollgate's codes).
HTTP_STATUS = {PARSE_ERROR: 400, INVALID_REQUEST: 400, INVALID_PARAMS: 400, HEADER_MISMATCH: 400,
               UNSUPPORTED_PROTOCOL_VERSION: 400, METHOD_NOT_FOUND: 404, FORBIDDEN: 403, RATE_LIMITED: 429,
               REQUEST_TIMEOUT: 504, UPSTREAM_ERROR: 502, INTERNAL_ERROR: 500}

RequestId = str | int | None

_NO_ID = object()


class JsonRpcError(Exception):
    """An error answer: ``status`` is the HTTP status of the reply when this error is the whole answer."""

    def __init__(self, code: int, message: str, data: Any = None, status: int | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.status = status if status is not None else HTTP_STATUS.get(code, 200)
        self.headers = headers or {}

    def error_object(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


@dataclass(slots=True)
class Message:
    """One JSON-RPC message from the client: a request (``id`` present) or a notification. (Not frozen: a frozen
    dataclass sets each field through ``object.__setattr__``, and one is made per request.)"""

    method: str
    params: dict[str, Any]
    id: RequestId
    is_request: bool


def parse(body: bytes) -> Message | list[Any] | dict[str, Any]:
    """The posted body as one message; a batch comes back as the list (the caller decides if it is allowed) and a
    posted response as its dict. Raises `JsonRpcError` (-32700 / -32600) for anything else."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise JsonRpcError(PARSE_ERROR, "Parse error: the body is not valid JSON") from None
    if isinstance(value, list):
        return value
    return message_of(value)


def message_of(value: Any) -> Message | dict[str, Any]:
    if type(value) is not dict or value.get("jsonrpc") != "2.0":
        raise JsonRpcError(INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 object")
    method = value.get("method")
    if method is None and "method" not in value and ("result" in value or "error" in value):
        return value  # a response the client sends back (to a server request): nothing for a gateway to route
    if type(method) is not str or not method:
        raise JsonRpcError(INVALID_REQUEST, "Invalid Request: method must be a non-empty string")
    params = value.get("params", {})
    if type(params) is not dict:
        raise JsonRpcError(INVALID_REQUEST, "Invalid Request: params must be an object")
    request_id = value.get("id", _NO_ID)
    if request_id is _NO_ID:
        return Message(method, params, None, False)
    if type(request_id) is not str and type(request_id) is not int:     # not None, a bool, a float...
        raise JsonRpcError(INVALID_REQUEST, "Invalid Request: id must be a string or an integer")
    return Message(method, params, request_id, True)


def result_body(request_id: RequestId, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error_body(request_id: RequestId, error: JsonRpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.error_object()}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def error_response(request_id: RequestId, error: JsonRpcError, headers: dict[str, str] | None = None
                   ) -> web.Response:
    return json_response(error_body(request_id, error), error.status, {**error.headers, **(headers or {})})


def sse_event(body: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: message\ndata: ".encode() + orjson.dumps(body) + b"\n\n"

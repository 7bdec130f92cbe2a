"""Reading a request body with the route's size limit, before any of it is kept.

The limit is the answering plugin's ``max_request_body_size`` (Kong's ai-proxy field; tollgate-mcp has the same),
capped at `MAX_BODY`, the most the relay ever holds for one request. A declared ``Content-Length`` over the limit
is refused before a byte is read; a chunked body is refused as soon as it passes the limit. Without the cap, one
client could make the relay hold `MAX_BODY` per request on a route that accepts 1 MiB.
"""

from __future__ import annotations

from typing import Any

from . import web

MAX_BODY = 64 * 1024 * 1024
DEFAULT_LIMIT = 1048576     # max_request_body_size's default in tollgate-proxy and tollgate-mcp


class BodyTooLarge(Exception):
    def __init__(self, limit: int, size: int | None):
        self.limit, self.size = limit, size
        seen = f"is {size} bytes" if size is not None else "is larger than that"
        super().__init__(f"request body {seen}, over this route's limit of {limit} bytes (max_request_body_size)")


def limit_of(terminal: Any) -> int:
    """The body limit of a route answered by ``terminal`` (its policy)."""
    configured = getattr(terminal, "config", {}).get("max_request_body_size") or DEFAULT_LIMIT
    return min(int(configured), MAX_BODY)


async def read(request: web.BaseRequest, limit: int) -> bytes:
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit, declared)
    try:
        return await _read(request.content, limit)
    except web.RequestBodyTooLarge:   # past the server's own cap (`MAX_BODY`) before the handler took it
        raise BodyTooLarge(limit, None) from None


async def _read(content: web.Body, limit: int) -> bytes:
    if content.is_eof():   # the whole body came with the headers (most requests): take it without waiting
        data = content.read_nowait()
        if len(data) > limit:
            raise BodyTooLarge(limit, None)
        return data
    body = bytearray()
    async for chunk in content.iter_any():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit, None)
    return bytes(body)

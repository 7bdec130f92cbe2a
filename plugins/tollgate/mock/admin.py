"""Out-of-process control of a running mock (the CLI / Docker demo): a tiny JSON API under ``/__mock/``.

  GET    /__mock/health                  {"ok": true, "requests": <count>, "pending": <queued replies>}
  GET    /__mock/requests?limit=N        the last N recorded requests (RecordedRequest.to_dict())
  DELETE /__mock/requests                forget the recorded requests
  POST   /__mock/enqueue                 {"reply": {<Reply fields>}, "path"?, "model"?, "endpoint"?, "times"?}
                                         (or a list of those)
  PUT    /__mock/default                 {<Reply fields>}: the default reply
  POST   /__mock/reset                   queue, rules, recordings and default back to the start

Admin requests are not recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from .reply import Reply

if TYPE_CHECKING:
    from .server import MockLLM


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def handle_admin(mock: MockLLM, request: web.BaseRequest, raw: bytes) -> web.StreamResponse:
    action = request.path[len("/__mock/"):].strip("/")
    method = request.method
    try:
        if action == "health" and method == "GET":
            return _json({"ok": True, "requests": mock.request_count, "pending": mock.pending})
        if action == "requests" and method == "GET":
            records = mock.requests
            limit = request.query.get("limit")
            if limit is not None:
                records = records[-int(limit):] if int(limit) > 0 else []
            return _json([r.to_dict() for r in records])
        if action == "requests" and method == "DELETE":
            mock.clear()
            return _json({"ok": True})
        if action == "enqueue" and method == "POST":
            payload = orjson.loads(raw)
            items = payload if isinstance(payload, list) else [payload]
            for item in items:
                reply = Reply.from_dict(item.get("reply") or {})
                mock.enqueue(reply, path=item.get("path"), model=item.get("model"), endpoint=item.get("endpoint"),
                             times=int(item.get("times", 1)))
            return _json({"ok": True, "pending": mock.pending})
        if action == "default" and method in ("PUT", "POST"):
            mock.default = Reply.from_dict(orjson.loads(raw) if raw else {})
            return _json({"ok": True})
        if action == "reset" and method == "POST":
            mock.reset()
            return _json({"ok": True})
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return _json({"error": {"message": str(exc), "type": "invalid_request_error"}}, 400)
    return _json({"error": {"message": f"unknown admin call {method} {request.path}", "type": "not_found"}}, 404)

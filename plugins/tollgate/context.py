"""The per-request context shared by every Tollgate stage of one request.

The relay opens it when the request arrives (its body is read once, parsed once) and
closes it when the answer is done; entries whose request never finishes expire on their
own.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

_ids = itertools.count(1)


class BodyError(ValueError):
    """The request body is not the JSON the route expects."""


@dataclass
class RequestContext:
    method: str
    path: str
    query: str
    headers: Any                      # case-insensitive multi-dict of the incoming request
    body: bytes
    identity: dict[str, Any]
    policies: dict[str, Any]          # plugin name -> that instance's relay-side policy
    route_id: str | None = None
    id: int = field(default_factory=lambda: next(_ids))
    started_at: float = field(default_factory=time.time)
    # Filled in by stages as the request goes through the relay.
    usage: Any = None                 # providers.base.Usage once the provider reported it
    status: int = 0                   # status the client got
    response_headers: dict[str, str] = field(default_factory=dict)  # stages add headers for the client here
    meta: dict[str, Any] = field(default_factory=dict)
    filters: Any = None               # relay.pipeline.Filters: what the answer passes on its way to the client
    gate: Any = None                  # relay.pipeline.Gate: a verdict the answer's first byte waits for
    _json: Any = None

    def json(self) -> Any:
        """The body parsed as JSON, once per request whatever the number of stages."""
        if self._json is None:
            try:
                self._json = orjson.loads(self.body)
            except orjson.JSONDecodeError as exc:
                raise BodyError(f"request body is not valid JSON: {exc}") from None
        return self._json

    def json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None when it is not one (for stages that only read what is there and
        leave the refusal to the stage that owns it)."""
        try:
            body = self.json()
        except BodyError:
            return None
        return body if isinstance(body, dict) else None

    def set_json(self, body: Any) -> None:
        """Replace the request body (a template, a decorator, PII redaction): later stages and the provider see
        ``body``; the client's original bytes stay in ``original_body``."""
        if "original_body" not in self.meta:
            self.meta["original_body"] = self.body
        self._json = body
        self.body = orjson.dumps(body)


class ContextStore:
    def __init__(self, ttl: float = 600.0):
        self._ttl = ttl
        self._open: dict[int, RequestContext] = {}

    def open(self, ctx: RequestContext) -> RequestContext:
        self._open[ctx.id] = ctx
        return ctx

    def get(self, ctx_id: int) -> RequestContext | None:
        return self._open.get(ctx_id)

    def close(self, ctx: RequestContext) -> None:
        self._open.pop(ctx.id, None)

    def sweep(self, now: float | None = None) -> int:
        cutoff = (now if now is not None else time.time()) - self._ttl
        stale = [i for i, c in self._open.items() if c.started_at < cutoff]
        for ctx_id in stale:
            del self._open[ctx_id]
        return len(stale)

    def __len__(self) -> int:
        return len(self._open)

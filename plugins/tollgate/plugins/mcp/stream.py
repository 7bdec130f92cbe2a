"""How one request's answer goes out: one JSON body, or an SSE stream once an upstream notification (progress) has
to reach an SSE-accepting client before the result.

In a session, an SSE answer is resumable: every event gets an id (``<stream>-<n>``) and is kept in the store for a
while, and the work goes on if the client drops the connection. The client (or its SDK) then sends a GET with
``Last-Event-ID`` to any Tollgate process and gets the events it missed, the result included, as the spec's
resumption describes.

A session also has a standing stream (the client's GET): what upstreams send outside any call (``resources/updated``
after a subscription) is appended to the session's `StandingLog` by whichever process listens upstream, and the
process holding the client's GET follows it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import orjson
from ...relay import web

from . import jsonrpc
from .questions import Inbox, put_to_client

EVENTS_TTL = 300.0
POLL = 0.1
_END = "end"


class EventLog:
    """The events of one SSE answer in the store: a hash of index -> message, and where it ended."""

    def __init__(self, store: Any, scope: str, session_id: str, stream_id: str | None = None):
        self.store = store
        self.stream_id = stream_id or secrets.token_urlsafe(9)
        self.key = f"mcp:events:{scope}:{session_id}:{self.stream_id}"
        self.count = 0

    async def append(self, message: dict[str, Any], last: bool = False) -> str:
        self.count += 1
        fields = {str(self.count): orjson.dumps(message)}
        if last:
            fields[_END] = str(self.count).encode()
        await self.store.hset(self.key, fields, ttl=EVENTS_TTL)
        return f"{self.stream_id}-{self.count}"

    async def replay(self, after: int, response: web.StreamResponse, timeout: float) -> None:
        """Write the events after ``after`` to ``response``, waiting for new ones until the last or ``timeout``."""
        deadline = time.monotonic() + timeout
        sent = after
        while True:
            fields = await self.store.hgetall(self.key)
            end = int(fields[_END]) if _END in fields else None
            while str(sent + 1) in fields:
                sent += 1
                await response.write(_event(fields[str(sent)], f"{self.stream_id}-{sent}"))
            if (end is not None and sent >= end) or time.monotonic() > deadline:
                return
            await asyncio.sleep(POLL)

    async def exists(self) -> bool:
        return bool(await self.store.hgetall(self.key))


class StandingLog(EventLog):
    """A session's standing stream: written by any process, so each event takes its number from the store."""

    STREAM = "standing"

    def __init__(self, store: Any, scope: str, session_id: str):
        super().__init__(store, scope, session_id, self.STREAM)

    async def append(self, message: dict[str, Any], last: bool = False) -> str:
        index = int(await self.store.incr(self.key + ":n", 1, ttl=EVENTS_TTL))
        await self.store.hset(self.key, {str(index): orjson.dumps(message)}, ttl=EVENTS_TTL)
        return f"{self.stream_id}-{index}"

    async def position(self) -> int:
        return int(await self.store.get(self.key + ":n") or 0)

    async def follow(self, after: int, response: web.StreamResponse, request: web.BaseRequest, alive: Any) -> None:
        """Write the events after ``after`` as they come, until the client leaves or ``alive()`` says the session
        has ended (checked every few seconds)."""
        sent, checked = after, time.monotonic()
        while request.transport is not None and not request.transport.is_closing():
            fields = await self.store.hgetall(self.key)
            while str(sent + 1) in fields:
                sent += 1
                await response.write(_event(fields[str(sent)], f"{self.stream_id}-{sent}"))
            if time.monotonic() - checked > 5:
                if not await alive():
                    return
                checked = time.monotonic()
            await asyncio.sleep(POLL)


class StandingChannel:
    """An upstream's standing stream relayed to the client's (see `upstream.Upstream.listen`)."""

    def __init__(self, log: StandingLog, inbox: Inbox | None, capabilities: dict[str, Any], timeout: float):
        self.log = log
        self.inbox = inbox
        self.capabilities = capabilities
        self.timeout = timeout

    async def notify(self, message: dict[str, Any]) -> None:
        await self.log.append(message)

    async def ask(self, message: dict[str, Any]) -> dict[str, Any] | None:
        return await put_to_client(self.inbox, self.capabilities, message, self.log.append, self.timeout)


def parse_event_id(value: str) -> tuple[str, int] | None:
    stream, _, index = value.rpartition("-")
    if not stream or not index.isdigit() or len(value) > 64:
        return None
    return stream, int(index)


def _event(data: bytes, event_id: str) -> bytes:
    return f"id: {event_id}\nevent: message\ndata: ".encode() + data + b"\n\n"


class Answer:
    """One request's reply (see the module's doc); ``log`` makes an SSE answer resumable."""

    def __init__(self, request: web.BaseRequest, accepts_sse: bool, headers: dict[str, str],
                 log: EventLog | None = None, inbox: Inbox | None = None, capabilities: dict[str, Any] | None = None,
                 timeout: float = 30.0):
        self.request = request
        self.accepts_sse = accepts_sse
        self.headers = headers
        self.log = log
        self.inbox = inbox                           # where the client's answers to relayed requests arrive
        self.capabilities = capabilities or {}       # what the client said it can do (sampling, elicitation...)
        self.timeout = timeout
        self.stream: web.StreamResponse | None = None
        self.client_gone = False

    @property
    def resumable(self) -> bool:
        return self.log is not None and self.accepts_sse

    async def notify(self, message: dict[str, Any]) -> None:
        if self.accepts_sse:
            await self._open()
            await self._send(message)

    async def ask(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Put an upstream's request to the client on this answer's stream (see questions.py)."""
        if not self.accepts_sse:
            return None
        return await put_to_client(self.inbox, self.capabilities, message, self.notify, self.timeout)

    async def _open(self) -> None:
        if self.stream is None and not self.client_gone:
            stream = web.StreamResponse(status=200, headers={**self.headers, "Cache-Control": "no-cache",
                                                             "Content-Type": "text/event-stream"})
            try:
                await stream.prepare(self.request)
                self.stream = stream
            except (ConnectionError, RuntimeError):
                self.client_gone = True

    async def finish(self, body: dict[str, Any], status: int, headers: dict[str, str]) -> web.StreamResponse:
        if self.stream is None and not self.client_gone:
            return jsonrpc.json_response(body, status, {**headers, **self.headers})
        await self._send(body, last=True)
        if self.stream is None:
            return web.Response(status=499)     # nobody to answer; the log holds the answer for a resumption
        if not self.client_gone:
            await self.stream.write_eof()
        return self.stream

    async def _send(self, message: dict[str, Any], last: bool = False) -> None:
        event_id = await self.log.append(message, last) if self.log is not None else None
        if self.client_gone or self.stream is None:
            return
        try:
            await self.stream.write(jsonrpc.sse_event(message, event_id))
        except (ConnectionError, RuntimeError):
            self.client_gone = True       # the events stay in the log for a GET with Last-Event-ID

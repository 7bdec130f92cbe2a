"""A 2025-generation session's requests besides its POSTs: the GETs (the rest of an SSE answer after
``Last-Event-ID``, or the session's standing stream), the DELETE that ends it, and the upstream standing streams this
process relays into it (started by a ``resources/subscribe``, stopped by the DELETE or by the session's expiry).

Every request is checked against the session in the store, so any Tollgate process can serve any of them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import aiohttp
from ...relay import web

from ... import log
from ...context import RequestContext
from ...store import StoreUnavailable
from . import jsonrpc, protocol
from .jsonrpc import INTERNAL_ERROR, INVALID_REQUEST, JsonRpcError
from .questions import Inbox
from .sessions import Session, SessionBook
from .stream import EventLog, StandingChannel, StandingLog, parse_event_id
from .upstream import Upstream

logger = log.get("mcp")

LISTEN_CHECK = 30.0      # at most this long between checks that a relayed stream's client session still lives


def store_unavailable() -> JsonRpcError:
    return JsonRpcError(INTERNAL_ERROR, "tollgate-mcp: its state store is unavailable", status=503)


def consumer_of(ctx: RequestContext) -> str:
    """Who a session belongs to: the consumer Kong identified (or the token's subject, in OAuth mode)."""
    return str(ctx.identity.get("id") or "")


class SessionStreams:
    """The sessions of one route (``book`` makes their `SessionBook`), for every request that names one."""

    def __init__(self, book: Callable[[], SessionBook], upstreams: Callable[[], list[Upstream]], timeout: float):
        self.book = book
        self.upstreams = upstreams          # the route's upstream servers now (a listener's catalog changes)
        self.timeout = timeout
        # Upstream standing streams this process relays, by (client session, server) (see `watch`).
        self._listening: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def find(self, ctx: RequestContext) -> Session:
        """The live session the request names, for its consumer; `JsonRpcError` (400, 404, 503) otherwise."""
        session_id = ctx.headers.get(protocol.SESSION_HEADER)
        if not session_id:
            raise JsonRpcError(INVALID_REQUEST, "Bad Request: the Mcp-Session-Id header is required (or send "
                                                "initialize, or speak 2026-07-28)", status=400)
        try:
            session = await self.book().find(session_id, consumer_of(ctx))
        except StoreUnavailable:
            raise store_unavailable() from None
        if session is None:
            raise JsonRpcError(INVALID_REQUEST, "Session not found", status=404)
        protocol.check_session_header(ctx.headers, session.version)
        return session

    async def resume(self, ctx: RequestContext, request: web.BaseRequest) -> web.StreamResponse:
        """GET with ``Last-Event-ID``: the rest of an SSE answer of this session, from the store."""
        try:
            session = await self.find(ctx)
            position = parse_event_id(ctx.headers["Last-Event-ID"])
            if position is None:
                raise JsonRpcError(INVALID_REQUEST, "Last-Event-ID is not an event id of this gateway")
            events = EventLog(self.book().store, self.book().scope, session.id, position[0])
            if not await events.exists():
                raise JsonRpcError(INVALID_REQUEST, "no such stream (or it has expired)", status=404)
        except (JsonRpcError, StoreUnavailable) as exc:
            return refused(exc)
        response = _sse_stream(session)
        await response.prepare(request)
        await events.replay(position[1], response, self.timeout)
        await response.write_eof()
        return response

    async def standing(self, ctx: RequestContext, request: web.BaseRequest) -> web.StreamResponse:
        """The session's GET stream: what upstreams send outside any call (after resources/subscribe)."""
        try:
            session = await self.find(ctx)
            book = self.book()
            events = StandingLog(book.store, book.scope, session.id)
            position = await events.position()
        except (JsonRpcError, StoreUnavailable) as exc:
            return refused(exc)
        response = _sse_stream(session)
        await response.prepare(request)

        async def alive() -> bool:
            return await self.book().find(session.id, session.consumer, touch=False) is not None

        try:
            await events.follow(position, response, request, alive)
        except (ConnectionError, RuntimeError):
            return response                  # the client went away
        await response.write_eof()
        return response

    async def end(self, ctx: RequestContext) -> web.StreamResponse:
        """DELETE: the session ends here, at its upstreams, and so do the streams relayed into it."""
        try:
            session = await self.find(ctx)
            await self.book().end(session)
        except (JsonRpcError, StoreUnavailable) as exc:
            return refused(exc)
        await asyncio.gather(*(u.end(session) for u in self.upstreams()))
        for key in [k for k in self._listening if k[0] == session.id]:
            self._listening.pop(key).cancel()
        return web.Response(status=200)

    def watch(self, session: Session, upstream: Upstream) -> None:
        """Relay ``upstream``'s standing stream of ``session`` to the session's (once per process and server),
        until the session ends or expires."""
        key = (session.id, upstream.name)
        if key in self._listening:
            return
        book = self.book()
        channel = StandingChannel(StandingLog(book.store, book.scope, session.id),
                                  Inbox(book.store, book.scope, session.id), session.capabilities, self.timeout)
        # A session expires ``ttl`` after the client's last request; checking twice per ttl notices that soon enough.
        every = min(LISTEN_CHECK, book.ttl / 2)

        async def listen() -> None:
            relay = asyncio.create_task(upstream.listen(session, channel))
            try:
                # The client's session may expire without a DELETE: stop relaying then, and end ours upstream.
                while not relay.done():
                    await asyncio.wait({relay}, timeout=every)
                    if not relay.done() and await self.book().find(session.id, session.consumer, touch=False) is None:
                        relay.cancel()
                        await upstream.end(session)
                        log.event(logger, "upstream standing stream stopped: its client session has expired",
                                  logging.INFO, server=upstream.name)
                        return
                relay.result()
            except (aiohttp.ClientError, StoreUnavailable) as exc:
                log.event(logger, "upstream standing stream ended", logging.WARNING, server=upstream.name,
                          error=type(exc).__name__)
            finally:
                relay.cancel()
                self._listening.pop(key, None)

        self._listening[key] = asyncio.create_task(listen())


def refused(exc: JsonRpcError | StoreUnavailable) -> web.Response:
    """A refusal that answers no particular request id (GET, DELETE, a client's answer)."""
    return jsonrpc.error_response(None, store_unavailable() if isinstance(exc, StoreUnavailable) else exc)


def _sse_stream(session: Session) -> web.StreamResponse:
    return web.StreamResponse(status=200, headers={protocol.SESSION_HEADER: session.id, "Cache-Control": "no-cache",
                                                   "Content-Type": "text/event-stream"})

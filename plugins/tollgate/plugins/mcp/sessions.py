"""Client sessions of the 2025 generation, kept in the store so that any Tollgate process behind any Kong node can
serve any request of a session.

A session is one small hash: its negotiated version, the consumer that opened it (a session is only good for the
consumer that opened it, as in the SDK's own server), what the client can be asked (sampling, elicitation, roots:
the gateway declares that much to the upstreams it opens sessions with for it), and the session id of each
session-generation upstream it has talked to. The store's ``delete`` covers plain values only, so ending a session
marks it ended instead; the mark expires with the hash.

A session expires ``session_ttl`` after the client's last request, not after it was opened: a client that keeps
working keeps its session. Each request that finds the session pushes the expiry back, written at most once per
tenth of the ttl (the ``seen`` field), so a busy session costs one extra write every few minutes, not one per call.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

_INFO = "info"
_ENDED = "ended"
_SEEN = "seen"          # when a request last pushed the expiry back (Unix time)
_UPSTREAM = "up:"


class UpstreamSessions(Protocol):
    """Where the upstream session ids of one client conversation are kept (see `upstream.Upstream`), and what the
    client behind them can be asked."""

    capabilities: dict[str, Any]

    async def get(self, server: str) -> str | None: ...

    async def put(self, server: str, session_id: str) -> None: ...

    async def forget(self, server: str) -> None: ...


@dataclass
class Session:
    """A client session as read from the store; its upstream ids are written through to it."""

    id: str
    version: str
    consumer: str
    upstream: dict[str, str]
    _book: "SessionBook" = field(repr=False)
    capabilities: dict[str, Any] = field(default_factory=dict)

    async def get(self, server: str) -> str | None:
        return self.upstream.get(server)

    async def put(self, server: str, session_id: str) -> None:
        self.upstream[server] = session_id
        await self._book.store.hset(self._book.key(self.id), {_UPSTREAM + server: session_id.encode()},
                                    ttl=self._book.ttl)

    async def forget(self, server: str) -> None:
        self.upstream.pop(server, None)
        await self._book.store.hset(self._book.key(self.id), {_UPSTREAM + server: b""}, ttl=self._book.ttl)


class SessionBook:
    """The sessions of one route, in the route's store (``strategy: local | redis``)."""

    def __init__(self, store: Any, scope: str, ttl: float):
        self.store = store
        self.scope = scope
        self.ttl = ttl

    def key(self, session_id: str) -> str:
        return f"mcp:session:{self.scope}:{session_id}"

    async def open(self, version: str, consumer: str, capabilities: dict[str, Any] | None = None) -> Session:
        session_id = secrets.token_urlsafe(24)   # visible ASCII, as the spec requires, and unguessable
        info = orjson.dumps({"version": version, "consumer": consumer, "created": time.time(),
                             "capabilities": capabilities or {}})
        await self.store.hset(self.key(session_id), {_INFO: info}, ttl=self.ttl)
        return Session(session_id, version, consumer, {}, self, capabilities or {})

    async def find(self, session_id: str, consumer: str, touch: bool = True) -> Session | None:
        """The live session ``session_id`` of ``consumer``; None when unknown, ended, expired or someone else's.

        ``touch``: a client's request is activity that keeps the session alive; the gateway's own checks on a
        session (is it still there?) pass False, or a relayed stream would keep an abandoned session alive."""
        if not session_id or len(session_id) > 128:
            return None
        fields = await self.store.hgetall(self.key(session_id))
        if _INFO not in fields or fields.get(_ENDED):
            return None
        info = orjson.loads(fields[_INFO])
        if info.get("consumer") != consumer:
            return None
        if touch:
            now = time.time()
            seen = fields.get(_SEEN)
            if now - (float(seen) if seen else info.get("created", 0)) > self.ttl / 10:
                await self.store.hset(self.key(session_id), {_SEEN: repr(now).encode()}, ttl=self.ttl)
        upstream = {k[len(_UPSTREAM):]: v.decode() for k, v in fields.items() if k.startswith(_UPSTREAM) and v}
        return Session(session_id, info["version"], consumer, upstream, self, info.get("capabilities") or {})

    async def end(self, session: Session) -> None:
        await self.store.hset(self.key(session.id), {_ENDED: b"1"}, ttl=min(self.ttl, 300))


class SharedUpstreamSessions:
    """Upstream session ids for stateless (2026-07-28) clients: one per upstream, per process.

    A stateless client has no session to keep them in; the process reuses one upstream session per server (and
    per consumer, so upstream state never leaks between consumers)."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}

    def for_consumer(self, consumer: str) -> "_ConsumerView":
        return _ConsumerView(self._ids, consumer)


@dataclass
class _ConsumerView:
    ids: dict[str, str]
    consumer: str
    capabilities: dict[str, Any] = field(default_factory=dict)    # a stateless client is asked nothing mid-call

    async def get(self, server: str) -> str | None:
        return self.ids.get(f"{self.consumer}\0{server}")

    async def put(self, server: str, session_id: str) -> None:
        if len(self.ids) > 10_000:
            self.ids.clear()
        self.ids[f"{self.consumer}\0{server}"] = session_id

    async def forget(self, server: str) -> None:
        self.ids.pop(f"{self.consumer}\0{server}", None)

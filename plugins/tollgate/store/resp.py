"""A small pipelined Redis client for the store's hot path: Lua scripts on one server.

Every request through a limited route runs store scripts (a reservation before the provider call, a settlement
after it). Through redis-py's asyncio client each costs ~150 us of CPU (connection pool checkout, retry and
timeout wrappers, a StreamReader-based parser, one write per command); here it is ~15 us: one connection per
server carries every command in flight (Redis answers in order, so replies are matched first in, first out),
commands issued in the same event-loop turn leave in one write, and replies are parsed straight from the
socket's data (`bench/redis_client.py` measures both, redis-py with its hiredis parser).

Deadlines match redis-py's as `RedisStore` configures it: a connect gets ``connect_timeout``; a reply that takes
longer than ``socket_timeout`` marks the connection as hung, fails every command on it with TimeoutError and
closes it (the next command opens a new one). A command whose connection was lost is retried once on a new
connection (as redis-py's ``Retry(NoBackoff(), 1)`` does); a timeout is never retried, so a script never runs
twice because a reply was slow. Errors are redis-py's exception types, so `RedisStore` maps them as before.

Used for plain ``redis://``, ``rediss://`` and ``unix://`` servers; Sentinel and Cluster stay on redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import ssl as _ssl
from typing import Any, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from redis import exceptions as rex

_CRLF = b"\r\n"


class _Incomplete(Exception):
    """The buffer ends inside a reply."""


class _ErrorReply:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


# What a reply may be. Tollgate's scripts answer with a few numbers, or arrays of them one level deep; a server (or
# whatever answers on its port) that declares more is refused on the header, before the buffer grows to match.
MAX_REPLY = 64 * 1024 * 1024    # bytes of one reply, and of one bulk string in it
MAX_ITEMS = 1_000_000           # per array
MAX_DEPTH = 32                  # arrays within arrays


def _parse(buf: bytearray, pos: int, depth: int = 0) -> tuple[Any, int]:
    """One RESP2 reply starting at ``pos``: (value, position after it); _Incomplete if it is not all there,
    InvalidResponse if it breaks the protocol or a limit."""
    end = buf.find(_CRLF, pos)
    if end < 0:
        raise _Incomplete
    kind = buf[pos]
    if kind == 58:  # ':' integer
        return int(buf[pos + 1:end]), end + 2
    if kind == 36:  # '$' bulk string
        size = int(buf[pos + 1:end])
        if size < 0:
            return None, end + 2
        if size > MAX_REPLY:
            raise rex.InvalidResponse(f"protocol error: a bulk string of {size} bytes, over the limit of "
                                      f"{MAX_REPLY}")
        start = end + 2
        if len(buf) < start + size + 2:
            raise _Incomplete
        return bytes(buf[start:start + size]), start + size + 2
    if kind == 42:  # '*' array
        count = int(buf[pos + 1:end])
        if count < 0:
            return None, end + 2
        if count > MAX_ITEMS:
            raise rex.InvalidResponse(f"protocol error: an array of {count} items, over the limit of {MAX_ITEMS}")
        if depth >= MAX_DEPTH:
            raise rex.InvalidResponse(f"protocol error: arrays nested deeper than {MAX_DEPTH} levels")
        items = []
        pos = end + 2
        for _ in range(count):
            item, pos = _parse(buf, pos, depth + 1)
            items.append(item)
        return items, pos
    if kind == 43:  # '+' simple string
        return bytes(buf[pos + 1:end]), end + 2
    if kind == 45:  # '-' error
        return _ErrorReply(buf[pos + 1:end].decode("utf-8", "replace")), end + 2
    raise rex.InvalidResponse(f"protocol error: unexpected reply type {chr(kind)!r}")


def _error(text: str) -> rex.RedisError:
    if text.startswith("NOSCRIPT"):
        return rex.NoScriptError(text)
    if text.startswith(("WRONGPASS", "NOAUTH", "NOPERM")):
        return rex.AuthenticationError(text)
    return rex.ResponseError(text)


def encode(args: Sequence[str | bytes | int]) -> bytes:
    """A command as RESP: an array of bulk strings.

    Commands are mostly ASCII keys and numbers: those are framed as one text, encoded once (a third cheaper than
    a bytes part per argument); anything else takes the general path."""
    text = [f"*{len(args)}\r\n"]
    for arg in args:
        kind = type(arg)
        if kind is str and arg.isascii():  # type: ignore[union-attr]
            text.append(f"${len(arg)}\r\n{arg}\r\n")
        elif kind is int:
            digits = str(arg)
            text.append(f"${len(digits)}\r\n{digits}\r\n")
        else:
            return _encode_bytes(args)
    return "".join(text).encode()


def _encode_bytes(args: Sequence[str | bytes | int]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif not isinstance(arg, (bytes, bytearray)):
            arg = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    def __init__(self, socket_timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._socket_timeout = socket_timeout
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._pending: collections.deque[tuple[asyncio.Future, float]] = collections.deque()
        self._outgoing: list[bytes] = []
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        pending = self._pending
        pos = 0
        try:
            while pos < len(buf):
                try:
                    reply, pos = _parse(buf, pos)
                except _Incomplete:
                    break
                if not pending:
                    raise rex.InvalidResponse("protocol error: a reply to no command")
                future, _ = pending.popleft()
                if future.done():          # its caller gave up (cancelled): the reply is not needed
                    continue
                if type(reply) is _ErrorReply:
                    future.set_exception(_error(reply.text))
                else:
                    future.set_result(reply)
            if len(buf) - pos > MAX_REPLY:
                raise rex.InvalidResponse(f"protocol error: a reply larger than {MAX_REPLY} bytes")
        except (rex.RedisError, ValueError) as exc:
            self._abort(rex.ConnectionError(f"Redis sent an unreadable reply: {exc}"))
            return
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._abort(rex.ConnectionError(f"Connection closed by server{f': {exc}' if exc else '.'}"))

    # -- commands ---------------------------------------------------------------------------------

    def send(self, args: Sequence[str | bytes | int]) -> asyncio.Future:
        """Queue a command (written at the end of this loop turn, with the others); its reply's future."""
        future = self._loop.create_future()
        if self.closed:
            future.set_exception(rex.ConnectionError("Connection closed."))
            return future
        outgoing = self._outgoing
        if not outgoing:
            self._loop.call_soon(self._flush)
        outgoing.append(encode(args))
        now = self._loop.time()
        if not self._pending and self._watchdog is None:
            self._watchdog = self._loop.call_at(now + self._socket_timeout, self._check)
        self._pending.append((future, now))
        return future

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self._transport is not None and not self.closed:
            self._transport.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))

    def _check(self) -> None:
        """The oldest command has waited ``socket_timeout``: the server is hung (or gone quietly)."""
        self._watchdog = None
        if not self._pending:
            return
        due = self._pending[0][1] + self._socket_timeout
        if self._loop.time() >= due:
            self._abort(rex.TimeoutError(f"Timeout reading from the server ({self._socket_timeout:g} s)"))
        else:
            self._watchdog = self._loop.call_at(due, self._check)

    def _abort(self, error: rex.RedisError) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        pending, self._pending = self._pending, collections.deque()
        for future, _ in pending:
            if not future.done():
                future.set_exception(error)
        if self._transport is not None:
            self._transport.abort()
            self._transport = None

    def close(self) -> None:
        if not self.closed:
            self._abort(rex.ConnectionError("Connection closed."))


class RespClient:
    """Scripts and commands on one Redis server over one pipelined connection, opened on first use."""

    def __init__(self, *, host: str | None = None, port: int = 6379, path: str | None = None,
                 ssl: _ssl.SSLContext | None = None, username: str | None = None, password: str | None = None,
                 db: int = 0, connect_timeout: float = 0.25, socket_timeout: float = 0.25) -> None:
        self._host, self._port, self._path, self._ssl = host, port, path, ssl
        self._username, self._password, self._db = username, password, db
        self._connect_timeout = connect_timeout
        self._socket_timeout = socket_timeout
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None

    @classmethod
    def for_url(cls, url: str, connect_timeout: float, socket_timeout: float) -> RespClient | None:
        """A client for a plain ``redis://``, ``rediss://`` or ``unix://`` URL; None for anything it does not
        handle the way redis-py would (query options other than ``db``), which then stays on redis-py."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        query = parse_qs(parts.query)
        if set(query) - {"db"}:
            return None
        db = int(query["db"][-1]) if "db" in query else 0
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if scheme == "unix":
            if not parts.path:
                return None
            return cls(path=unquote(parts.path), username=username, password=password, db=db,
                       connect_timeout=connect_timeout, socket_timeout=socket_timeout)
        if scheme not in ("redis", "rediss") or not parts.hostname:
            return None
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                return None
            db = int(path)
        context = _ssl.create_default_context() if scheme == "rediss" else None
        return cls(host=parts.hostname, port=parts.port or 6379, ssl=context, username=username,
                   password=password, db=db, connect_timeout=connect_timeout, socket_timeout=socket_timeout)

    def bounded_within(self, seconds: float) -> bool:
        """Whether a command always ends (answered or failed) within ``seconds``: a connect, the handshake's
        replies if there is one, and the command's reply, twice (a lost connection is retried once)."""
        handshake = self._socket_timeout if self._password is not None or self._db else 0.0
        return 2 * (self._connect_timeout + handshake + self._socket_timeout) <= seconds

    async def execute(self, *args: str | bytes | int) -> Any:
        """Run one command; a connection that turns out lost is replaced and the command sent once more."""
        try:
            connection = self._connection
            if connection is None or connection.closed:
                connection = await self._connect()
            return await connection.send(args)
        except (rex.ConnectionError, OSError) as exc:
            if isinstance(exc, rex.AuthenticationError):
                raise
        connection = await self._connect()
        return await connection.send(args)

    async def evalsha(self, sha: str, script: str | bytes, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """A script by its digest, sent whole (and so cached by the server) when the server does not know it."""
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except rex.NoScriptError:
            return await self.execute("EVAL", script, len(keys), *keys, *args)

    async def _connect(self) -> _Connection:
        connecting = self._connecting
        if connecting is None or connecting.done():
            current = self._connection
            if current is not None and not current.closed:
                return current
            connecting = self._connecting = asyncio.ensure_future(self._open())
        return await asyncio.shield(connecting)

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        timeout = self._socket_timeout
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._path is not None:
                    _, connection = await loop.create_unix_connection(lambda: _Connection(timeout), self._path)
                else:
                    _, connection = await loop.create_connection(lambda: _Connection(timeout), self._host,
                                                                 self._port, ssl=self._ssl)
        except TimeoutError:
            raise rex.TimeoutError(f"Timeout connecting to the server ({self._connect_timeout:g} s)") from None
        except OSError as exc:
            raise rex.ConnectionError(f"Error connecting to {self._where()}: {exc}") from exc
        handshake = []
        if self._password is not None:
            auth = ("AUTH", self._username, self._password) if self._username else ("AUTH", self._password)
            handshake.append(connection.send(auth))
        if self._db:
            handshake.append(connection.send(("SELECT", self._db)))
        try:
            for reply in handshake:  # sent together; a command goes nowhere before the server took them
                await reply
        except rex.ResponseError as exc:
            connection.close()
            raise rex.AuthenticationError(str(exc)) from exc
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _where(self) -> str:
        return self._path if self._path is not None else f"{self._host}:{self._port}"

    def close(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

"""Kong's side of MsgPack:1 (``Rpc:call`` in ``rpc/mp_rpc.lua``), per nginx worker.

* One ``Rpc`` object per plugin (Kong 3.9) or per plugin-server entry (3.0-3.8), each
  with its own message-id counter that rises across requests.
* Every call takes a connection from the worker's pool for that socket (a connection
  the server closed while idle is dropped, as nginx's keepalive handler does), writes
  ``[0, msgid, method, [args]]``, reads objects until the answer: notifications
  ``[2, label, args]`` are handled on the way; the answer must be ``[1, msgid, err,
  result]`` with OUR msgid (else a Lua assertion fails), and the connection goes back
  to the pool.
* A failure to connect, write or read (EOF, timeout) returns ``(None, err)``: the caller
  logs it and the request goes on without the plugin (fail-open). Kong gives these
  cosockets no timeout of its own: each operation takes nginx's
  ``lua_socket_{connect,send,read}_timeout`` (``KongDouble.socket_timeouts``, from
  kong.conf's ``nginx_http_lua_socket_*_timeout``; 60 s by default); the read timeout
  bounds each read, so a server that answers keeps the call going.
* Packing happens after the connection is taken: when it fails (a ``nil`` body in
  ``fix_raw``) the msgid is spent and the connection is never returned to the pool.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import KongLuaError
from .luavalue import LuaPackError, new_unpacker, pack_message

if TYPE_CHECKING:  # pragma: no cover
    from .kong import KongDouble, Worker

_conn_ids = itertools.count(1)


@dataclass
class CallInfo:
    """Who makes a call (for stats, recording and fault injection)."""

    plugin: str
    phase: str | None = None
    step: int | None = None  # 0 = HandleEvent, 1.. = the steps of the event
    request: Any = None


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str):
        self.reader = reader
        self.writer = writer
        self.path = path
        self.id = next(_conn_ids)
        self.unpacker = new_unpacker()

    @property
    def dead(self) -> bool:
        return self.reader.at_eof() or self.writer.is_closing() or self.reader.exception() is not None

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:  # pragma: no cover
            pass


class SocketPool:
    """A worker's keepalive pool for one unix socket (``lua_socket_pool_size`` 30)."""

    def __init__(self, path: str, size: int = 30, opener: Any = None):
        self.path = path
        self.size = size
        self.idle: list[Connection] = []
        self.opened = 0
        # how the worker opens a connection (its own process: see workerproc.py)
        self._open = opener or asyncio.open_unix_connection

    async def acquire(self, timeout: float) -> Connection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.dead and not conn.unpacker_has_data():
                return conn
            conn.close()
        reader, writer = await asyncio.wait_for(self._open(self.path, limit=1 << 24), timeout)
        self.opened += 1
        return Connection(reader, writer, self.path)

    def release(self, conn: Connection) -> None:
        if conn.dead or len(self.idle) >= self.size:
            conn.close()
        else:
            self.idle.append(conn)

    def close_all(self) -> None:
        for c in self.idle:
            c.close()
        self.idle.clear()


def _has_data(self: Connection) -> bool:
    # data arrived on an idle pooled connection: nginx closes such a connection
    buf = getattr(self.reader, "_buffer", b"")
    return bool(buf)


Connection.unpacker_has_data = _has_data  # type: ignore[attr-defined]


@dataclass
class Rpc:
    """One ``Rpc`` object (its msg-id counter and pid memory) in one worker."""

    kong: "KongDouble"
    worker: "Worker"
    socket_path: str
    name: str  # plugin name (3.9) or entry name (3.8)
    msg_id: int = 0
    pluginserver_pid: int | None = None
    calls: int = 0

    async def call(self, method: str, args: list, info: CallInfo) -> tuple[Any, Any]:
        """``Rpc:call``: returns ``(result, None)`` or ``(None, err)``; raises
        :class:`KongLuaError` where Kong's Lua code would raise."""
        kong = self.kong
        self.msg_id += 1
        msg_id = self.msg_id
        self.calls += 1
        kong.stats._count_call(info, method)
        pool = self.worker.pool(self.socket_path)
        fault = kong.faults._match(info, method)
        timeouts = kong.socket_timeouts

        if fault is not None and fault.mode in ("error", "connect"):
            kong._record_log("err", f"{'trying to connect: ' if fault.mode == 'connect' else ''}"
                                    f"{fault.message}", plugin=info.plugin, request=info.request, source="kong")
            return None, fault.message

        try:
            conn = await pool.acquire(timeouts.connect)
        except (OSError, asyncio.TimeoutError) as e:
            err = _socket_err(e)
            kong._record_log("err", f"trying to connect: {err}", plugin=info.plugin, request=info.request,
                             source="kong")
            return None, err

        message = [0, msg_id, method, list(args)]
        try:
            payload = pack_message(message)
        except LuaPackError as e:
            # the connection is never given back to the pool (nor closed until the request ends)
            conn.close()
            raise KongLuaError(str(e)) from None

        kong._record_message("kong->server", conn, self, message, info)

        if fault is not None and fault.mode == "socket":
            conn.close()
            return None, "closed"

        sent = time.perf_counter()
        try:
            conn.writer.write(payload)
            async with asyncio.timeout(timeouts.send):
                await conn.writer.drain()
        except (OSError, asyncio.TimeoutError, ConnectionError) as e:
            pool.release(conn)
            return None, _socket_err(e)

        if fault is not None and fault.mode == "socket_after_send":
            conn.close()
            return None, "no data"
        if fault is not None and fault.mode == "timeout":
            await asyncio.sleep(timeouts.read)
            conn.close()
            return None, "no data"

        while True:
            try:
                data = await self._read_object(conn, timeouts.read)
            except (OSError, asyncio.TimeoutError, ConnectionError, ValueError, EOFError):
                conn.close()  # setkeepalive on a broken socket closes it
                return None, "no data"
            kong.stats.rpc_wait_seconds += time.perf_counter() - sent
            kong._record_message("server->kong", conn, self, data, info)
            if not isinstance(data, (list, tuple)) or len(data) < 1:
                conn.close()
                raise KongLuaError("RPC response expected from Go plugin server")
            if data[0] == 2:
                self.notification(data[1] if len(data) > 1 else None, data[2] if len(data) > 2 else None)
                continue
            if data[0] != 1:
                conn.close()
                raise KongLuaError("RPC response expected from Go plugin server")
            if len(data) < 2 or data[1] != msg_id:
                conn.close()
                raise KongLuaError("unexpected RPC response ID from Go plugin server")
            pool.release(conn)
            err = data[2] if len(data) > 2 else None
            if err is not None:
                return None, err
            return (data[3] if len(data) > 3 else None), None

    async def _read_object(self, conn: Connection, timeout: float) -> Any:
        while True:
            for obj in conn.unpacker:
                return obj
            async with asyncio.timeout(timeout):   # as wait_for, without a task per read
                chunk = await conn.reader.read(4096)
            if not chunk:
                raise EOFError("closed")
            conn.unpacker.feed(chunk)

    def notification(self, label: Any, args: Any) -> None:
        self.kong._record_log("debug", f"notification {label!r} {args!r}", plugin=self.name, source="kong")
        if label == "serverPid":
            try:
                n = int(args[0] if isinstance(args, (list, tuple)) and args else args)
            except (TypeError, ValueError):
                n = None
            if self.pluginserver_pid is not None and n != self.pluginserver_pid:
                self.worker.drop_instances_of_rpc(self)
            self.pluginserver_pid = n


def _socket_err(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "timeout"
    if isinstance(e, FileNotFoundError):
        return "no such file or directory"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, (BrokenPipeError, ConnectionResetError)):
        return "closed"
    return str(e) or type(e).__name__

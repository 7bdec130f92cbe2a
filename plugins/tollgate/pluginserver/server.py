"""The RPC side: sockets, MessagePack framing and the ``plugin.*`` methods Kong calls.

Each connection's bytes are cut into whole messages by `framing.Framer` (with limits on
size and structure) before anything is decoded, so a message of any size arrives whole
however the kernel splits it, and a peer that breaks the protocol is disconnected. Each event's handler runs in its own task, so a slow
handler holds up nothing but its own event; the messages themselves are answered from
callbacks (the step a handler produces goes straight to the request Kong is waiting on),
with no task per message. A plugin whose handlers need no task of their own (``runs_inline``) has them driven
inline instead: from HandleEvent to the first PDK call, then from each Step to the next, in the callback.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Callable, Iterable

import msgpack
import orjson

from .. import log
from . import pdk
from .events import RESPONDING_PHASES, RET, Event
from .framing import Backlog, Framer, FramingError, Limits
from .instances import Instance, InstanceTable, NoInstance, first_id
from .loader import PluginModule

logger = log.get("pluginserver")

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2

_STEP_METHODS = frozenset(f"plugin.{step}" for step in (
    "Step", "StepError", "StepMultiMap", "StepCredential", "StepConsumer", "StepRoute", "StepService",
    "StepMemoryStats"))

Reply = Callable[[BaseException | None, Any], None]


class RpcError(Exception):
    """Answered to Kong as the error element of the response."""


def error_body(error_format: str, status: int, message: str) -> bytes:
    """A client-facing error in the format the route's clients speak."""
    if error_format == "openai":
        return orjson.dumps({"error": {"message": message, "type": "server_error", "param": None,
                                       "code": "tollgate_plugin_error"}})
    if error_format == "jsonrpc":
        return orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": message}})
    return orjson.dumps({"message": message})


class PluginServer:
    """Instances and events of every plugin the process serves."""

    def __init__(self, plugins: dict[str, PluginModule], *, handler_timeout: float = 30.0,
                 event_timeout: float = 120.0, sync_threads: int = 128,
                 on_instance_start: Callable[[Instance], None] | None = None):
        self.plugins = plugins
        self.instances = InstanceTable()
        self.events: dict[int, Event] = {}
        self._event_ids = itertools.count(first_id())
        self._handler_timeout = handler_timeout
        self._event_timeout = event_timeout
        self._executor = ThreadPoolExecutor(max_workers=sync_threads, thread_name_prefix="tollgate-handler")
        self._on_instance_start = on_instance_start
        self.calls = 0
        self._watchdog: asyncio.Future | None = None
        self._methods: dict[str, Callable[[Any], Any]] = {
            "plugin.CloseInstance": self.close_instance,
            "plugin.InstanceStatus": self.instance_status,
            "plugin.GetStatus": self.get_status,
            "plugin.GetPluginInfo": self.get_plugin_info,
        }

    # --- RPC methods --------------------------------------------------------------------

    def receive(self, method: str, args: list[Any], reply: Reply, worker: Any = None) -> None:
        """Handle one request from Kong; ``reply(error, result)`` is called exactly once, now or later.

        Steps and HandleEvent (every request's traffic) are answered straight from the event's
        callback when the handler produces its next step: no task per message. ``worker`` is the
        nginx worker the message came from (its pid; None when unknown).
        """
        self.calls += 1
        try:
            if method in _STEP_METHODS:
                request = _map_argument(method, args, "EventId")
                event = self.events.get(request["EventId"])
                if event is None:
                    raise RpcError(f"event id {request['EventId']} not found")
                try:
                    event.answer(request.get("Data"))
                except RuntimeError as exc:
                    raise RpcError(str(exc)) from None
            elif method == "plugin.HandleEvent":
                event = self._start_event(_map_argument(method, args, "InstanceId"))
            elif method == "plugin.StartInstance":
                reply(None, self.start_instance(_map_argument(method, args), worker))
                return
            else:
                handler = self._methods.get(method)
                if handler is None:
                    raise RpcError(f"method {method[:100]!r} is not supported")
                if any(not isinstance(a, (str, int)) for a in args):
                    raise RpcError(f"{method} takes an id or a name")
                result = handler(*args)
                if not asyncio.iscoroutine(result):
                    reply(None, result)
                    return
                task = asyncio.ensure_future(result)
                task.add_done_callback(partial(_reply_with_task, reply))
                return
        except Exception as exc:
            reply(exc, None)
            return
        events = self.events

        def deliver(data: Any) -> None:
            if event.ended:
                # Kong sends nothing more for an event that returned or exited.
                events.pop(event.id, None)
            reply(None, {"Data": data, "EventId": event.id})

        event.next_step(deliver)
        if self._watchdog is None:
            self._watchdog = asyncio.ensure_future(self._watch_stalls())

    async def dispatch(self, method: str, args: list[Any], worker: Any = None) -> Any:
        """``receive`` as a coroutine: the result, or the error raised (tests and tools)."""
        answer = asyncio.get_running_loop().create_future()

        def reply(error: BaseException | None, result: Any) -> None:
            if answer.done():
                return
            if error is not None:
                answer.set_exception(error)
            else:
                answer.set_result(result)

        self.receive(method, args, reply, worker)
        return await answer

    def start_instance(self, request: dict[str, Any], worker: Any = None) -> dict[str, Any]:
        name = request.get("Name")
        plugin = self.plugins.get(name) if isinstance(name, str) else None
        if plugin is None:
            raise RpcError(f"{str(name)[:100]} is not a plugin of this server")
        raw = request.get("Config") or "{}"
        try:
            config = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
        except orjson.JSONDecodeError as exc:
            raise RpcError(f"{name}: config is not JSON: {exc}") from None
        if not isinstance(config, dict):
            raise RpcError(f"{name}: config must be a JSON object")
        try:
            handler = plugin.instantiate(config)
        except ValueError as exc:
            log.event(logger, "invalid plugin config", 40, plugin=name, error=str(exc))
            raise RpcError(f"{name}: invalid config: {exc}") from None
        instance = self.instances.add(plugin, config, handler, worker)
        if self._on_instance_start:
            self._on_instance_start(instance)
        log.event(logger, "instance started", 10, plugin=name, instance=instance.id,
                  route_id=instance.route_id, seq=config.get("__seq__"), worker=worker)
        return {"Name": name, "Id": instance.id, "Config": config, "StartTime": instance.started_at}

    def close_instance(self, instance_id: Any) -> dict[str, Any]:
        instance = self.instances.close(instance_id)
        closer = getattr(instance.handler, "close", None)
        if callable(closer):
            closer()
        return {"Name": instance.name, "Id": instance.id, "Config": instance.config}

    def instance_status(self, instance_id: Any) -> dict[str, Any]:
        instance = self.instances.get(instance_id)
        return {"Name": instance.name, "Id": instance.id, "Config": instance.config,
                "StartTime": instance.started_at}

    def get_status(self, *_: Any) -> dict[str, Any]:
        return {"Pid": os.getpid(), "Plugins": {
            name: {"Name": name, "Instances": [self.instance_status(i.id) for i in self.instances if i.name == name]}
            for name in self.plugins}}

    def get_plugin_info(self, name: str) -> dict[str, Any]:
        plugin = self.plugins.get(name)
        if plugin is None:
            raise RpcError(f"{name} is not a plugin of this server")
        return plugin.info()

    def _start_event(self, request: dict[str, Any]) -> Event:
        instance = self.instances.get(request.get("InstanceId"))
        phase = request.get("EventName")
        plugin = instance.plugin
        if phase not in plugin.phases:
            raise RpcError(f"{instance.name} has no {phase} phase")
        loop = asyncio.get_running_loop()
        event = Event(next(self._event_ids), instance.id, phase, partial(self._error_step, instance), loop)
        self.events[event.id] = event
        method = getattr(instance.handler, phase)
        if phase in plugin.inline_phases:
            event.drive(method(pdk.KONG), pdk.bound(event.call))
        elif phase in plugin.async_phases:
            event.start(loop.create_task(method(pdk.KONG), context=pdk.bound(event.call)))
        else:
            event.start(loop.run_in_executor(self._executor, method, pdk.sync_kong(event.call, loop)))
        return event

    def _error_step(self, instance: Instance, event: Event, exc: BaseException) -> Any:
        log.event(logger, "plugin handler failed", 40, plugin=instance.name, phase=event.phase,
                  event=event.id, error=f"{type(exc).__name__}: {exc}")
        if event.phase not in RESPONDING_PHASES:
            return RET
        message = f"{instance.name} failed while handling the request (event {event.id}); see the Tollgate log"
        return {"Method": "kong.response.exit",
                "Args": [500, error_body(instance.plugin.error_format, 500, message),
                         {"Content-Type": "application/json"}]}

    async def _watch_stalls(self) -> None:
        """End the waits of handlers that produce no step within the handler timeout (checked a few times per
        timeout: one timer for the whole server instead of one per step)."""
        timeout = self._handler_timeout
        period = min(1.0, timeout / 4)
        while True:
            await asyncio.sleep(period)
            cutoff = time.monotonic() - timeout
            for event in [e for e in self.events.values() if e.waiting and e.touched <= cutoff]:
                event.stalled(timeout)
                if event.ended:
                    self.events.pop(event.id, None)

    def sweep(self) -> int:
        """Drop events Kong stopped answering (e.g. a PDK call that fails in Kong's log timer)."""
        cutoff = time.monotonic() - self._event_timeout
        stale = [e for e in self.events.values() if e.touched < cutoff]
        for event in stale:
            event.abandon()
            self.events.pop(event.id, None)
        return len(stale)

    def shutdown(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for event in list(self.events.values()):
            event.abandon()
        self.events.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _map_argument(method: str, args: list[Any], id_key: str | None = None) -> dict[str, Any]:
    """The one map argument of a Step, HandleEvent or StartInstance call (with an integer ``id_key``); RpcError
    for anything else, which only a peer that is not Kong sends."""
    request = args[0] if len(args) == 1 else None
    if not isinstance(request, dict) or (id_key is not None and type(request.get(id_key)) is not int):
        raise RpcError(f"{method} takes one map" + (f" with an integer {id_key}" if id_key else ""))
    return request


def _reply_with_task(reply: Reply, task: asyncio.Future) -> None:
    if task.cancelled():
        reply(RpcError("cancelled"), None)
    elif task.exception() is not None:
        reply(task.exception(), None)
    else:
        reply(None, task.result())


class RpcConnection(asyncio.Protocol):
    """One Kong connection: MessagePack arrays in, MessagePack arrays out.

    Bytes that are not MessagePack, or a message that breaks the framing limits or is not a request
    ``[0, msgid, method, args]``, close the connection with the reason in the log: Kong never sends them, and
    after a bad byte the stream has no boundary left to resume at. Other connections are unaffected. So does a
    message left incomplete past the backlog's deadline, or whose bytes would take the backlog past its cap.
    """

    def __init__(self, server: PluginServer, plugin_names: frozenset[str] | None, limits: Limits = Limits(),
                 backlog: Backlog | None = None):
        self._server = server
        self._allowed = plugin_names
        self._framer = Framer(limits)
        self._backlog = backlog if backlog is not None else Backlog()
        self._held = 0                                   # this connection's share of the backlog
        self._deadline: asyncio.TimerHandle | None = None  # for the incomplete message
        self._pack = msgpack.Packer(use_bin_type=True).pack
        self._transport: asyncio.Transport | None = None
        self._worker: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._worker = peer_pid(transport.get_extra_info("socket"))

    def data_received(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        try:
            messages = self._framer.feed(data)
        except FramingError as exc:
            self._drop(str(exc))
            return
        buffered = self._framer.buffered
        if (buffered or self._held) and not self._hold(buffered, bool(messages)):
            return
        receive = self._server.receive
        for message in messages:
            if type(message) is not list or len(message) != 4 or message[0] != REQUEST \
                    or type(message[1]) is not int or type(message[2]) is not str:
                self._drop(f"not an RPC request [0, msgid, method, args] (got {_shape(message)})")
                return
            _, msgid, method, args = message
            if not isinstance(args, list):
                args = [args]
            if self._allowed is not None and method == "plugin.StartInstance" and args \
                    and isinstance(args[0], dict) and isinstance(args[0].get("Name"), str) \
                    and args[0]["Name"] not in self._allowed:
                self._respond(msgid, method, RpcError(f"{args[0]['Name'][:100]} is not served on this socket"), None)
                continue
            receive(method, args, partial(self._respond, msgid, method), self._worker)

    def _hold(self, buffered: int, completed: bool) -> bool:
        """Count the incomplete message's bytes in the backlog and time it from its first read; False when the
        connection was closed instead."""
        if not self._backlog.resize(self._held, buffered):
            self._drop(f"incomplete messages on all connections would hold more than {self._backlog.cap} bytes")
            return False
        self._held = buffered
        if self._deadline is not None and (completed or not buffered):
            self._deadline.cancel()
            self._deadline = None
        if buffered and self._deadline is None:
            self._deadline = asyncio.get_running_loop().call_later(self._backlog.deadline, self._expire)
        return True

    def _expire(self) -> None:
        self._deadline = None
        self._drop(f"a message was left incomplete for {self._backlog.deadline:g} s")

    def _release(self) -> None:
        self._backlog.resize(self._held, 0)
        self._held = 0
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _drop(self, reason: str) -> None:
        log.event(logger, "closing plugin-server connection: protocol error", 30, reason=reason, worker=self._worker)
        self._release()
        if self._transport is not None:
            self._transport.abort()
            self._transport = None

    def _respond(self, msgid: int, method: str, error: BaseException | None, result: Any) -> None:
        text: str | None = None
        if error is not None:
            if isinstance(error, (RpcError, NoInstance)):
                text = str(error)
            else:  # a server bug must still answer, never leave Kong waiting
                log.event(logger, "RPC method failed", 40, method=method, error=f"{type(error).__name__}: {error}")
                text = f"{method} failed: {type(error).__name__}"
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(self._pack([RESPONSE, msgid, text, result]))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._release()


def _shape(message: Any) -> str:
    """What a refused message looked like, for the log: its type, and the types of a list's first items."""
    if isinstance(message, list):
        return "[" + ", ".join(type(item).__name__ for item in message[:4]) + (", ..." if len(message) > 4 else "") + "]"
    return type(message).__name__


def peer_pid(sock: Any) -> int | None:
    """The pid of the process that connected (SO_PEERCRED): which nginx worker a Kong connection belongs to.

    Each nginx worker has its own connections, and its own cache of plugin instances; None where the
    platform does not say (every connection then counts as one worker).
    """
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return None
    try:
        pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    except OSError:
        return None
    return pid or None


async def listen(server: PluginServer, path: str, plugin_names: Iterable[str] | None = None, *, mode: int = 0o660,
                 gid: int = -1, backlog: Backlog | None = None) -> asyncio.AbstractServer:
    """Serve ``server`` on the unix socket ``path`` (replacing a stale socket file).

    Connecting needs write permission on the socket, and whoever connects can act as Kong: the socket is born
    owner-only (umask) and then opened to ``mode`` and group ``gid`` (-1: the process's), never wider. ``backlog``
    bounds the incomplete messages of all its connections (share one between listeners to bound them together).
    """
    backlog = backlog if backlog is not None else Backlog()
    if os.path.exists(path):
        os.unlink(path)
    allowed = frozenset(plugin_names) if plugin_names is not None else None
    loop = asyncio.get_running_loop()
    umask = os.umask(0o177)
    try:
        listener = await loop.create_unix_server(lambda: RpcConnection(server, allowed, backlog=backlog), path)
    finally:
        os.umask(umask)
    if gid != -1:
        os.chown(path, -1, gid)
    os.chmod(path, mode)
    return listener

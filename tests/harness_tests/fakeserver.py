"""A scripted MsgPack:1 plugin server for protocol tests of the double: it answers the
way a test tells it to (PDK calls to make per phase, errors, notifications, wrong msg
ids, silence) and records what it received."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

import msgpack

from tests.harness.workerproc import peer_pid


def query_cmd_printing(document: Any) -> list[str]:
    """A query command (no shell) that prints ``document`` as JSON."""
    return [sys.executable, "-c", "import sys; sys.stdout.write(sys.argv[1])", json.dumps(document)]


def plugin_info(name: str, priority: int = 900, phases: tuple = ("access",), fields: list | None = None) -> dict:
    return {"Name": name, "Priority": priority, "Version": "0.1.0", "Phases": list(phases),
            "Schema": {"name": name, "fields": [{"config": {"type": "record", "fields": fields or []}}]}}


@dataclass
class Event:
    id: int
    instance: int
    phase: str
    calls: list
    results: list = field(default_factory=list)
    pos: int = 0


class FakeServer:
    def __init__(self, name: str = "fake", *, priority: int = 900, phases: tuple = ("access", "log"),
                 fields: list | None = None):
        self.dir = tempfile.mkdtemp(prefix="fake-")
        self.name = name
        self.socket = os.path.join(self.dir, f"{name}.socket")
        self.info = plugin_info(name, priority, phases, fields)
        #: phase -> list of [method, args] the plugin calls (or a callable(config) -> list)
        self.script: dict[str, Any] = {}
        self.received: list[list] = []
        self.instances: dict[int, dict] = {}
        self.events: dict[int, Event] = {}
        self.finished: list[Event] = []
        self.instance_ids = itertools.count(0)
        self.event_ids = itertools.count(0)
        self.pid = 4242
        self.send_pid_notification = False
        #: hook(message) -> None or a list of raw replies (bytes) to send instead
        self.hook: Callable[[list], Any] | None = None
        self.connections = 0
        self.peers: list[int | None] = []  # per received message: the pid of the process that connected
        self._server: asyncio.AbstractServer | None = None

    def entry(self, **kw: Any) -> dict:
        return {"name": self.name, "socket": self.socket, "query_cmd": query_cmd_printing([self.info]), **kw}

    async def start(self) -> "FakeServer":
        self._server = await asyncio.start_unix_server(self._conn, path=self.socket)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            if os.path.exists(self.socket):
                os.unlink(self.socket)

    async def restart(self) -> None:
        """A new process: instances and events forgotten, a new pid."""
        await self.stop()
        self.instances.clear()
        self.events.clear()
        self.pid += 1
        await self.start()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        counted = False
        peer = peer_pid(writer.get_extra_info("socket"))
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                if not counted:  # connections that carried messages (not the double's readiness probe)
                    self.connections += 1
                    counted = True
                unpacker.feed(chunk)
                for msg in unpacker:
                    self.received.append(msg)
                    self.peers.append(peer)
                    if self.hook is not None:
                        custom = self.hook(msg)
                        if custom is not None:
                            if isinstance(custom, asyncio.Future) or asyncio.iscoroutine(custom):
                                custom = await custom
                            for raw in custom:
                                writer.write(raw)
                            await writer.drain()
                            continue
                    out = b""
                    if self.send_pid_notification:
                        out += msgpack.packb([2, "serverPid", self.pid])
                    err, result = self.answer(msg[2], msg[3])
                    out += msgpack.packb([1, msg[1], err, result], use_bin_type=True)
                    writer.write(out)
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    def answer(self, method: str, args: list) -> tuple[Any, Any]:
        if method == "plugin.StartInstance":
            iid = next(self.instance_ids)
            config = json.loads(args[0]["Config"])
            self.instances[iid] = config
            return None, {"Name": args[0]["Name"], "Id": iid, "Config": config, "StartTime": 0}
        if method == "plugin.CloseInstance":
            if args[0] not in self.instances:
                return f"no plugin instance #{args[0]}", None
            return None, {"Id": args[0], "Name": self.name, "Config": self.instances.pop(args[0])}
        if method == "plugin.HandleEvent":
            iid = args[0]["InstanceId"]
            if iid not in self.instances:
                return f"no plugin instance #{iid}", None
            script = self.script.get(args[0]["EventName"], [])
            if callable(script):
                script = script(self.instances[iid])
            ev = Event(next(self.event_ids), iid, args[0]["EventName"], list(script))
            self.events[ev.id] = ev
            return None, self._next(ev)
        if method.startswith("plugin.Step"):
            ev = self.events.get(args[0]["EventId"])
            if ev is None:
                return f"event id {args[0]['EventId']} not found", None
            ev.results.append((method, args[0].get("Data", "<absent>") if "Data" in args[0] else "<absent>"))
            return None, self._next(ev)
        return f"RPC for {method} is not supported", None

    def _next(self, ev: Event) -> dict:
        if ev.pos >= len(ev.calls):
            self.finished.append(ev)
            self.events.pop(ev.id, None)
            return {"EventId": ev.id, "Data": "ret"}
        method, *args = ev.calls[ev.pos]
        ev.pos += 1
        if method in ("kong.response.exit", "kong.response.error"):
            self.finished.append(ev)
        return {"EventId": ev.id, "Data": {"Method": method, "Args": args}}

    def methods(self) -> list[str]:
        return [m[2] for m in self.received if m[0] == 0]

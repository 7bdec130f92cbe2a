"""Plugin-server entries (``pluginserver_names`` and their ``_socket`` / ``_query_cmd`` /
``_start_cmd``), plugin discovery with the query command, and the process Kong starts
when an entry has a start command (``kong/runloop/plugin_servers/process.lua``)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import KongStartError


@dataclass
class PluginServerEntry:
    """One plugin-server entry, as kong.conf would declare it."""

    name: str
    socket: str
    query_cmd: list[str] | str
    start_cmd: list[str] | str | None = None
    #: extra environment for the query and start commands
    env: dict[str, str] | None = None

    @classmethod
    def coerce(cls, value: "PluginServerEntry | dict[str, Any]") -> "PluginServerEntry":
        if isinstance(value, PluginServerEntry):
            return value
        return cls(**value)

    def argv(self, cmd: list[str] | str) -> list[str]:
        return list(cmd) if isinstance(cmd, (list, tuple)) else shlex.split(cmd)

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        return env


@dataclass
class PluginInfo:
    name: str
    priority: Any
    version: Any
    schema: Any
    phases: list[str]
    entry: PluginServerEntry


async def query_entry(entry: PluginServerEntry, timeout: float = 60.0) -> tuple[list[dict], str]:
    """Run the entry's query command (no shell) and parse its stdout as Kong does.
    Returns (plugin infos, protocol); raises :class:`KongStartError`."""
    argv = entry.argv(entry.query_cmd)
    try:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, env=entry.environ(),
                                                    stdin=asyncio.subprocess.DEVNULL)
    except OSError as e:
        raise KongStartError(f"failed loading external plugins: error loading plugins info from "
                             f"[{entry.name}]: {e}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        raise KongStartError(f"failed loading external plugins: query command of [{entry.name}] timed out") from None
    text = out.decode("utf-8", "replace")
    try:
        dump = json.loads(text)
    except ValueError as e:
        raise KongStartError(f"failed loading external plugins: failed decoding plugin info: {e} "
                             f"(query command {argv!r} printed {text[:500]!r}; stderr {err[-500:]!r})") from None
    if not isinstance(dump, (dict, list)):
        raise KongStartError(f"failed loading external plugins: not a plugin info table: \n{' '.join(argv)}\n{text}")
    protocol = "MsgPack:1"
    infos: Any = dump
    if isinstance(dump, dict):
        protocol = dump.get("Protocol") or "MsgPack:1"
        infos = dump.get("Plugins", dump)
    if protocol != "MsgPack:1":
        raise KongStartError(f"failed loading external plugins: unknown protocol implementation: {protocol}")
    if isinstance(infos, dict):
        infos = []  # a map that is not a list of plugin tables: ipairs sees nothing
    if not all(isinstance(i, dict) for i in infos):
        raise KongStartError(f"failed loading external plugins: not a plugin info table: \n{' '.join(argv)}\n{text}")
    return list(infos), protocol


def register(entries: list[PluginServerEntry], dumps: list[list[dict]], kong_version: tuple[int, int],
             log: Callable[[str, str], None]) -> dict[str, PluginInfo]:
    """Which plugins Kong registers from the dumps: the FIRST of each dump on 3.9+
    (a later entry with the same name replaces an earlier one), all on 3.0-3.8 (the
    first registration of a name wins, a duplicate is logged)."""
    out: dict[str, PluginInfo] = {}
    for entry, infos in zip(entries, dumps):
        if kong_version >= (3, 9):
            if not infos:
                raise KongStartError(f"failed loading external plugins: attempt to index local 'info' (a nil value) "
                                     f"[{entry.name}: the query command listed no plugin]")
            chosen = infos[:1]
        else:
            chosen = infos
        for info in chosen:
            name = info.get("Name")
            if not isinstance(name, str):
                raise KongStartError(f"plugin info without a Name from [{entry.name}]")
            if kong_version < (3, 9) and name in out:
                log("err", f"Duplicate plugin name [{name}] by {out[name].entry.name} and {entry.name}")
                continue
            out[name] = PluginInfo(name=name, priority=info.get("Priority"), version=info.get("Version"),
                                   schema=info.get("Schema"), phases=list(info.get("Phases") or []), entry=entry)
    return out


@dataclass
class Supervisor:
    """Kong's ``pluginserver_timer``: ``exec start_cmd``, output to the log, respawn at most
    once a second, SIGTERM on stop."""

    entry: PluginServerEntry
    log: Callable[[str, str], None]
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    pids: list[int] = field(default_factory=list)
    _task: asyncio.Task | None = None
    _stopping: bool = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        next_spawn = 0.0
        argv = self.entry.argv(self.entry.start_cmd)  # type: ignore[arg-type]
        while not self._stopping:
            delay = next_spawn - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._stopping:
                return
            self.log("notice", f"[pluginserver] starting pluginserver process for {self.entry.name}")
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                    stdin=asyncio.subprocess.DEVNULL, env=self.entry.environ(), start_new_session=True)
            except FileNotFoundError:
                self.log("err", f'[pluginserver] external pluginserver "{self.entry.name}" start command '
                                f'"{" ".join(argv)}" exited with "command not found"')
                return
            next_spawn = time.monotonic() + 1.0
            self.starts += 1
            self.pids.append(self.proc.pid)
            self.log("notice", f"[pluginserver] started, pid {self.proc.pid}")
            assert self.proc.stdout is not None
            prefix = f"[{self.entry.name}:{self.proc.pid}] "
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    break
                self.log("info", prefix + line.decode("utf-8", "replace").rstrip("\n"))
            rc = await self.proc.wait()
            self.log("notice", f"external pluginserver '{self.entry.name}' terminated: exit {rc}")
            if rc == 127:
                return

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the current process (the supervisor starts it again)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)


async def wait_for_socket(path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, w = await asyncio.open_unix_connection(path)
            w.close()
            return True
        except OSError:
            await asyncio.sleep(0.05)
    return False

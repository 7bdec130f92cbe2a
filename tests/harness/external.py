"""An external plugin as Kong loads it: its phases call ``handle_event`` over the RPC,
with the instance cache and the event loop of ``plugin.lua`` / ``rpc/mp_rpc.lua``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ExitSignal, KongLuaError
from .luavalue import cjson_encode, from_wire, lua_str
from .pdk import MUST_FIX, STEP_METHODS, PdkCall, Saved, resolve
from .rpc import CallInfo, Rpc

if TYPE_CHECKING:  # pragma: no cover
    from .config import PluginConfig
    from .kong import KongDouble, Worker
    from .request import RequestState
    from .servers import PluginServerEntry

#: how often Kong retries an event after "no plugin instance" (Kong itself never stops)
MAX_INSTANCE_RETRIES = 20


@dataclass
class InstanceInfo:
    """One entry of ``running_instances``."""

    conf: dict[str, Any]
    seq: Any
    id: Any = None
    plugin_name: str | None = None
    rpc: Rpc | None = None
    Config: Any = None


@dataclass
class ExternalPlugin:
    """The Lua handler Kong builds for a plugin registered by a plugin-server entry."""

    name: str
    priority: int
    version: str | None
    schema: Any
    phases: list[str]
    entry: "PluginServerEntry"
    kong: "KongDouble" = field(repr=False, default=None)  # type: ignore[assignment]

    external = True

    def has_phase(self, phase: str) -> bool:
        return phase in self.phases

    # ------------------------------------------------------------------ instances

    def _rpc(self, worker: "Worker") -> Rpc:
        key = self.name if self.kong.kong_version >= (3, 9) else f"server:{self.entry.name}"
        return worker.rpc(key, self.entry.socket)

    def _instance_key(self, conf: dict[str, Any]) -> Any:
        if self.kong.kong_version >= (3, 9):
            return conf.get("__plugin_id")  # kong.plugin.get_id()
        return conf.get("__key__") or self.name

    async def get_instance_id(self, worker: "Worker", req: "RequestState", conf: dict[str, Any]) -> Any:
        instances = worker.running_instances
        key = self._instance_key(conf)
        info = instances.get(key)
        waited = 0
        while info is not None and info.id is None:
            # some other request is starting this instance
            await asyncio.sleep(0.1 if self.kong.kong_version >= (3, 9) else 0.001)
            waited += 1
            if waited > 100:
                instances.pop(key, None)
                return None, f"Could not claim instance_id for {self.name} (key: {key})"
            info = instances.get(key)
        if info is not None and info.id is not None and info.seq == conf.get("__seq__") and (
                self.kong.kong_version < (3, 9) or info.conf.get("__plugin_id") == key):
            return info.id, None

        old_id = info.id if info is not None else None
        if info is None:
            info = InstanceInfo(conf=conf, seq=conf.get("__seq__"))
            instances[key] = info
        else:
            info.id = None

        rpc = self._rpc(worker)
        status, err = await rpc.call("plugin.StartInstance",
                                     [{"Name": self.name, "Config": cjson_encode(conf)}],
                                     CallInfo(self.name, "start", None, req))
        if status is None:
            self.kong._record_log("err", f"starting instance: {err}", plugin=self.name, request=req, source="kong")
            instances.pop(key, None)
            raise KongLuaError(str(err) if err is not None else "nil")
        if not isinstance(status, dict):
            instances.pop(key, None)
            raise KongLuaError("attempt to index a " + type(status).__name__ + " value")
        info.id = status.get("Id")
        info.plugin_name = self.name
        info.conf = conf
        info.seq = conf.get("__seq__")
        info.Config = status.get("Config")
        info.rpc = rpc
        self.kong.stats.instances_started += 1
        if old_id is not None:
            # there was a previous instance with the same key: close it (errors ignored)
            await rpc.call("plugin.CloseInstance", [old_id], CallInfo(self.name, "close", None, req))
        return info.id, None

    def reset_instance(self, worker: "Worker", conf: dict[str, Any]) -> None:
        if self.kong.kong_version >= (3, 9):
            # every instance of the plugin, in every worker (worker event "reset_instances")
            for w in self.kong.worker_list:
                w.reset_instances_for_plugin(self.name)
        else:
            worker.running_instances.pop(self._instance_key(conf), None)

    # ------------------------------------------------------------------ events

    async def handle_event(self, worker: "Worker", req: "RequestState", pc_conf: "PluginConfig",
                           conf: dict[str, Any], phase: str, saved: Saved | None = None) -> None:
        """``Rpc:handle_event``. Raises :class:`ExitSignal` (the handler ended with an
        exit) or :class:`KongLuaError`; RPC errors are logged and swallowed."""
        for _ in range(MAX_INSTANCE_RETRIES):
            instance_id, err = await self.get_instance_id(worker, req, conf)
            if err is None:
                err = await self._bridge_loop(worker, req, instance_id, phase, saved)
            if err is None:
                return
            if not isinstance(err, (str, bytes)):
                raise KongLuaError("attempt to call method 'lower' (a " + type(err).__name__ + " value)")
            text = lua_str(err)
            if "no plugin instance" in text.lower():
                self.reset_instance(worker, conf)
                self.kong._record_log("warn", text, plugin=self.name, request=req, source="kong")
                continue
            self.kong._record_log("err", text, plugin=self.name, request=req, source="kong")
            self.kong.stats._count_failure(req, self.name, phase, text)
            return
        self.kong._record_log("crit", "harness: gave up retrying after 'no plugin instance'", plugin=self.name,
                              request=req, source="harness")

    async def _bridge_loop(self, worker: "Worker", req: "RequestState", instance_id: Any, phase: str,
                           saved: Saved | None) -> Any:
        rpc = self._rpc(worker)
        step_in, err = await rpc.call("plugin.HandleEvent", [{"EventName": phase, "InstanceId": instance_id}],
                                      CallInfo(self.name, phase, 0, req))
        if step_in is None:
            return err
        if not isinstance(step_in, dict):
            raise KongLuaError(f"attempt to index a {type(step_in).__name__} value")
        event_id = step_in.get("EventId")
        step = 0
        while True:
            data = step_in.get("Data")
            if data == "ret":
                return None
            if not isinstance(data, dict):
                raise KongLuaError(f"attempt to index field 'Data' (a {_lua_kind(data)} value)")
            method = data.get("Method")
            args = data.get("Args")
            result = self._call_pdk(req, phase, method, args, saved)
            step_method = STEP_METHODS.get(lua_str(method) if isinstance(method, (str, bytes)) else "",
                                           "plugin.Step")
            if isinstance(result, dict) and result.get("_method"):
                step_method = result["_method"]
            step += 1
            message: dict[str, Any] = {"EventId": event_id}
            if result is not None:
                message["Data"] = result
            step_in, err = await rpc.call(step_method, [message], CallInfo(self.name, phase, step, req))
            if step_in is None:
                return err
            if not isinstance(step_in, dict):
                raise KongLuaError(f"attempt to index a {type(step_in).__name__} value")

    def _call_pdk(self, req: "RequestState", phase: str, method: Any, args: Any, saved: Saved | None) -> Any:
        name, fn, via_override = resolve(method)
        self.kong.stats._count_pdk(req, self.name, phase, name)
        if fn is None:
            self.kong._record_log("err", f"could not find pdk method: {lua_str(method)}", plugin=self.name,
                                  request=req, source="kong")
            return None
        if isinstance(args, list):
            call_args = [from_wire(a) for a in args]  # as Lua holds them: nil map values gone
            while call_args and call_args[-1] is None:
                call_args.pop()
        elif isinstance(args, dict) or args is None:
            call_args = []
        else:
            call_args = [args]
        pc = PdkCall(req=req, phase=phase, plugin_name=self.name, kong=self.kong, saved=saved,
                     via_override=via_override)
        try:
            ret = fn(pc, *call_args)
        except (ExitSignal, KongLuaError):
            raise
        except TypeError as e:
            raise KongLuaError(f"bad arguments to {name}: {e}") from None
        except Exception as e:  # a bug of the double: say so loudly
            self.kong._record_log("crit", f"harness bug in {name}: {e!r}", plugin=self.name, request=req,
                                  source="harness")
            raise KongLuaError(f"{name}: {e}") from e
        fix = MUST_FIX.get(lua_str(method))
        if fix is not None:
            ret = fix(ret)
        return ret


def _lua_kind(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, (str, bytes)):
        return "string"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return "table"

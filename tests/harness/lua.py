"""Kong's Lua plugins, run for real inside the double: the plugin's own ``handler.lua`` in LuaJIT (lupa).

Its ``kong.*`` calls go to the double's PDK (the same functions, with the same phase checks, that external plugins
reach over the socket); ``kong.ctx.plugin`` is a table per request; ``ngx.arg`` is the body filter's chunk and end;
``cjson.safe`` decodes and encodes as Lua's cjson does (nil on bad input). Only what Tollgate's companion plugins
use is provided: a call to anything else fails the test loudly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lupa.luajit21 as luajit

from .bundled import BundledPlugin
from .errors import KongLuaError
from .pdk import PDK, PdkCall

if TYPE_CHECKING:  # pragma: no cover
    from .kong import KongDouble
    from .request import RequestState

PHASES = ("access", "header_filter", "body_filter", "log")
REPO = Path(__file__).resolve().parents[2]


class LuaPlugin(BundledPlugin):
    """A plugin from ``kong/plugins/<name>/`` (handler.lua; its schema is given in Kong's JSON layout)."""

    def __init__(self, name: str, schema_fields: list[dict[str, Any]] | None = None,
                 directory: Path | None = None):
        self.name = name
        # latin-1: every Lua string maps to a Python str byte for byte (bodies are bytes, not text)
        self.lua = luajit.LuaRuntime(unpack_returned_tuples=True, encoding="latin-1")
        self._current: tuple[Any, Any, str] | None = None    # (double, request, phase) of the call under way
        self._ngx = self.lua.table(arg=self.lua.table())
        self.lua.globals().ngx = self._ngx
        self.lua.globals().kong = self._kong_table()
        self._install_cjson()
        source = ((directory or REPO / "kong" / "plugins" / name) / "handler.lua").read_text()
        self.handler = self.lua.execute(source)
        self.priority = int(self.handler.PRIORITY)
        self.version = str(self.handler.VERSION)
        self.phases = tuple(p for p in PHASES if self.handler[p] is not None)
        self.schema = {"name": name, "fields": [{"config": {"type": "record", "fields": schema_fields or []}}]}

    async def run(self, phase: str, kong: "KongDouble", req: "RequestState", conf: dict[str, Any]) -> None:
        self._current = (kong, req, phase)
        contexts = req.ngx_ctx.setdefault("lua_plugin_ctx", {})
        if self.name not in contexts:
            contexts[self.name] = self.lua.table()
        self.lua.globals().kong.ctx.plugin = contexts[self.name]
        if phase == "body_filter":
            self._ngx.arg[1], self._ngx.arg[2] = req.ngx_arg[0], req.ngx_arg[1]
        try:
            self.handler[phase](self.handler, self.lua.table_from(conf, recursive=True))
        except luajit.LuaError as exc:
            raise KongLuaError(str(exc)) from None
        finally:
            self._current = None
        if phase == "body_filter":
            out = self._ngx.arg[1]
            req.ngx_arg[0] = out.encode("latin-1") if isinstance(out, str) else (out or b"")

    # -- the globals the plugin sees ---------------------------------------------------------------------------

    def _kong_table(self) -> Any:
        root = self.lua.table(ctx=self.lua.table())
        for name in PDK:
            parts = name.split(".")[1:]
            node = root
            for part in parts[:-1]:
                if luajit.lua_type(node[part]) != "table":   # kong.log is both a function and a table in Kong
                    node[part] = self.lua.table()
                node = node[part]
            if node[parts[-1]] is None:
                node[parts[-1]] = self._bridge(name)
        return root

    def _bridge(self, name: str) -> Any:
        def call(*args: Any) -> Any:
            assert self._current is not None, f"{name} called outside a phase"
            kong, req, phase = self._current
            result = PDK[name](PdkCall(req=req, phase=phase, plugin_name=self.name, kong=kong),
                               *(self._to_python(a) for a in args))
            return self._to_lua(result)
        return call

    def _install_cjson(self) -> None:
        def decode(text: Any) -> Any:
            try:
                return self._to_lua(json.loads(text.decode() if isinstance(text, bytes) else text))
            except (ValueError, TypeError, AttributeError):
                return None

        def encode(value: Any) -> Any:
            return json.dumps(self._to_python(value), separators=(",", ":"))

        module = self.lua.table(decode=decode, encode=encode)
        self.lua.globals().package.loaded["cjson.safe"] = module
        self.lua.globals().package.loaded["cjson"] = module

    def _to_python(self, value: Any) -> Any:
        if luajit.lua_type(value) == "table":
            items = dict(value.items())
            if items and all(isinstance(k, int) for k in items) and sorted(items) == list(range(1, len(items) + 1)):
                return [self._to_python(items[i]) for i in range(1, len(items) + 1)]
            return {k: self._to_python(v) for k, v in items.items()}
        return value

    def _to_lua(self, value: Any) -> Any:
        if isinstance(value, (dict, list)):
            return self.lua.table_from(value, recursive=True)
        return value

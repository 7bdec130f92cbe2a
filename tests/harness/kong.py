"""``KongDouble``: the Kong-faithful test double. See the package docstring."""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import itertools
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import aiohttp
import msgpack
from aiohttp import web
from yarl import URL

from . import pdk as pdkmod
from .bundled import BUNDLED, BundledPlugin
from .config import ConfigError, Declarative, PluginConfig, config_record_fields, parse_declarative, process_config
from .errors import ClientAborted, ExitSignal, KongLuaError, KongStartError
from .external import ExternalPlugin
from .faults import Faults
from .headers import HOP_BY_HOP, Headers
from .kongconf import SocketTimeouts, parse_size, socket_timeouts
from .luavalue import JsonArray, cjson_encode, lua_bytes, lua_str
from .pdk import KONG_VERSION, MIME_JSON, Saved, error_body, get_response_type, http_error_message
from .request import RequestState
from .router import match_route, normalize_path, upstream_uri
from .rpc import Connection, Rpc, SocketPool
from .servers import PluginServerEntry, Supervisor, query_entry, register, wait_for_socket
from .stats import RequestStats, Stats
from .workerproc import WorkerProcess

logger = logging.getLogger("tests.harness.kong")

DOWNSTREAM_PHASES = ("response", "header_filter", "body_filter", "log")


@dataclass
class LogRecord:
    """A line of Kong's error log (Kong's own messages, plugin ``kong.log.*`` calls)."""

    t: float
    level: str
    message: str
    plugin: str | None = None
    request_id: str | None = None
    source: str = "kong"  # "kong" | "plugin" | "pluginserver" | "harness"

    def __str__(self) -> str:
        p = f"[{self.plugin}] " if self.plugin else ""
        return f"[{self.level}] {p}{self.message}"


class Worker:
    """One nginx worker: its socket pools, ``Rpc`` objects (msg-id counters) and
    instance cache (``running_instances``)."""

    def __init__(self, kong: "KongDouble", wid: int):
        self.kong = kong
        self.id = wid
        self.pools: dict[str, SocketPool] = {}
        self.rpcs: dict[str, Rpc] = {}
        self.running_instances: dict[Any, Any] = {}
        # nginx workers are processes: every worker but the first connects from a process of its own
        self.process: WorkerProcess | None = None

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else os.getpid()

    def pool(self, path: str) -> SocketPool:
        p = self.pools.get(path)
        if p is None:
            if self.id > 0 and self.process is None:
                self.process = WorkerProcess()
            opener = self.process.open_unix_connection if self.process is not None else None
            p = self.pools[path] = SocketPool(path, opener=opener)
        return p

    def rpc(self, key: str, path: str) -> Rpc:
        r = self.rpcs.get(key)
        if r is None:
            r = self.rpcs[key] = Rpc(kong=self.kong, worker=self, socket_path=path, name=key)
        return r

    def reset_instances_for_plugin(self, name: str) -> None:
        for k, inst in list(self.running_instances.items()):
            if inst.plugin_name == name:
                del self.running_instances[k]

    def drop_instances_of_rpc(self, rpc: Rpc) -> None:
        for k, inst in list(self.running_instances.items()):
            if inst.rpc is rpc:
                del self.running_instances[k]

    def close(self) -> None:
        for p in self.pools.values():
            p.close_all()
        if self.process is not None:
            self.process.close()
            self.process = None


def _parse_version(v: str | tuple) -> tuple[int, int]:
    if isinstance(v, tuple):
        return v[:2]  # type: ignore[return-value]
    parts = str(v).split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0


class KongDouble:
    """A test double of Kong Gateway OSS for external (plugin-server) plugins.

    It is NOT a gateway: it plays Kong's side of the plugin-server protocol the way
    Kong 3.9.3 (or 3.0-3.8) does, in front of a real HTTP listener, so that a plugin
    server and real clients can be tested without Kong.

    Arguments:
        plugin_servers: plugin-server entries (``PluginServerEntry`` or dicts with
            ``name``, ``socket``, ``query_cmd``, optional ``start_cmd`` and ``env``).
        config: a decK-style declarative config (dict), loadable later with
            :meth:`load_config`.
        plugins: kong.conf ``plugins`` (default ``["bundled", <every registered plugin>]``);
            ``"bundled"`` stands for the bundled stand-ins (key-auth).
        kong_version: ``"3.9"`` (first plugin of each dump, instances per plugin id) or
            ``"3.8"`` (all plugins of each dump; also 3.0-3.7).
        workers: nginx workers (each with its own instance cache, msg ids and pools).
        rpc_timeout: seconds Kong waits on the plugin socket per operation (Kong: 60).
        client_body_buffer_size: bodies larger than this "spill to a file"
            (``kong.request.get_raw_body()`` then fails inside Kong).
        kong_conf: kong.conf settings (``kongconf.read_kong_conf``); those the double
            models override the arguments above: ``nginx_http_lua_socket_*_timeout``
            (the plugin-server call's connect / send / read timeouts) and
            ``nginx_http_client_body_buffer_size``.
        host, port: where the HTTP front listens (port 0: a free port).
        keepalive: whether downstream connections are kept alive (``Connection`` header).
        trusted_ips: kong.conf ``trusted_ips`` (CIDRs or addresses).
        record_messages: keep every RPC message (``messages``), for trace comparison.
        wait_for_sockets: seconds to wait at start for each entry's socket to accept
            (Kong does not wait; 0 disables).
        bundled: extra in-process stand-ins for bundled plugins ({name: BundledPlugin}).
        ws_id, node_id: ids Kong would have (workspace, node).
    """

    def __init__(self, plugin_servers: Iterable[PluginServerEntry | dict] = (), config: dict | None = None, *,
                 plugins: list[str] | None = None, kong_version: str = "3.9", workers: int = 1,
                 rpc_timeout: float = 60.0, client_body_buffer_size: int = 8192, host: str = "127.0.0.1",
                 port: int = 0, keepalive: bool = True, trusted_ips: Iterable[str] = (),
                 record_messages: bool = False, wait_for_sockets: float = 15.0,
                 bundled: dict[str, BundledPlugin] | None = None, ws_id: str | None = None,
                 node_id: str | None = None, query_timeout: float = 60.0,
                 kong_conf: Mapping[str, str] | None = None):
        self.entries = [PluginServerEntry.coerce(e) for e in plugin_servers]
        self._initial_config = config
        self.plugins_setting = plugins
        self.kong_version = _parse_version(kong_version)
        self.workers = int(workers)
        conf = dict(kong_conf or {})
        self.socket_timeouts = socket_timeouts(conf, SocketTimeouts.uniform(rpc_timeout))
        buffer_size = conf.get("nginx_http_client_body_buffer_size")
        self.client_body_buffer_size = parse_size(buffer_size) if buffer_size else int(client_body_buffer_size)
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self.trusted_ips = [ipaddress.ip_network(t, strict=False) for t in trusted_ips]
        self.record_messages = record_messages
        self.wait_for_sockets = wait_for_sockets
        self.bundled = dict(BUNDLED)
        if bundled:
            self.bundled.update(bundled)
        self.ws_id = ws_id or "0dc6f45b-8f8d-40d2-a504-473544ee190b"
        self.node_id = node_id or str(uuid.uuid4())
        self.query_timeout = query_timeout

        self.faults = Faults()
        self.stats = Stats()
        self.messages: list[dict[str, Any]] = []
        self.logs: list[LogRecord] = []
        self.registered: dict[str, Any] = {}  # name -> PluginInfo
        self.handlers: dict[str, Any] = {}  # enabled plugin name -> ExternalPlugin | BundledPlugin
        self.declarative = Declarative(ws_id=self.ws_id)
        self.supervisors: dict[str, Supervisor] = {}
        self.worker_list: list[Worker] = [Worker(self, i) for i in range(self.workers)]
        self._sorted: list[Any] = []
        self._combos: dict[str, dict[tuple, PluginConfig]] = {}
        self._global_combos: dict[str, PluginConfig] = {}
        self._seq = itertools.count(1)
        self._rr = itertools.count()
        self._pending: set[asyncio.Task] = set()
        self._inflight = 0
        self._runner: web.ServerRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._started = False
        self.loop: asyncio.AbstractEventLoop | None = None

    # ================================================================== lifecycle

    async def __aenter__(self) -> "KongDouble":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> "KongDouble":
        """``kong start``: discover plugins, start plugin servers, load the config, listen."""
        self.loop = asyncio.get_running_loop()
        # Kong runs the query commands one after the other; running them at once changes
        # nothing but the time kong start takes (results are kept in entry order)
        limit = asyncio.Semaphore(8)

        async def query(entry: PluginServerEntry) -> list[dict]:
            async with limit:
                infos, _ = await query_entry(entry, self.query_timeout)
                return infos

        dumps = list(await asyncio.gather(*(query(e) for e in self.entries)))
        self.registered = register(self.entries, dumps, self.kong_version,
                                   lambda lvl, msg: self._record_log(lvl, msg, source="kong"))
        self._enable_plugins()
        for entry in self.entries:
            if entry.start_cmd:
                sup = Supervisor(entry, lambda lvl, msg: self._record_log(lvl, msg, source="pluginserver"))
                self.supervisors[entry.name] = sup
                sup.start()
            else:
                self._record_log("warn", f"[pluginserver] no start command for {entry.name}: "
                                         "assuming external process management", source="kong")
        if self.wait_for_sockets:
            for entry in self.entries:
                if not await wait_for_socket(entry.socket, self.wait_for_sockets):
                    self._record_log("warn", f"harness: socket {entry.socket} of {entry.name} does not accept",
                                     source="harness")
        if self._initial_config is not None:
            self.load_config(self._initial_config)
        self._session = aiohttp.ClientSession(
            auto_decompress=False, connector=aiohttp.TCPConnector(limit=0, force_close=False),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar())
        server = web.Server(self._handle, handler_cancellation=False)
        self._runner = web.ServerRunner(server, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]
        self._started = True
        return self

    async def stop(self) -> None:
        """``kong stop``: stop listening, SIGTERM the started plugin servers."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        try:
            await self.settle(timeout=2.0)
        except Exception:
            pass
        for t in list(self._pending):
            t.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None
        for sup in self.supervisors.values():
            await sup.stop()
        for w in self.worker_list:
            w.close()
        self._started = False

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until no request is in flight and every log timer has finished (a timer
        whose event Kong never answers ends at once, as in Kong)."""
        deadline = time.monotonic() + timeout
        while True:
            pending = [t for t in self._pending if not t.done()]
            if not pending and self._inflight == 0:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(pending)} log timers / {self._inflight} requests still running")
            if pending:
                await asyncio.wait(pending, timeout=min(left, 0.5))
            else:
                await asyncio.sleep(0.005)

    # ================================================================== plugins and config

    def _enable_plugins(self) -> None:
        names = self.plugins_setting if self.plugins_setting is not None else ["bundled", *self.registered]
        handlers: dict[str, Any] = {}
        for name in names:
            name = name.strip()
            if name == "bundled":
                handlers.update(self.bundled)
                continue
            if name == "off":
                continue
            if name in self.bundled:
                handlers[name] = self.bundled[name]
                continue
            info = self.registered.get(name)
            if info is None or not isinstance(info.priority, (int, float)) or isinstance(info.priority, bool):
                raise KongStartError(f"error loading plugin schemas: on plugin '{name}': "
                                     f"{name} plugin is enabled but not installed")
            handlers[name] = ExternalPlugin(name=name, priority=int(info.priority), version=info.version,
                                            schema=info.schema, phases=list(info.phases), entry=info.entry,
                                            kong=self)
        self.handlers = handlers

        def prio_key(h: Any) -> tuple:
            return (h.priority, h.name)

        self._sorted = sorted(handlers.values(), key=prio_key, reverse=True)

    def load_config(self, doc: dict[str, Any]) -> Declarative:
        """Load (or replace) the declarative config (``POST /config``).

        As in Kong, every worker then builds its own plugins iterator, in which each plugin gets a new ``__seq__``
        from a counter the workers share (worker 0's build first, then worker 1's...). Nothing is started or
        closed here: each worker starts an instance lazily, at the plugin's first event under the new build, and
        closes the instance that had the same plugin id, if any. The instance of a plugin the new config no
        longer has is never closed."""
        decl = parse_declarative(doc, ws_id=self.ws_id)
        combos: dict[str, dict[tuple, PluginConfig]] = {}
        configs = []
        for pc in decl.plugins:
            handler = self.handlers.get(pc.name)
            if handler is None:
                raise ConfigError(f"plugin '{pc.name}' not enabled; add it to the 'plugins' configuration property")
            fields = config_record_fields(handler.schema)
            configs.append((pc, process_config(fields, pc.config, f"{pc.name}.config")))
            if pc.enabled and any(p in ("http", "https") for p in pc.protocols):
                combos.setdefault(pc.name, {})[pc.combo_key] = pc
        for _worker in self.worker_list:
            for pc, config in configs:
                pc.confs.append(self._plugin_conf(pc, copy.deepcopy(config)))
        for pc, _ in configs:
            pc.conf = pc.confs[0]
        self.declarative = decl
        self._combos = combos
        return decl

    def _plugin_conf(self, pc: PluginConfig, config: dict[str, Any]) -> dict[str, Any]:
        route_id, service_id, consumer_id = pc.combo_key
        key = ":".join(["plugins", pc.name, route_id or "", service_id or "", consumer_id or "", "", self.ws_id])
        conf: dict[str, Any] = {"__key__": key}
        conf.update(config)
        conf["__seq__"] = next(self._seq)
        for k, v in (("route_id", route_id), ("service_id", service_id), ("consumer_id", consumer_id),
                     ("plugin_instance_name", pc.instance_name)):
            if v is not None:
                conf[k] = v
        conf["__plugin_id"] = pc.id
        conf["__ws_id"] = self.ws_id
        return conf

    @staticmethod
    def _lookup(combos: dict[tuple, PluginConfig], route_id: str | None, service_id: str | None,
                consumer_id: str | None) -> PluginConfig | None:
        """``lookup_cfg``: the most specific instance of a plugin for this request."""
        r, s, c = route_id, service_id, consumer_id
        keys = []
        if r and s and c:
            keys.append((r, s, c))
        if r and c:
            keys.append((r, None, c))
        if s and c:
            keys.append((None, s, c))
        if r and s:
            keys.append((r, s, None))
        if c:
            keys.append((None, None, c))
        if r:
            keys.append((r, None, None))
        if s:
            keys.append((None, s, None))
        for k in keys:
            hit = combos.get(k)
            if hit is not None:
                return hit
        return combos.get((None, None, None))

    def is_trusted(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.trusted_ips)

    # ================================================================== plugin servers

    def plugin_server(self, name: str) -> Supervisor:
        return self.supervisors[name]

    # ================================================================== logging / recording

    def _record_log(self, level: str, message: str, *, plugin: str | None = None, request: Any = None,
                    source: str = "kong") -> None:
        rid = getattr(request, "kong_request_id", None)
        self.logs.append(LogRecord(time.time(), level, message, plugin, rid, source))
        if len(self.logs) > 50_000:
            del self.logs[:10_000]
        pylevel = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO, "warn": logging.WARNING,
                   "err": logging.ERROR}.get(level, logging.CRITICAL)
        logger.log(pylevel, "%s%s", f"[{plugin}] " if plugin else "", message)

    def log_lines(self, level: str | None = None, contains: str | None = None, source: str | None = None
                  ) -> list[LogRecord]:
        return [r for r in self.logs if (level is None or r.level == level) and
                (contains is None or contains in r.message) and (source is None or r.source == source)]

    def _record_message(self, direction: str, conn: Connection, rpc: Rpc, message: Any, info: Any) -> None:
        if not self.record_messages:
            return
        if direction == "kong->server":
            from .luavalue import pack_message

            try:
                message = msgpack.unpackb(pack_message(message), raw=False, strict_map_key=False,
                                          unicode_errors="surrogateescape")
            except Exception:  # pragma: no cover
                message = repr(message)
        self.messages.append({"t": time.time(), "worker": rpc.worker.id, "conn": conn.id, "dir": direction,
                              "msg": message, "socket": rpc.socket_path, "plugin": info.plugin,
                              "phase": info.phase})

    def messages_jsonl(self) -> list[dict[str, Any]]:
        """The recorded messages in the trace file's format (bytes as ``__bytes_utf8__``)."""
        return [{"t": m["t"], "conn": m["conn"], "dir": m["dir"], "msg": _jsonable(m["msg"])}
                for m in self.messages]

    # ================================================================== the request path

    def _pick_worker(self) -> Worker:
        return self.worker_list[next(self._rr) % self.workers]

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self._inflight += 1
        try:
            return await self._serve(request)
        finally:
            self._inflight -= 1

    async def _serve(self, request: web.BaseRequest) -> web.StreamResponse:
        worker = self._pick_worker()
        if request.version >= aiohttp.HttpVersion11 and \
                (request.headers.get("Expect") or "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # nginx answers it itself
        body = await request.content.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        headers = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers)
        version = request.version
        req = RequestState(
            method=request.method, request_uri=request.raw_path, headers=headers, body=body,
            client_ip=peer[0] if peer else "127.0.0.1", client_port=peer[1] if peer else 0,
            server_port=sock[1] if sock else self.port, server_addr=sock[0] if sock else self.host,
            http_version=version.major + version.minor / 10, worker_id=worker.id,
        )
        req.body_in_file = len(body) > self.client_body_buffer_size
        req.request_length = (len(f"{request.method} {request.raw_path} HTTP/{version.major}.{version.minor}\r\n")
                              + sum(len(k) + len(v) + 4 for k, v in request.raw_headers) + 2 + len(body))
        req.keepalive = self.keepalive and request.keep_alive
        req.ngx_ctx["KONG_PROCESSING_START"] = req.processing_start_ms
        rs = RequestStats(request_id=req.kong_request_id, method=req.method, path=req.raw_path, worker=worker.id)
        req.stats = rs
        self.stats._new_request(rs)

        resp = await self._run(worker, req, request)
        rs.status = req.response.status
        rs.route = req.route.name if req.route else None
        rs.finished = time.time()
        self._log_phase(worker, req)
        return resp

    async def _run(self, worker: Worker, req: RequestState, request: web.BaseRequest) -> web.StreamResponse:
        # ---------------------------------------------------------------- rewrite (global plugins only)
        req.phase = "rewrite"
        req.ngx_ctx["KONG_PHASE"] = "rewrite"
        for handler in self._sorted:
            if not handler.has_phase("rewrite"):
                continue
            cfg = self._combos.get(handler.name, {}).get((None, None, None))
            if cfg is None:
                continue
            done = await self._run_phase(worker, req, handler, cfg, "rewrite")
            if done == "exit":
                return await self._send_kong_response(request, req)
            if done == "error":
                self._set_error(req, 500)
                return await self._send_kong_response(request, req)

        # ---------------------------------------------------------------- router
        path = normalize_path(req.raw_path)
        match = match_route(self.declarative.routes, req.method, path, req.headers.get("host") or "", req.headers,
                            req.scheme)
        if match is None:
            self._error_response(req, 404, "no Route matched with those values")
            return await self._send_kong_response(request, req)
        route = match.route
        req.route, req.match, req.service = route, match, route.service
        req.ngx_ctx["route"] = route.entity()
        req.ngx_ctx["router_matches"] = {"uri_captures": match.uri_captures}
        if route.service is not None:
            svc = route.service
            req.ngx_ctx["service"] = svc.entity()
            u = req.upstream
            u.scheme, u.host, u.port = svc.protocol, svc.host, svc.port
            u.uri = upstream_uri(match, path, svc.path)  # from the normalised path the route matched
            u.connect_timeout, u.read_timeout, u.write_timeout = svc.connect_timeout, svc.read_timeout, \
                svc.write_timeout
            u.retries = svc.retries
        if route.preserve_host:
            req.upstream.upstream_host = req.headers.get("host")
        if route.strip_path and match.prefix and match.prefix != "/":
            req.upstream.x_forwarded_prefix = match.prefix

        # ---------------------------------------------------------------- access (collecting iterator)
        req.phase = "access"
        req.ngx_ctx["KONG_PHASE"] = "access"
        req.collected = {p: [] for p in DOWNSTREAM_PHASES}
        for handler in self._sorted:
            combos = self._combos.get(handler.name)
            if not combos:
                continue
            consumer = req.ngx_ctx.get("authenticated_consumer")
            consumer_id = consumer.get("id") if isinstance(consumer, dict) else None
            cfg = self._lookup(combos, route.id, route.service.id if route.service else None, consumer_id)
            if cfg is None:
                continue
            for phase in DOWNSTREAM_PHASES:
                if handler.has_phase(phase):
                    req.collected[phase].append((handler, cfg))
                    if phase == "response" and not req.ngx_ctx.get("buffered_proxying"):
                        req.ngx_ctx["buffered_proxying"] = True
            if handler.has_phase("access") and req.delayed_response is None:
                done = await self._run_phase(worker, req, handler, cfg, "access")
                if done == "error":
                    req.unexpected = True
                    req.ngx_ctx["KONG_UNEXPECTED"] = True
                    self._error_response(req, 500, "An unexpected error occurred")
        if req.delayed_response is not None:
            req.ngx_ctx.pop("buffered_proxying", None)
            req.response_latency = self._ms_since(req)
            return await self._send_kong_response(request, req)
        if route.service is None:
            req.ngx_ctx.pop("buffered_proxying", None)
            self._error_response(req, 503, "no Service found with those values")
            return await self._send_kong_response(request, req)

        # ---------------------------------------------------------------- proxy
        req.proxied = True
        req.ngx_ctx["KONG_PROXIED"] = True
        if req.ngx_ctx.get("buffered_proxying"):
            return await self._proxy_buffered(worker, req, request)
        return await self._proxy_streaming(req, request)

    async def _run_phase(self, worker: Worker, req: RequestState, handler: Any, cfg: PluginConfig,
                         phase: str) -> str | None:
        """Run one plugin's handler for a phase: None, "exit" (it produced the response)
        or "error" (a Lua error: 500)."""
        req.current_plugin = cfg
        req.ngx_ctx["plugin_id"] = cfg.id
        started = time.perf_counter()
        try:
            if handler.external:
                await handler.handle_event(worker, req, cfg, cfg.conf_of(worker.id), phase)
            else:
                await handler.run(phase, self, req, copy.deepcopy(cfg.conf))
        except ExitSignal:
            return "exit"
        except KongLuaError as e:
            self._record_log("err", str(e), plugin=handler.name, request=req, source="kong")
            if req.stats is not None:
                req.stats.failures.append((handler.name, phase, str(e)))
            return "error"
        finally:
            req.ngx_ctx.pop("plugin_id", None)
            req.current_plugin = None
            if handler.external:
                self.stats.phase_seconds += time.perf_counter() - started
        return None

    # ---------------------------------------------------------------- Kong-produced responses

    def _error_response(self, req: RequestState, status: int, message: str) -> None:
        """``kong.response.error(status, message)`` as Kong's runloop calls it."""
        ctype = get_response_type(req.headers.get("accept"))
        req.delayed_response = {"status": status, "body": error_body(ctype, message, req.kong_request_id),
                                "headers": {"Content-Type": ctype}, "phase": req.phase}

    def _set_error(self, req: RequestState, status: int) -> None:
        """The error handler Kong runs when a Lua error escapes a phase (error_page)."""
        req.unexpected = True
        req.ngx_ctx["KONG_UNEXPECTED"] = True
        accept = req.headers.get("accept") or req.headers.get("content-type")
        ctype = get_response_type(accept)
        req.delayed_response = {"status": status,
                                "body": error_body(ctype, http_error_message(status), req.kong_request_id),
                                "headers": {"Content-Type": ctype}, "phase": req.phase}
        req.ngx_ctx.pop("buffered_proxying", None)

    def _exit_headers(self, req: RequestState) -> tuple[int, Headers, bytes]:
        dr = req.delayed_response or {}
        status = dr["status"]
        body = dr.get("body")
        headers = Headers()
        self._apply_access_ops(req, headers)
        has_ct = has_cl = False
        for name, value in (dr.get("headers") or {}).items():
            n = lua_str(name)
            if n.lower() in ("transfer-encoding", "transfer_encoding"):
                self._record_log("warn", "manually setting Transfer-Encoding. Ignored.", request=req)
                continue
            headers.set(n, pdkmod.normalize_multi_header(value))
            has_ct = has_ct or n.lower() in ("content-type", "content_type")
            has_cl = has_cl or n.lower() in ("content-length", "content_length")
        if isinstance(body, (dict, list)):
            data = cjson_encode(body).encode()
            if not has_ct:
                headers.set("Content-Type", MIME_JSON)
        elif body is None:
            data = b""
        else:
            data = lua_bytes(body)
        if not has_cl:
            headers.set("Content-Length", str(len(data)))
        return status, headers, data

    def _apply_access_ops(self, req: RequestState, headers: Headers) -> None:
        for op, name, value in req.response.access_ops:
            if op == "set":
                headers.set(name, pdkmod.normalize_multi_header(value))
            elif op == "add":
                v = pdkmod.normalize_multi_header(value)
                for item in (v if isinstance(v, list) else [v]):
                    headers.add(name, item)
            elif op == "clear":
                headers.clear(name)

    async def _send_kong_response(self, request: web.BaseRequest, req: RequestState) -> web.StreamResponse:
        status, headers, data = self._exit_headers(req)
        if req.response_latency is None:
            req.response_latency = self._ms_since(req)
        headers.set("X-Kong-Response-Latency", str(req.response_latency))
        headers.set("Server", f"kong/{KONG_VERSION}")
        headers.set("X-Kong-Request-Id", req.kong_request_id)
        req.response.status = status
        if req.method == "HEAD":
            data = b""
        return await self._write_response(request, req, status, headers, [data], from_kong=True)

    # ---------------------------------------------------------------- proxying

    def _upstream_target(self, req: RequestState) -> tuple[str, int]:
        u = req.upstream
        if u.target is not None:
            return u.target
        name = u.upstream_name or u.host
        up = self.declarative.upstream_by_name(name)
        if up is not None:
            t = up.pick()
            if t is not None:
                return t.host, t.port
        return u.host, u.port

    def _upstream_request(self, req: RequestState) -> tuple[URL, list[tuple[str, str]], str]:
        u = req.upstream
        host, port = self._upstream_target(req)
        trusted = self.is_trusted(req.client_ip)
        hdrs = req.headers
        connection_tokens = {t.strip().lower() for t in (hdrs.get("connection") or "").split(",") if t.strip()}
        skip = set(HOP_BY_HOP) | connection_tokens | {"host", "content-length", "expect", "x-forwarded-for",
                                                      "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port",
                                                      "x-forwarded-path", "x-forwarded-prefix", "x-real-ip",
                                                      "x-kong-request-id"}
        out = [(k, v) for k, v in hdrs if k.lower() not in skip]
        if u.upstream_host:
            host_header = u.upstream_host
        else:
            default = 443 if u.scheme == "https" else 80
            host_header = host if port == default else f"{host}:{port}"
        xff = hdrs.get_all("x-forwarded-for")
        out.insert(0, ("Host", host_header))
        fwd_proto = (hdrs.get("x-forwarded-proto") if trusted else None) or req.scheme
        fwd_host = (hdrs.get("x-forwarded-host") if trusted else None) or req.host
        fwd_port = (hdrs.get("x-forwarded-port") if trusted else None) or str(req.server_port)
        fwd_path = (hdrs.get("x-forwarded-path") if trusted else None) or req.raw_path
        out += [("X-Forwarded-For", ", ".join([*xff, req.client_ip])), ("X-Forwarded-Proto", fwd_proto),
                ("X-Forwarded-Host", fwd_host), ("X-Forwarded-Port", fwd_port), ("X-Forwarded-Path", fwd_path)]
        prefix = (hdrs.get("x-forwarded-prefix") if trusted else None) or u.x_forwarded_prefix
        if prefix:
            out.append(("X-Forwarded-Prefix", prefix))
        out.append(("X-Real-IP", req.client_ip))
        # kong.conf headers_upstream (default x-kong-request-id): nginx's proxy_set_header, replacing the client's
        out.append(("X-Kong-Request-Id", req.kong_request_id))
        query = f"?{req.args}" if req.args else ""
        url = URL(f"{u.scheme}://{host}:{port}{u.uri}{query}", encoded=True)
        req.tries.append({"ip": host, "balancer_latency": 0, "port": port,
                          "balancer_start": int(time.time() * 1000), "balancer_start_ns": time.time_ns() * 1.0,
                          "balancer_latency_ns": 20000})
        return url, out, host_header

    async def _open_upstream(self, req: RequestState, request: web.BaseRequest | None = None
                             ) -> aiohttp.ClientResponse | tuple[int, str]:
        url, headers, _ = self._upstream_request(req)
        u = req.upstream
        req.proxy_latency = self._ms_since(req)
        t0 = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=u.connect_timeout / 1000,
                                        sock_read=u.read_timeout / 1000)
        data = req.body if (req.body or req.headers.get("content-length") is not None) else None
        assert self._session is not None
        try:
            opening = self._session.request(req.method, url, headers=headers, data=data, allow_redirects=False,
                                            timeout=timeout, skip_auto_headers=("Content-Type",))
            resp = await (opening if request is None else self._unless_client_aborts(request, opening))
        except ClientAborted:
            # nginx (proxy_ignore_client_abort off, Kong's default) notices the client's close while it waits for
            # the upstream, closes the upstream connection too and logs the request as 499.
            self._record_log("info", "epoll_wait() reported that client prematurely closed connection, so upstream "
                             f"connection is closed too while reading response header from upstream {url}",
                             request=req)
            req.waiting_time = int((time.monotonic() - t0) * 1000)
            return 499, "client closed the connection"
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError):
            self._record_log("err", f"upstream timed out while connecting/reading {url}", request=req)
            return 504, "The upstream server is timing out"
        except (aiohttp.ClientError, OSError) as e:
            self._record_log("err", f"connect() to {url} failed: {e}", request=req)
            return 502, "An invalid response was received from the upstream server"
        req.waiting_time = int((time.monotonic() - t0) * 1000)
        req.upstream_status = str(resp.status)
        return resp

    @staticmethod
    async def _unless_client_aborts(request: web.BaseRequest, coro: Any) -> Any:
        """Await ``coro`` unless the client closes its connection first (then ClientAborted, ``coro`` cancelled)."""
        task = asyncio.ensure_future(coro)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=0.05)
                if done:
                    return task.result()
                transport = request.transport
                if transport is None or transport.is_closing():
                    raise ClientAborted()
        finally:
            if not task.done():
                task.cancel()
                try:
                    await task
                except BaseException:  # noqa: BLE001 - the cancelled request's own outcome does not matter
                    pass

    async def _until_client_leaves(self, request: web.BaseRequest, body: Any) -> Any:
        """A streamed body's chunks until the client closes its connection (then ClientAborted), as nginx 1.25.3
        (OpenResty 1.25.3.2, Kong 3.9.3's) proxies one when the client leaves mid-answer:

        - Kong's templates never set ``proxy_ignore_client_abort`` (kong/templates/nginx_kong.lua), so nginx watches
          the client connection for the whole upstream exchange (src/http/ngx_http_upstream.c:614-630 and 2301);
        - the client's close (epoll's EPOLLRDHUP, ngx_http_upstream.c:1417-1461; else recv() == 0, :1504-1514)
          finalizes the upstream request with 499 at once, closing the upstream connection (:4559) without
          reading what the upstream still sends;
        - with 499, ngx_http_upstream_finalize_request calls ngx_http_finalize_request directly (:4613-4619): no last
          buffer (NGX_HTTP_LAST) goes down the output filters, so no body_filter call sees the end of the body;
          the log phase runs when the request is freed.
        So no body_filter runs on anything the upstream sends after the client left, not even one more chunk (the
        double notices the close within 50 ms; nginx notices it on the event itself). Even with
        ``proxy_ignore_client_abort on`` nginx would stop at the first failed write (the write filter refuses a
        connection in error, src/http/ngx_http_write_filter_module.c:59; then ngx_http_upstream.c:3711-3715, or
        :4219-4224 when buffering).
        """
        chunks = body.__aiter__()
        while True:
            try:
                yield await self._unless_client_aborts(request, chunks.__anext__())
            except StopAsyncIteration:
                return

    def _client_aborted(self, req: RequestState) -> web.StreamResponse:
        req.response.status = 499
        req.ended_at = time.time()
        return web.Response(status=499)

    def _proxied_headers(self, req: RequestState, upstream: list[tuple[str, str]]) -> Headers:
        h = Headers()
        conn_tokens = {t.strip().lower() for k, v in upstream if k.lower() == "connection" for t in v.split(",")}
        for k, v in upstream:
            kl = k.lower()
            if kl in HOP_BY_HOP or kl in conn_tokens:
                continue
            h.add(k, v)
        return h

    def _kong_proxy_headers(self, req: RequestState, headers: Headers) -> None:
        via = headers.get("via")
        headers.set("Via", f"{via}, 1.1 kong/{KONG_VERSION}" if via else f"1.1 kong/{KONG_VERSION}")
        headers.set("X-Kong-Upstream-Latency", str(req.waiting_time or 0))
        headers.set("X-Kong-Proxy-Latency", str(req.proxy_latency or 0))
        headers.set("X-Kong-Request-Id", req.kong_request_id)

    async def _proxy_streaming(self, req: RequestState, request: web.BaseRequest) -> web.StreamResponse:
        res = await self._open_upstream(req, request)
        if isinstance(res, tuple) and res[0] == 499:
            return self._client_aborted(req)
        if isinstance(res, tuple):
            return await self._upstream_error(request, req, *res)
        try:
            headers = self._proxied_headers(req, [(k.decode("latin-1"), v.decode("latin-1"))
                                                 for k, v in res.raw_headers])
            self._apply_access_ops(req, headers)
            if headers.get("content-length") is None:
                headers.set("Transfer-Encoding", "chunked")
            self._kong_proxy_headers(req, headers)
            req.response.status = res.status

            async def chunks():
                async for chunk in res.content.iter_any():
                    yield chunk

            return await self._write_response(request, req, res.status, headers, chunks(), from_kong=False)
        finally:
            res.release()

    async def _proxy_buffered(self, worker: Worker, req: RequestState, request: web.BaseRequest
                              ) -> web.StreamResponse:
        res = await self._open_upstream(req, request)
        if isinstance(res, tuple) and res[0] == 499:
            return self._client_aborted(req)
        if isinstance(res, tuple):
            status, message = res
            ctype = get_response_type(req.headers.get("accept"))
            body = error_body(ctype, message, req.kong_request_id).encode()
            upstream_headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        else:
            try:
                body = await res.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                self._record_log("err", f"upstream read failed: {e}", request=req)
                res.release()
                return await self._upstream_error(request, req, 502,
                                                  "An invalid response was received from the upstream server")
            status = res.status
            upstream_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in res.raw_headers]
            res.release()
        headers = self._proxied_headers(req, upstream_headers)
        headers.clear("content-length")
        req.buffered_status, req.buffered_headers, req.buffered_body = status, headers.copy(), body
        # Kong.response(): status and headers from the service, then the `response` handlers
        req.phase = "response"
        req.ngx_ctx["KONG_PHASE"] = "response"
        response_headers = headers.copy()
        self._apply_access_ops(req, response_headers)
        req.response.status = status
        req.response.headers = response_headers
        for handler, cfg in (req.collected or {}).get("response", []):
            done = await self._run_phase(worker, req, handler, cfg, "response")
            if done == "exit":
                req.response.access_ops = []
                status, headers, data = self._exit_headers(req)
                merged = req.response.headers.copy()
                for k, v in headers:
                    merged.clear(k)
                for k, v in headers:
                    merged.add(k, v)
                self._kong_proxy_headers(req, merged)
                req.response.status = status
                return await self._write_response(request, req, status, merged, [data], from_kong=False)
            if done == "error":
                self._set_error(req, 500)
                return await self._send_kong_response(request, req)
        final = req.response.headers
        final.set("Content-Length", str(len(body)))
        self._kong_proxy_headers(req, final)
        return await self._write_response(request, req, req.response.status or status, final, [body],
                                          from_kong=False)

    async def _upstream_error(self, request: web.BaseRequest, req: RequestState, status: int, message: str
                              ) -> web.StreamResponse:
        req.upstream_status = str(status) if status == 504 else "502"
        ctype = get_response_type(req.headers.get("accept") or req.headers.get("content-type"))
        req.delayed_response = {"status": status, "body": error_body(ctype, message, req.kong_request_id),
                                "headers": {"Content-Type": ctype}, "phase": "error"}
        req.exited = True
        req.ngx_ctx["KONG_EXITED"] = True
        req.response.access_ops = []
        return await self._send_kong_response(request, req)

    async def _write_response(self, request: web.BaseRequest, req: RequestState, status: int, headers: Headers,
                              body: Any, from_kong: bool) -> web.StreamResponse:
        headers.set("Connection", "keep-alive" if req.keepalive else "close")
        req.response.status = status
        req.response.headers = headers
        filters = req.collected or {}
        await self._filter_phase(req, filters.get("header_filter", []), "header_filter")
        body_filters = filters.get("body_filter", [])
        if body_filters:
            body = self._body_filtered(req, body_filters, body)  # an async generator
        wire = web.StreamResponse(status=status)
        for k, v in headers:
            kl = k.lower()
            if kl in ("connection", "transfer-encoding"):
                continue
            wire.headers.add(k, v)
        if "server" not in wire.headers:
            wire.headers["Server"] = f"kong/{KONG_VERSION}"
        if not req.keepalive:
            wire.force_close()
        cl = headers.get("content-length")
        if cl is not None and cl.isdigit():
            wire.content_length = int(cl)
        elif request.version >= aiohttp.HttpVersion11:
            wire.enable_chunked_encoding()
        else:
            wire.force_close()  # HTTP/1.0: the end of the body is the end of the connection
        sent = 0
        try:
            await wire.prepare(request)
            if hasattr(body, "__aiter__"):
                async for chunk in self._until_client_leaves(request, body):
                    if chunk:
                        await wire.write(chunk)
                        sent += len(chunk)
            else:
                for chunk in body:
                    if chunk and req.method != "HEAD":
                        await wire.write(chunk)
                        sent += len(chunk)
            await wire.write_eof()
        except ClientAborted:
            self._record_log("info", "epoll_wait() reported that client prematurely closed connection, so upstream "
                             "connection is closed too while sending to client", request=req)
        except (ConnectionError, aiohttp.ClientError, asyncio.TimeoutError, RuntimeError) as e:
            self._record_log("info", f"client or upstream closed the connection: {e!r}", request=req)
        req.bytes_sent = sent + sum(len(k) + len(v) + 4 for k, v in headers) + 20
        req.ended_at = time.time()
        return wire

    def _ms_since(self, req: RequestState) -> int:
        return max(0, int(time.time() * 1000) - req.processing_start_ms)

    # ================================================================== log phase

    def _serialize(self, req: RequestState) -> dict[str, Any]:
        """``kong.log.serialize()`` at the log phase."""
        ctx = req.ngx_ctx
        request_headers = req.headers.lua_table()
        for secret in ("authorization", "proxy-authorization"):
            if secret in request_headers:
                request_headers[secret] = "REDACTED"
        upstream = req.upstream.uri if req.route else ""
        if upstream and "?" not in upstream:
            if req.request_uri.endswith("?"):
                upstream += "?"
            elif req.args:
                upstream += "?" + req.args
        url = f"{req.scheme}://{req.host}:{req.server_port}{req.request_uri}"
        source = "kong"
        if ctx.get("KONG_UNEXPECTED"):
            source = "kong"
        elif ctx.get("KONG_EXITED"):
            source = "kong"
        elif ctx.get("KONG_PROXIED"):
            source = "upstream"
        credential = ctx.get("authenticated_credential")
        root: dict[str, Any] = {
            "request": {
                "id": req.kong_request_id, "uri": req.request_uri, "url": url, "querystring": req.lua_query(),
                "method": req.method, "headers": request_headers, "size": req.request_length,
            },
            "upstream_uri": upstream,
            "upstream_status": req.upstream_status or (str(req.buffered_status) if req.buffered_status else ""),
            "response": {"status": req.response.status, "headers": req.response.headers.lua_table(),
                         "size": req.bytes_sent},
            "latencies": {
                "kong": req.proxy_latency if req.proxy_latency is not None else (req.response_latency or 0),
                "proxy": req.waiting_time if req.waiting_time is not None else -1,
                "request": int(((req.ended_at or time.time()) - req.start_time) * 1000),
                "receive": 0,
            },
            "tries": JsonArray(req.tries),
            "client_ip": req.client_ip,
            "started_at": req.processing_start_ms,
            "source": source,
            "workspace": self.ws_id,
            "workspace_name": "default",
        }
        if isinstance(credential, dict):
            ae = {"id": credential.get("id")}
            if credential.get("consumer_id") is not None:
                ae["consumer_id"] = credential.get("consumer_id")
            root["authenticated_entity"] = ae
        for key in ("route", "service"):
            if ctx.get(key) is not None:
                root[key] = copy.deepcopy(ctx[key])
        if ctx.get("authenticated_consumer") is not None:
            root["consumer"] = copy.deepcopy(ctx["authenticated_consumer"])
        return _edit_result(root, req.serialize_values)

    def _log_phase(self, worker: Worker, req: RequestState) -> None:
        req.phase = "log"
        req.ngx_ctx["KONG_PHASE"] = "log"
        if req.collected is not None:
            handlers = list(req.collected.get("log", []))
        else:
            handlers = [(h, self._combos[h.name][(None, None, None)]) for h in self._sorted
                        if h.has_phase("log") and (None, None, None) in self._combos.get(h.name, {})]
        for handler, cfg in handlers:
            req.ngx_ctx["plugin_id"] = cfg.id
            if not handler.external:
                task = asyncio.ensure_future(self._run_bundled_log(handler, req, cfg))
            else:
                try:
                    serialize_data = self._serialize(req)
                except KongLuaError as e:
                    self._record_log("err", str(e), plugin=handler.name, request=req)
                    continue
                saved = Saved(
                    plugin_name=handler.name, serialize_data=serialize_data, ngx_ctx=dict(req.ngx_ctx),
                    ctx_shared=req.ctx_shared, request_headers=req.headers.lua_table(),
                    response_headers=req.response.headers.lua_table(), response_status=req.response.status,
                    req_start_time=req.start_time,
                )
                task = asyncio.ensure_future(self._log_timer(worker, handler, req, cfg, saved))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        req.ngx_ctx.pop("plugin_id", None)

    async def _log_timer(self, worker: Worker, handler: ExternalPlugin, req: RequestState, cfg: PluginConfig,
                         saved: Saved) -> None:
        await asyncio.sleep(0)  # ngx.timer.at(0, ...)
        try:
            await handler.handle_event(worker, req, cfg, cfg.conf_of(worker.id), "log", saved=saved)
        except KongLuaError as e:
            self._record_log("err", f"lua entry thread aborted: runtime error: {e}", plugin=handler.name,
                             request=req)
        except ExitSignal:  # pragma: no cover - exit is refused in log
            pass
        except Exception as e:  # pragma: no cover
            self._record_log("crit", f"harness bug in log timer: {e!r}", plugin=handler.name, request=req,
                             source="harness")

    async def _run_bundled_log(self, handler: BundledPlugin, req: RequestState, cfg: PluginConfig) -> None:
        try:
            await handler.run("log", self, req, copy.deepcopy(cfg.conf))
        except (KongLuaError, ExitSignal) as e:
            self._record_log("err", str(e), plugin=handler.name, request=req)

    async def _filter_phase(self, req: RequestState, handlers: list, phase: str) -> None:
        """Lua plugins' header_filter / body_filter (only bundled plugins have them; external plugins cannot)."""
        for handler, cfg in handlers:
            req.phase = phase
            req.ngx_ctx["KONG_PHASE"] = phase
            req.ngx_ctx["plugin_id"] = cfg.id
            try:
                await handler.run(phase, self, req, cfg.conf)
            except (KongLuaError, ExitSignal) as e:
                self._record_log("err", str(e), plugin=handler.name, request=req)
        req.ngx_ctx.pop("plugin_id", None)

    async def _body_filtered(self, req: RequestState, handlers: list, body: Any) -> Any:
        """The body as the body_filter chain passes it on: each chunk (``ngx.arg[1]``), then the end (``ngx.arg[2]``)."""
        async def chunks() -> Any:
            if hasattr(body, "__aiter__"):
                async for chunk in body:
                    yield chunk
            else:
                for chunk in body:
                    yield chunk

        async for chunk in chunks():
            req.ngx_arg = [chunk, False]
            await self._filter_phase(req, handlers, "body_filter")
            yield req.ngx_arg[0]
        req.ngx_arg = [b"", True]
        await self._filter_phase(req, handlers, "body_filter")
        yield req.ngx_arg[0]

    # ================================================================== conveniences for tests

    async def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                      body: bytes | str | None = None, json_body: Any = None, timeout: float = 30.0
                      ) -> "SimpleResponse":
        """Send one request through the double (a fresh connection each time; ``path``
        is sent as given, not normalised)."""
        import json as _json

        data: Any = body
        hdrs = dict(headers or {})
        if json_body is not None:
            data = _json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            async with s.request(method, URL(self.url + path, encoded=True), headers=hdrs, data=data,
                                 timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                content = await r.read()
                return SimpleResponse(r.status, r.headers.copy(), content)


@dataclass
class SimpleResponse:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        import json as _json

        return _json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _edit_result(root: dict[str, Any], values: list[dict[str, Any]]) -> dict[str, Any]:
    """``set_serialize_value`` entries merged at their dotted paths (modes set/add/replace)."""
    for item in values:
        key, mode, value = item["key"], item["mode"], item["value"]
        node: Any = root
        parts = key.split(".")
        ok = True
        for sub in parts[:-1]:
            if sub not in node or node[sub] is None:
                if mode in ("set", "add"):
                    node[sub] = {}
                else:
                    ok = False
                    break
            elif not isinstance(node[sub], dict):
                raise KongLuaError(f"The key '{key}' could not be used as a serialize value. "
                                   f"Subkey '{sub}' is not a table. It's {node[sub]}")
            node = node[sub]
        if not ok or not isinstance(node, dict):
            continue
        last = parts[-1]
        existing = node.get(last)
        if mode == "set" or (mode == "add" and existing is None) or (mode == "replace" and existing is not None):
            if value is None:
                node.pop(last, None)
            else:
                node[last] = value
    return root


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        try:
            return {"__bytes_utf8__": v.decode("utf-8")}
        except UnicodeDecodeError:
            import base64

            return {"__bytes_b64__": base64.b64encode(v).decode()}
    if isinstance(v, dict):
        return {(str(k) if not isinstance(k, str) else k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v

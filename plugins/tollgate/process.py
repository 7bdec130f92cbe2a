"""The Tollgate process: the plugin server and the relay in one event loop, sharing memory."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import grp
import os
import signal
import socket

from aiohttp import web

from . import log, metrics, runtime as runtime_module, usage
from .attachments import AttachmentTable
from .dashboard import routes as dashboard
from .plugins import journal, limits
from .pluginserver import loader, server as rpc
from .pluginserver.framing import Backlog
from .relay import upstream, web as relay_web
from .relay.app import Relay, build_server, priorities_of
from .runtime import Runtime
from .settings import Settings

logger = log.get("process")

ALL_PLUGINS_SOCKET = "tollgate.socket"
SWEEP_INTERVAL = 5.0
SETTLE_AT_SHUTDOWN = 3.0  # seconds a stopping process gives the settlements its store missed
GC_THRESHOLD = 20_000   # allocations between young collections (Python's default: 700)


class StartupError(Exception):
    """The process cannot start as configured; the message says why, in one line, naming the setting to change."""


def socket_path(settings: Settings, plugin_name: str | None = None) -> str:
    name = f"{plugin_name}.socket" if plugin_name else ALL_PLUGINS_SOCKET
    return os.path.join(settings.socket_dir, name)


def _check_socket_dir(directory: str) -> None:
    # Not created here: a mistyped directory would leave Kong dialling sockets that never appear.
    if not os.path.isdir(directory):
        raise StartupError(f"the socket directory {directory} does not exist (create it where kong.conf's "
                           "pluginserver_*_socket paths point, or set --socket-dir / TOLLGATE_SOCKET_DIR)")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StartupError(f"cannot create sockets in {directory}: permission denied")


def _group_id(group: str | None) -> int:
    if not group:
        return -1
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise StartupError(f"no group named {group!r} (--socket-group / TOLLGATE_SOCKET_GROUP)") from None


def _claim(path: str) -> None:
    """A socket file nobody answers on is left from a dead process and is replaced; one that answers is not ours."""
    if not os.path.exists(path):
        return
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(path)
        except OSError:
            return
    raise StartupError(f"{path} is served by a running process (another tollgate serve?): stop it, or choose "
                       "another --socket-dir / TOLLGATE_SOCKET_DIR")


class TollgateProcess:
    def __init__(self, settings: Settings):
        self.settings = settings
        if settings.plugins_dir and not os.path.isdir(settings.plugins_dir):
            raise StartupError(f"the plugins directory {settings.plugins_dir} does not exist "
                               "(--plugins-dir / TOLLGATE_PLUGINS_DIR)")
        self.plugins = loader.load_all(settings.plugins_dir)
        self.runtime = runtime_module.install(
            Runtime(settings=settings, attachments=AttachmentTable(settings.attachment_ttl)))
        self.server = rpc.PluginServer(self.plugins, event_timeout=settings.event_timeout,
                                       sync_threads=settings.sync_handler_threads)
        self.runtime.instances = self.server.instances
        usage.RECORD.retention_seconds = settings.usage_retention
        self._listeners: list[asyncio.AbstractServer] = []
        self._socket_paths: list[str] = []
        self._runners: list[web.BaseRunner] = []
        self._relay: relay_web.Server | None = None
        self._sweeper: asyncio.Task | None = None

    async def start(self) -> None:
        """Listen everywhere, or raise :class:`StartupError` having left nothing behind.

        The ports come first: a second process started by mistake fails on them before it touches the sockets of
        the one already running.
        """
        settings = self.settings
        _check_socket_dir(settings.socket_dir)
        journal.JOURNAL.node = journal.node_name(settings.socket_dir)
        gid = _group_id(settings.socket_group)
        sockets = [(socket_path(settings, name), [name]) for name in self.plugins] + [(socket_path(settings), None)]
        backlog = Backlog(settings.socket_backlog_bytes, settings.socket_message_timeout)
        for path, _ in sockets:
            _claim(path)
        try:
            self._relay = build_server(Relay(self.runtime, priorities_of(self.plugins)))
            await self._serve(self._relay, settings.relay_host, settings.relay_port, "relay",
                              "--relay-port / TOLLGATE_RELAY_PORT")
            await self._serve(status_app(settings.status_token), settings.status_host, settings.status_port, "status listener",
                              "--status-port / TOLLGATE_STATUS_PORT")
            for path, names in sockets:
                self._socket_paths.append(path)
                self._listeners.append(await rpc.listen(self.server, path, names, mode=settings.socket_mode,
                                                        gid=gid, backlog=backlog))
        except BaseException as exc:
            await self.stop()
            if isinstance(exc, OSError):
                raise StartupError(f"cannot create {exc.filename or 'a socket'}: {exc.strerror or exc}") from None
            raise
        if not settings.status_token and not _loopback(settings.status_host):
            log.event(logger, "status listener exposed without a token", 30, host=settings.status_host,
                      hint="set TOLLGATE_STATUS_TOKEN to protect /metrics, /spend, /usage and the dashboard's data")
        self._sweeper = asyncio.ensure_future(self._sweep_forever())
        log.event(logger, "tollgate started", plugins=sorted(self.plugins), socket_dir=self.settings.socket_dir,
                  relay=f"{self.settings.relay_host}:{self.settings.relay_port}", pid=os.getpid())

    async def _serve(self, app: web.Application | relay_web.Server, host: str, port: int, what: str,
                     setting: str) -> None:
        try:
            if isinstance(app, relay_web.Server):
                await app.listen(host, port)
            else:
                runner = web.AppRunner(app, access_log=None, handle_signals=False)
                await runner.setup()
                self._runners.append(runner)
                await web.TCPSite(runner, host, port, reuse_address=True).start()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if exc.errno == errno.EADDRINUSE:
                reason = "the port is taken (another tollgate serve, or another program)"
            raise StartupError(f"cannot listen on {host}:{port} for the {what} ({setting}): {reason}") from None

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.server.sweep()
            self.runtime.attachments.sweep()
            self.runtime.contexts.sweep()

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        for listener in self._listeners:
            listener.close()
        if self._relay is not None:
            await self._relay.shutdown()    # the requests under way finish (their after stages with them)
        for runner in self._runners:
            await runner.cleanup()
        await limits.settle_pending(SETTLE_AT_SHUTDOWN)  # the relay's requests are done: land what they still owe
        self.server.shutdown()
        await upstream.close()
        for path in self._socket_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._socket_paths.clear()


def _settle_memory() -> None:
    """Keep the collector off what startup built.

    Everything alive now (modules, the plugin classes, the price table) lives as long as the process;
    frozen, the cyclic collector stops rescanning it on every full collection, and a larger first generation lets
    the short-lived objects of each request die by reference counting before a collection ever looks at them.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def status_app(token: str | None = None) -> web.Application:
    """Metrics, health, spend, usage and the dashboard, on their own listener: never reachable through a Kong
    route; with ``token``, everything but health and the dashboard's (data-free) page needs it as a bearer."""

    async def serve_metrics(_: web.Request) -> web.Response:
        body, content_type = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def health(_: web.Request) -> web.Response:
        # Answered from the event loop itself: a frozen or blocked process stops answering, and kong/entrypoint.sh's
        # supervisor restarts it. The pid tells a restarted process from the old one; the task count shows leaks
        # (bench/soak.py watches it).
        return web.json_response({"status": "ok", "pid": os.getpid(), "tasks": len(asyncio.all_tasks())})

    async def spend(request: web.Request) -> web.Response:
        """Budget spend from every store this process uses (``tollgate spend`` reads local state here)."""
        from .plugins.cost_quota.spend import report_stores

        runtime = runtime_module.current()
        try:
            at = float(request.query["at"]) if "at" in request.query else runtime.clock()
        except ValueError:
            return web.json_response({"error": "at must be epoch seconds"}, status=400)
        stores = [("local" if key == "local" else repr(store), store) for key, store in list(runtime.stores.items())]
        rows = await report_stores(stores, at, request.query.get("namespace") or None)
        return web.json_response({"at": at, "rows": rows})

    async def purge_cache(request: web.Request) -> web.Response:
        """``DELETE /cache[?route=ID|consumer=ID]``: tollgate-semantic-cache entries are never served again."""
        from .plugins.semantic_cache.vectordb import purge_all
        from .store import StoreError

        runtime = runtime_module.current()
        route, consumer = request.query.get("route") or None, request.query.get("consumer") or None
        if route and consumer:
            return web.json_response({"error": "purge one route or one consumer, not both"}, status=400)
        try:
            count = await purge_all(list(runtime.stores.values()), runtime.clock(), route, consumer)
        except (StoreError, OSError) as exc:
            return web.json_response({"error": f"purge failed: {exc}"}, status=503)
        return web.json_response({"purged": "all" if not (route or consumer) else route or consumer,
                                  "databases": count})

    app = web.Application(middlewares=[dashboard.token_middleware(token)])
    dashboard.add_routes(app)
    app.router.add_delete("/cache", purge_cache)
    app.router.add_get("/metrics", serve_metrics)
    app.router.add_get("/health", health)
    app.router.add_get("/spend", spend)
    return app


async def run(settings: Settings) -> None:
    process = TollgateProcess(settings)
    await process.start()
    _settle_memory()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.event(logger, "tollgate stopping")
    await process.stop()

"""The Tollgate process: the plugin server and the relay in one event loop, sharing memory."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal

from aiohttp import web

from . import log, metrics, runtime as runtime_module
from .attachments import AttachmentTable
from .pluginserver import loader, server as rpc
from .relay import upstream
from .relay.app import Relay, build_server, priorities_of
from .runtime import Runtime
from .settings import Settings

logger = log.get("process")

ALL_PLUGINS_SOCKET = "tollgate.socket"
SWEEP_INTERVAL = 5.0
GC_THRESHOLD = 20_000   # allocations between young collections (Python's default: 700)


def socket_path(settings: Settings, plugin_name: str | None = None) -> str:
    name = f"{plugin_name}.socket" if plugin_name else ALL_PLUGINS_SOCKET
    return os.path.join(settings.socket_dir, name)


class TollgateProcess:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.plugins = loader.load_all(settings.plugins_dir)
        self.runtime = runtime_module.install(
            Runtime(settings=settings, attachments=AttachmentTable(settings.attachment_ttl)))
        self.server = rpc.PluginServer(self.plugins, event_timeout=settings.event_timeout,
                                       sync_threads=settings.sync_handler_threads)
        self.runtime.instances = self.server.instances
        self._listeners: list[asyncio.AbstractServer] = []
        self._runners: list[web.AppRunner] = []
        self._sweeper: asyncio.Task | None = None

    async def start(self) -> None:
        os.makedirs(self.settings.socket_dir, exist_ok=True)
        for name in self.plugins:
            self._listeners.append(await rpc.listen(self.server, socket_path(self.settings, name), [name]))
        self._listeners.append(await rpc.listen(self.server, socket_path(self.settings)))
        relay = Relay(self.runtime, priorities_of(self.plugins))
        # handler_cancellation: a client that goes away (Kong closes the connection to the relay when its own client
        # does) cancels the relay's handler, and with it the provider call, streamed or not; the after stages (limits
        # and budgets settle) still run, in the handler's own cleanup, with what is known by then.
        await self._serve(build_server(relay, handler_cancellation=True, access_log=None),
                          self.settings.relay_host, self.settings.relay_port)
        await self._serve(status_app(), self.settings.status_host, self.settings.status_port)
        self._sweeper = asyncio.ensure_future(self._sweep_forever())
        log.event(logger, "tollgate started", plugins=sorted(self.plugins), socket_dir=self.settings.socket_dir,
                  relay=f"{self.settings.relay_host}:{self.settings.relay_port}", pid=os.getpid())

    async def _serve(self, app: web.Application | web.Server, host: str, port: int) -> None:
        runner: web.BaseRunner
        if isinstance(app, web.Server):
            runner = web.ServerRunner(app, handle_signals=False)
        else:
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        self._runners.append(runner)

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
        for runner in self._runners:
            await runner.cleanup()
        self.server.shutdown()
        await upstream.close()
        for name in [*self.plugins, None]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(socket_path(self.settings, name))


def _settle_memory() -> None:
    """Keep the collector off what startup built.

    Everything alive now (modules, the plugin classes, the price table) lives as long as the process;
    frozen, the cyclic collector stops rescanning it on every full collection, and a larger first generation lets
    the short-lived objects of each request die by reference counting before a collection ever looks at them.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def status_app() -> web.Application:
    """Metrics and health, on their own listener: never reachable through a Kong route."""

    async def serve_metrics(_: web.Request) -> web.Response:
        body, content_type = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

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

    app = web.Application()
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

"""Local mocks of the guard services, each speaking its service's documented API (one module per service), served
together by one aiohttp server (``GuardMocks``) on a loopback port.

Every mock decides from the text it is given, with the same few words, so a test picks the outcome by what it
sends: ``SMASH`` is violent (blocked), ``SHOVE`` mildly violent (below the services' own bar, above a strict
threshold), ``CARD`` a card number the masking services anonymise as ``[CARD]``, ``HANG`` makes the service not
answer (until the mocks stop), ``BOOM`` makes it answer HTTP 500. Each request is recorded (path, query, headers,
JSON body) for the tests to check what a guard sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

from tests.harness.procs import free_port

SMASH = "smash the window"
SHOVE = "shove it"
CARD = "4111-1111-1111-1111"
MASKED_CARD = "[CARD]"
HANG = "HANG"
BOOM = "BOOM"


def violent(text: str) -> bool:
    return "smash" in text.lower()


def mild(text: str) -> bool:
    return "shove" in text.lower()


def masked(text: str) -> str:
    return text.replace(CARD, MASKED_CARD)


@dataclass
class Recorded:
    service: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any


@dataclass
class GuardMocks:
    """The guard services' mocks on one server: ``url`` + each service's documented path."""

    requests: list[Recorded] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        from . import azure_content_safety, bedrock, custom, lakera, openai_moderation
        app = web.Application()
        for module in (openai_moderation, azure_content_safety, bedrock, lakera, custom):
            for method, path, handler in module.ROUTES:
                app.router.add_route(method, path, self._wrap(module.__name__.rsplit(".", 1)[1], handler))
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._stop.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def reset(self) -> None:
        self.requests.clear()

    def of(self, service: str) -> list[Recorded]:
        return [r for r in self.requests if r.service == service]

    def _wrap(self, service: str, handler: Callable[[web.Request, Any], Awaitable[web.StreamResponse]]
              ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            try:
                data = await request.json() if body else None
            except ValueError:
                data = None
            self.requests.append(Recorded(service, request.path, dict(request.query), dict(request.headers), body,
                                          data))
            text = body.decode("utf-8", "replace")
            if HANG in text:
                try:
                    await asyncio.wait_for(self._stop.wait(), 30)
                except asyncio.TimeoutError:
                    pass
                return web.json_response({"error": "hung"}, status=504)
            if BOOM in text:
                return web.json_response({"error": {"message": "internal error"}}, status=500)
            return await handler(request, data)
        return handle

"""Serving a relay handler (one policy's stages, or the pipeline) on a local port with the relay's own server, as
``tollgate serve`` serves `Relay.handle`, for the tests that run the relay's parts without the whole process."""

from __future__ import annotations

from typing import Awaitable, Callable

from tollgate.relay import web
from tollgate.relay.app import MAX_BODY


class Served:
    def __init__(self, server: web.Server, port: int):
        self.server = server
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self.server.shutdown(timeout=5.0)


async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Served:
    server = web.Server(handler, max_body=MAX_BODY)
    listener = await server.listen("127.0.0.1", 0)
    return Served(server, listener.sockets[0].getsockname()[1])

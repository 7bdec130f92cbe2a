"""Local servers the client tests talk to: raw TCP servers a test scripts byte by byte (to misbehave exactly as
wanted), and the request reading they share."""

from __future__ import annotations

import asyncio
import ssl
from typing import Awaitable, Callable

from aiohttp import web

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes] | None:
    """(request line, headers with lower-case names, body) of the next request; None at end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    line, *fields = head[:-4].split(b"\r\n")
    headers = {}
    for field in fields:
        name, _, value = field.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line, headers, body


def answer(body: bytes = b"ok", status: str = "200 OK", headers: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


class RawServer:
    """A loopback TCP server; ``handle(reader, writer)`` runs per connection. Counts connections, and notes when
    each one ends (the client closed it, or the handler did)."""

    def __init__(self, handle: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handle = handle
        self.tls = tls
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.ended = asyncio.Event()       # set each time a connection ends
        self.requests: list[tuple[bytes, dict[str, str], bytes]] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> "RawServer":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def request(self, reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes] | None:
        got = await read_request(reader)
        if got is not None:
            self.requests.append(got)
        return got

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await self.handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            self._writers.discard(writer)
            writer.close()
            self.ended.set()


async def serve_forever(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        reply: Callable[[bytes, dict[str, str], bytes], bytes]) -> None:
    """Answer every request on the connection with ``reply(line, headers, body)``."""
    while (got := await server.request(reader)) is not None:
        writer.write(reply(*got))
        await writer.drain()


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.01)


async def web_server(app: web.Application) -> tuple[web.AppRunner, str]:
    """``app`` served by aiohttp on a free loopback port: (runner to clean up, base URL)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"

"""The floor under issue 19's CPU goals: what a Python process pays per request for Tollgate's socket exchanges
alone, with none of Tollgate's work.

    python bench/floor.py [--requests 20000] [--concurrency 32] [--litellm-cpu-ms 8.94]

A "plumbing" process (this file, ``--serve``; uvloop, no logging, no policy) does per request what `tollgate serve`
does on the wire for tollgate-proxy alone:

* plugin-server messages on a unix socket, each a MessagePack request in and a reply out (HandleEvent, then a Step
  for each PDK answer, as Kong sends them): 3 round trips as for tollgate-proxy alone, 7 as for the full chain;
* the request from Kong on the relay's HTTP/1.1 port (a ~4.4 KB chat body, keep-alive), parsed with httptools;
* the same body to the mock LLM on a kept-alive connection, its answer parsed with httptools;
* that answer back to Kong.

Its relay comes in two styles: ``callbacks`` (no task, no coroutine, no JSON: the floor itself) and ``asyncio`` (a
task per request that awaits the answer, and the body and the answer each parsed and serialized again: the least an
asyncio relay that reads the request does).

The load generator stands in for Kong (its unix and HTTP connections, one of each per concurrent request, as Kong's
pooled connections) and runs in this process; the mock LLM in its own. Only the plumbing process's CPU is counted
(/proc user + system), as `make bench` counts Tollgate's.

The full chain's floor has its 7 round trips but leaves out what its policies add on the wire (the store's round
trip to Redis) and in CPU (the prompt's token count). It prints that CPU per request, and what issue 19's goals
leave for Tollgate's whole process with Kong's side added as `make bench` adds it (0.055 ms + 0.022 ms per round
trip) against LiteLLM's CPU per request (``--litellm-cpu-ms``: `make bench`'s LiteLLM row on the same machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Callable

import httptools
import msgpack
import orjson
import uvloop

BENCH = os.path.dirname(os.path.abspath(__file__))
for path in (os.path.dirname(BENCH), BENCH):
    if path not in sys.path:
        sys.path.insert(0, path)

from common import cpu_seconds, free_port, interpreter, mock_llm_process  # noqa: E402
from run import KONG_PROXY_MS, KONG_ROUND_TRIP_MS, Bodies  # noqa: E402

# issue 19's goals: the ratio to LiteLLM with Kong's side, and the round trips of each
GOALS = {"proxy alone": (0.04, 3), "full chain": (0.10, 7)}
STEPS = [{"Method": "kong.client.get_consumer", "Args": []},
         {"Method": "kong.service.request.add_header", "Args": ["X-Tollgate-Attach", "t" * 60]}]


# ------------------------------------------------------------------------------------------------ the plumbing

class PluginSocket(asyncio.Protocol):
    """Kong's plugin-server connection: each request gets the next step of its event, the last one "ret"."""

    def __init__(self, round_trips: int):
        self.round_trips = round_trips
        self.unpacker = msgpack.Unpacker(raw=False)
        self.pack = msgpack.Packer(use_bin_type=True).pack
        self.done = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        for _, msgid, _method, _args in self.unpacker:
            self.done += 1
            step = STEPS[(self.done - 1) % len(STEPS)] if self.done < self.round_trips else "ret"
            if self.done == self.round_trips:
                self.done = 0
            self.transport.write(self.pack([1, msgid, None, {"Data": step, "EventId": 1}]))


class Http(asyncio.Protocol):
    """One HTTP/1.1 connection parsed with httptools; each whole message's body goes to `whole`."""

    def __init__(self, parser: type) -> None:
        self.parser = parser(self)
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        self.whole(body)

    def whole(self, body: bytes) -> None:
        raise NotImplementedError


class Upstream(Http):
    """A kept-alive connection to the mock LLM; hands each answer to ``on_answer``."""

    def __init__(self) -> None:
        super().__init__(httptools.HttpResponseParser)
        self.on_answer: Callable[[int, bytes], None] | None = None

    def whole(self, body: bytes) -> None:
        self.on_answer(self.parser.get_status_code(), body)


class Relay(Http):
    """Kong's HTTP connection to the relay: each request goes to the mock, its answer comes back."""

    def __init__(self, pool: list[Upstream], mock: tuple[str, int]):
        super().__init__(httptools.HttpRequestParser)
        self.pool, self.mock = pool, mock

    def whole(self, body: bytes) -> None:
        self._forward(body, self._answer)

    def _forward(self, body: bytes, on_answer: Callable[[int, bytes], None]) -> None:
        """``body`` to the mock on a kept-alive connection; its answer to ``on_answer``."""
        request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {self.mock[0]}:{self.mock[1]}\r\n"
                   f"Authorization: Bearer sk-floor\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body

        def send(upstream: Upstream) -> None:
            def answered(status: int, answer: bytes) -> None:
                self.pool.append(upstream)
                on_answer(status, answer)
            upstream.on_answer = answered
            upstream.transport.write(request)

        if self.pool:
            send(self.pool.pop())
        else:
            connecting = asyncio.ensure_future(asyncio.get_running_loop().create_connection(Upstream, *self.mock))
            connecting.add_done_callback(lambda made: send(made.result()[1]))

    def _answer(self, status: int, body: bytes) -> None:
        self.transport.write(f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


class AsyncioRelay(Relay):
    """The same exchange as the least an asyncio relay does: a task per request that awaits the answer, and the
    body and the answer each parsed and serialized again (orjson)."""

    def whole(self, body: bytes) -> None:
        asyncio.get_running_loop().create_task(self._relay(body))

    async def _relay(self, body: bytes) -> None:
        answered: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._forward(orjson.dumps(orjson.loads(body)), lambda status, answer: answered.set_result((status, answer)))
        status, answer = await answered
        self._answer(status, orjson.dumps(orjson.loads(answer)))


RELAYS: dict[str, type[Relay]] = {"callbacks": Relay, "asyncio": AsyncioRelay}


def serve(socket_path: str, port: int, mock_port: int, round_trips: int, relay: type[Relay]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool: list[Upstream] = []
        servers = [await loop.create_unix_server(lambda: PluginSocket(round_trips), socket_path),
                   await loop.create_server(lambda: relay(pool, ("127.0.0.1", mock_port)), "127.0.0.1", port)]
        print("ready", flush=True)
        await asyncio.gather(*(server.serve_forever() for server in servers))

    uvloop.run(main())


# ------------------------------------------------------------------------------------------------ Kong's side

async def kong_worker(socket_path: str, port: int, body: bytes, round_trips: int, left: list[int]) -> None:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    http_reader, http_writer = await asyncio.open_connection("127.0.0.1", port)
    pack, unpacker, msgid = msgpack.Packer(use_bin_type=True).pack, msgpack.Unpacker(raw=False), 0
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body
    while left[0] > 0:
        left[0] -= 1
        async with asyncio.timeout(30):     # a plumbing process that stops answering fails the run, never hangs it
            for i in range(round_trips):
                msgid += 1
                args = {"InstanceId": 1, "EventName": "access"} if i == 0 else {"EventId": 1, "Data": None}
                writer.write(pack([0, msgid, "plugin.HandleEvent" if i == 0 else "plugin.Step", [args]]))
                while not any(True for _ in unpacker):
                    data = await reader.read(65536)
                    if not data:
                        raise RuntimeError("the plumbing process closed its plugin socket")
                    unpacker.feed(data)
            http_writer.write(request)
            head = await http_reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            answer = await http_reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"the mock answered {head[:40]!r}: {answer[:200]!r}")
    writer.close()
    http_writer.close()


async def main(args: argparse.Namespace) -> None:
    body = Bodies(7).next()   # ~4.4 KB, as make bench sends
    print(f"the plumbing alone ({args.requests} requests at concurrency {args.concurrency}; {interpreter()}), "
          f"against what the goals leave for Tollgate's whole process (LiteLLM "
          f"{args.litellm_cpu_ms} ms per request, less Kong's side as make bench adds it):")
    async with mock_llm_process() as mock_url:
        for name, (goal, round_trips) in GOALS.items():
            budget = goal * args.litellm_cpu_ms - KONG_PROXY_MS - KONG_ROUND_TRIP_MS * round_trips
            print(f"  {name}, {round_trips} round trips: the goal (<= {goal}) leaves {budget:.3f} ms")
            for style in RELAYS:
                cpu_ms = await measure(body, int(mock_url.rsplit(":", 1)[1]), round_trips, style, args)
                print(f"    relay as {style:<9} {cpu_ms:.3f} ms CPU per request, {100 * cpu_ms / budget:3.0f}% of it")


async def measure(body: bytes, mock_port: int, round_trips: int, style: str, args: argparse.Namespace) -> float:
    """The plumbing process's CPU ms per request with ``round_trips`` plugin-server round trips, its relay written in
    ``style`` (`RELAYS`)."""
    socket_path = os.path.join(tempfile.mkdtemp(prefix="floor-"), "plugin.socket")
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", socket_path, str(port), str(mock_port),
                             str(round_trips), style], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        await run_load(socket_path, port, body, round_trips, args.concurrency, min(2000, args.requests))  # warm-up
        before = cpu_seconds([proc.pid])
        await run_load(socket_path, port, body, round_trips, args.concurrency, args.requests)
        return (cpu_seconds([proc.pid]) - before) * 1000 / args.requests
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(os.path.dirname(socket_path), ignore_errors=True)


async def run_load(socket_path: str, port: int, body: bytes, round_trips: int, concurrency: int,
                   requests: int) -> None:
    left = [requests]
    await asyncio.gather(*(kong_worker(socket_path, port, body, round_trips, left) for _ in range(concurrency)))


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), RELAYS[sys.argv[6]])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--litellm-cpu-ms", type=float, default=8.94, help="LiteLLM's CPU per request: `make "
                        "bench`'s LiteLLM row on the same machine (default: its reading on the 2-vCPU VM of "
                        "2026-12-07)")
    uvloop.run(main(parser.parse_args()))

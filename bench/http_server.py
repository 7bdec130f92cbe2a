"""The relay's HTTP server on its own: Tollgate's `http1.server` against the aiohttp low-level server it replaced
(configured as ``relay.app.build_server`` configured it), each in its own process under uvloop (as ``tollgate
serve`` runs), serving a handler shaped like the relay's: it reads the ~4.4 KB body as ``relay/body.py`` does and
answers a ~700 B JSON body (``plain``), or 20 SSE chunks written one by one (``stream``). Only the server process's
CPU is counted (/proc); the load comes from this process (aiohttp's client, keep-alive).

    python bench/http_server.py [--requests 6000] [--concurrency 1,32] [--rounds 4]

Prints, per kind, concurrency and server: the server process's CPU time per request and the requests per second.
The servers take turns, ``--rounds`` slices each, so the machine's load falls on both alike; CPU is the rounds'
median, with their range.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
for path in (os.path.dirname(BENCH), BENCH, os.path.join(os.path.dirname(BENCH), "plugins")):
    if path not in sys.path:
        sys.path.insert(0, path)

from common import chat_body, cpu_seconds, free_port, load, wait_http  # noqa: E402

SERVERS = ("aiohttp", "http1")
ANSWER = b'{"id":"chatcmpl-bench","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,' \
         b'"message":{"role":"assistant","content":"' + b"word " * 80 + b'"},"finish_reason":"stop"}],' \
         b'"usage":{"prompt_tokens":1000,"completion_tokens":200,"total_tokens":1200}}'
CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"word "}}]}\n\n'


def serve(kind: str, port: int) -> None:
    """The server process: ``kind``'s server on ``port`` until killed."""
    import uvloop

    async def main() -> None:
        if kind == "aiohttp":
            from aiohttp import web
        else:
            from tollgate.relay import web

        async def handle(request):                            # the relay's reading of a body, then an answer
            if request.path == "/health":
                return web.json_response({"status": "ok"})
            content = request.content
            body = content.read_nowait() if content.is_eof() else b"".join([c async for c in content.iter_any()])
            assert body
            if request.path != "/stream":
                return web.Response(status=200, body=ANSWER, headers={"Content-Type": "application/json",
                                                                      "X-Tollgate-Cost": "0.0012"})
            response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream",
                                                               "Cache-Control": "no-cache"})
            await response.prepare(request)
            for _ in range(20):
                await response.write(CHUNK)
            await response.write(b"data: [DONE]\n\n")
            return response

        if kind == "aiohttp":
            loop = asyncio.get_running_loop()

            def factory(message, payload, protocol, writer, task):
                return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=64 << 20)

            runner = web.ServerRunner(web.Server(handle, request_factory=factory, handler_cancellation=True,
                                                 access_log=None), handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
        else:
            await web.Server(handle, max_body=64 << 20).listen("127.0.0.1", port)
        await asyncio.Event().wait()

    uvloop.run(main())


async def main(options: argparse.Namespace) -> None:
    procs = {}
    try:
        for kind in SERVERS:
            port = free_port()
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
            procs[kind] = (subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port)], env=env),
                           f"http://127.0.0.1:{port}")
        for proc, url in procs.values():
            await wait_http(url + "/health", 20, proc)
        body = chat_body()
        per_round = options.requests // options.rounds
        for path in options.paths.split(","):
            for concurrency in (int(c) for c in options.concurrency.split(",")):
                for proc, url in procs.values():
                    await load(url + path, body, 300, concurrency)              # warm
                rounds: dict[str, list[tuple[float, float]]] = {kind: [] for kind in procs}
                for _ in range(options.rounds):
                    for kind, (proc, url) in procs.items():
                        before = cpu_seconds([proc.pid])
                        result = await load(url + path, body, per_round, concurrency)
                        assert result.errors == 0
                        rounds[kind].append(((cpu_seconds([proc.pid]) - before) / result.requests * 1e6,
                                             result.rps))
                for kind, got in rounds.items():
                    cpu = sorted(c for c, _ in got)
                    print(f"{path[1:]:<6} c={concurrency:<3} {kind:<8} cpu {statistics.median(cpu):6.1f} us/req "
                          f"(rounds {cpu[0]:.1f}-{cpu[-1]:.1f})   {statistics.median(r for _, r in got):7.0f} req/s",
                          flush=True)
    finally:
        for proc, _ in procs.values():
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--paths", default="/plain,/stream", help="/plain (a JSON answer), /stream (SSE)")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.serve:
        serve(parsed.serve, parsed.port)
    else:
        asyncio.run(main(parsed))

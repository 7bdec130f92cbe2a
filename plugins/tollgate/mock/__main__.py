"""``tollgate-mock-llm``: run the mock LLM as a standalone server (offline Docker demo, benchmarks).

Every flag has an environment variable (flag wins): TOLLGATE_MOCK_HOST, TOLLGATE_MOCK_PORT, TOLLGATE_MOCK_REPLY,
TOLLGATE_MOCK_LATENCY, TOLLGATE_MOCK_INTERVAL, TOLLGATE_MOCK_CHUNKS, TOLLGATE_MOCK_PROMPT_TOKENS,
TOLLGATE_MOCK_COMPLETION_TOKENS, TOLLGATE_MOCK_EMBEDDING_DIMS, TOLLGATE_MOCK_RECORD_LIMIT. Control it at runtime through the ``/__mock/`` admin API (see ``tollgate.mock.admin``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

from .reply import Reply
from .server import MockLLM

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"TOLLGATE_MOCK_{name}", default)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tollgate-mock-llm", description="Mock LLM upstream (OpenAI wire format).")
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="bind address (env TOLLGATE_MOCK_HOST)")
    p.add_argument("--port", type=int, default=int(_env("PORT", "8000")), help="port (env TOLLGATE_MOCK_PORT)")
    p.add_argument("--reply", default=_env("REPLY"),
                   help="fixed reply text (env TOLLGATE_MOCK_REPLY; default: echo the last user message)")
    p.add_argument("--latency", type=float, default=float(_env("LATENCY", "0")),
                   help="seconds before the response headers (env TOLLGATE_MOCK_LATENCY)")
    p.add_argument("--interval", type=float, default=float(_env("INTERVAL", "0")),
                   help="seconds between stream chunks (env TOLLGATE_MOCK_INTERVAL)")
    chunks = _env("CHUNKS")
    p.add_argument("--chunks", type=int, default=int(chunks) if chunks else None,
                   help="content chunks per stream (env TOLLGATE_MOCK_CHUNKS; default one per word)")
    prompt_tokens, completion_tokens = _env("PROMPT_TOKENS"), _env("COMPLETION_TOKENS")
    p.add_argument("--prompt-tokens", type=int, default=int(prompt_tokens) if prompt_tokens else None,
                   help="report this many prompt tokens in every usage (env TOLLGATE_MOCK_PROMPT_TOKENS; "
                        "default: count the request)")
    p.add_argument("--completion-tokens", type=int, default=int(completion_tokens) if completion_tokens else None,
                   help="report this many completion tokens in every usage (env TOLLGATE_MOCK_COMPLETION_TOKENS; "
                        "default: count the answer)")
    p.add_argument("--embedding-dims", type=int, default=int(_env("EMBEDDING_DIMS", "1536")),
                   help="default embedding size (env TOLLGATE_MOCK_EMBEDDING_DIMS)")
    p.add_argument("--record-limit", type=int, default=int(_env("RECORD_LIMIT", "1000")),
                   help="requests kept for GET /__mock/requests (env TOLLGATE_MOCK_RECORD_LIMIT)")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    mock = MockLLM(
        reply_text=args.reply,
        default=Reply(latency=args.latency, interval=args.interval, chunks=args.chunks,
                      prompt_tokens=args.prompt_tokens, completion_tokens=args.completion_tokens),
        embedding_dims=args.embedding_dims,
        record_limit=args.record_limit,
    )
    await mock.start(args.host, args.port)
    print(f"tollgate-mock-llm listening on http://{args.host}:{mock.port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await mock.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    factory = uvloop.new_event_loop if uvloop is not None else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

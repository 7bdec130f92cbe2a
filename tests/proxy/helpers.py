"""Small builders shared by the proxy tests."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson

KEYS = {"primary": "sk-primary-0123456789abcdef", "secondary": "sk-secondary-0123456789abcdef",
        "third": "sk-third-0123456789abcdef"}
MESSAGES = [{"role": "user", "content": "hello there"}]


def openai_target(mock_url: str, name: str, model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    """An OpenAI target served by the mock under ``/<name>/v1/...`` (so the mock can script each target apart)."""
    options = {"upstream_url": f"{mock_url}/{name}/v1/chat/completions", **extra.pop("options", {})}
    return {"model": {"provider": "openai", "name": model, "options": options},
            "auth": {"header_name": "Authorization", "header_value": f"Bearer {KEYS.get(name, 'sk-' + name)}"},
            "description": name, **extra}


def chat_config(targets: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"route_type": "llm/v1/chat", "targets": targets, **extra}


class Result:
    def __init__(self, status: int, headers: Any, body: bytes, elapsed: float):
        self.status, self.headers, self.body, self.elapsed = status, headers, body, elapsed

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()

    @property
    def target(self) -> str | None:
        return self.headers.get("X-Tollgate-Target")


async def post(url: str, body: Any = None, *, headers: dict[str, str] | None = None, raw: bytes | None = None,
               path: str = "/v1/chat/completions", method: str = "POST") -> Result:
    data = raw if raw is not None else orjson.dumps(body if body is not None else {"messages": MESSAGES})
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url + path, data=data, headers=hdrs) as r:
            content = await r.read()
            return Result(r.status, r.headers.copy(), content, time.monotonic() - started)


def sse_events(text: str) -> list[Any]:
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            payload = block[6:]
            out.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return out


def hits(mock: Any, name: str) -> int:
    return sum(1 for r in mock.requests if r.path.startswith(f"/{name}/"))


# -- algorithms semantic and complexity ------------------------------------------------------------------------------

CODE = ["Fix the bug in my Python function", "Why does my JavaScript code throw an error?",
        "Write a SQL query that joins two tables", "How do I write a unit test for this class?"]
POEMS = ["Write a poem about love", "Write a short story about a dragon", "Give me lyrics for a song about summer",
         "Write a haiku about the ocean"]
HARD = ("Design a distributed job scheduler that guarantees exactly-once execution across three regions, "
        "survives the loss of a region, and explain the consistency trade-offs you make.")


def ask(text: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}


def semantic_config(mock_url: str, **balancer: Any) -> dict[str, Any]:
    """coder and poet (by example prompts), and a default target without a description (openai/gpt-4o)."""
    return chat_config([openai_target(mock_url, "coder", examples=CODE),
                        openai_target(mock_url, "poet", examples=POEMS),
                        openai_target(mock_url, "general", "gpt-4o", description=None)],
                       balancer={"algorithm": "semantic", **balancer}, timeout=10)


def tiered_config(mock_url: str, **complexity: Any) -> dict[str, Any]:
    """small (simple), medium (standard) and large (hard)."""
    return chat_config([openai_target(mock_url, "small", "gpt-4o-mini", tier="simple"),
                        openai_target(mock_url, "medium", "gpt-4o", tier="standard"),
                        openai_target(mock_url, "large", "o3", tier="hard")],
                       balancer={"algorithm": "complexity", "complexity": complexity}, timeout=10)

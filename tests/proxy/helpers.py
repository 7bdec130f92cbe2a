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

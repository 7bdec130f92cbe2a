"""Fixtures of the semantic-cache acceptance tests: the Kong double in front of real ``tollgate serve`` processes
(key-auth, tollgate-semantic-cache, tollgate-proxy on one route), the mock LLM, real Redis, a clock moved through a
file (tests/clocks.py)."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from tests.clocks import CLOCK_PLUGIN_DIR, EPOCH, FileClock
from tests.gateway.routes import deck

CACHE_ID = "7c0c0a11-0000-4000-8000-00000000cac1"
CONSUMERS = [{"username": "alice", "keyauth_credentials": [{"key": "alice-key"}]},
             {"username": "bob", "keyauth_credentials": [{"key": "bob-key"}]}]


def proxy(mock_url: str, **extra: Any) -> dict[str, Any]:
    return {"route_type": "llm/v1/chat",
            "model": {"provider": "openai", "name": extra.pop("model", None),
                      "options": {"upstream_url": mock_url + "/v1/chat/completions"}},
            "auth": {"header_name": "Authorization", "header_value": "Bearer sk-cache-test-0123456789"}, **extra}


@pytest.fixture
def file_clock(tmp_path) -> FileClock:
    return FileClock(str(tmp_path / "clock"), EPOCH)


@pytest.fixture
async def gateway(tollgate_process, kong, mock_llm, file_clock):
    """``await gateway(cache_config, count=1, proxy_config=None, redis_url=None)`` -> Kong doubles, one per process."""
    async def make(cache: dict[str, Any], *, count: int = 1, proxy_config: dict[str, Any] | None = None,
                   redis_url: str | None = None, anonymous: bool = True):
        doubles = []
        for _ in range(count):
            process = tollgate_process(plugins_dir=CLOCK_PLUGIN_DIR, redis_url=redis_url,
                                       env={"TOLLGATE_TEST_CLOCK_FILE": file_clock.path})
            auth = {"key_names": ["apikey"], **({"anonymous": "anonymous"} if anonymous else {})}
            config = deck(process.relay_url, {"/v1": [
                {"name": "key-auth", "config": auth},
                {"id": CACHE_ID, "name": "tollgate-semantic-cache", "config": cache},
                {"name": "tollgate-proxy", "config": proxy_config or proxy(mock_llm.url)}]},
                consumers=[*CONSUMERS, {"username": "anonymous"}])
            double = await kong(config, process=process)
            double.process = process
            doubles.append(double)
        return doubles
    return make


def sdk(double, key: str = "alice-key") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=double.url + "/v1", api_key="unused", max_retries=0,
                              default_headers={"apikey": key})


async def ask(double, content: str | None = None, *, key: str = "alice-key", headers: dict[str, str] | None = None,
              **body: Any) -> tuple[int, Any, Any]:
    """POST a chat request; returns (status, headers, JSON body)."""
    if content is not None:
        body.setdefault("messages", [{"role": "user", "content": content}])
    body.setdefault("model", "gpt-4o-mini")
    async with aiohttp.ClientSession() as http:
        async with http.post(double.url + "/v1/chat/completions", json=body,
                             headers={"apikey": key, **(headers or {})}) as answer:
            return answer.status, answer.headers, await answer.json(content_type=None)


def answer_text(body: Any) -> str:
    return body["choices"][0]["message"]["content"]

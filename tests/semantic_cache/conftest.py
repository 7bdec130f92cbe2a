"""The semantic-cache acceptance environment, started once per test module: the Kong double (key-auth, then
tollgate-semantic-cache and tollgate-proxy over their sockets) in front of two real ``tollgate serve`` processes
that share one Redis, the mock LLM, and a clock the test moves through a file (tests/clocks.py).

One route per cache configuration (``/<name>/v1/...``); entries are kept apart by route (the default scope), so
tests on different routes never see each other's entries.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
import pytest_asyncio

from tests.clocks import CLOCK_PLUGIN_DIR, EPOCH, FileClock
from tests.harness import KongDouble
from tests.harness.procs import TollgateServer
from tests.redis_server import RedisServer
from tollgate.mock import MockLLM

PLUGINS = ["tollgate-proxy", "tollgate-semantic-cache", "tollgate-token-limit"]
LIMIT = {"limits": [{"limit": 100000, "window_size": "hour", "tokens_count_strategy": "total_tokens"}],
         "identifier": "consumer", "strategy": "local"}


def proxy(mock_url: str, route_type: str = "llm/v1/chat") -> dict[str, Any]:
    path = "/v1/completions" if route_type == "llm/v1/completions" else "/v1/chat/completions"
    return {"route_type": route_type, "model": {"provider": "openai", "options": {"upstream_url": mock_url + path}},
            "auth": {"header_name": "Authorization", "header_value": "Bearer sk-cache-test-0123456789"}}


def provider_embeddings(mock_url: str) -> dict[str, Any]:
    return {"model": {"provider": "openai", "name": "text-embedding-3-small",
                      "options": {"upstream_url": mock_url + "/v1/embeddings"}},
            "auth": {"header_name": "Authorization", "header_value": "Bearer sk-emb-0123456789"}}


def routed_proxy(mock_url: str) -> dict[str, Any]:
    """Semantic routing between two targets, embedding with the same provider and model as the route's cache."""
    def target(name: str) -> dict[str, Any]:
        return {"model": {"provider": "openai", "name": "gpt-4o-mini",
                          "options": {"upstream_url": mock_url + "/v1/chat/completions"}},
                "auth": {"header_name": "Authorization", "header_value": "Bearer sk-cache-test-0123456789"},
                "description": name}
    return {"route_type": "llm/v1/chat", "targets": [target("questions about embeddings"), target("poems")],
            "balancer": {"algorithm": "semantic"}, "embeddings": provider_embeddings(mock_url)}


def routes(redis_url: str, down_url: str, mock_url: str) -> dict[str, dict[str, Any]]:
    """Route name -> tollgate-semantic-cache config."""
    redis = {"strategy": "redis", "redis": {"url": redis_url}}
    down = {"strategy": "redis", "redis": {"url": down_url, "timeout": 0.2}}
    return {
        "local": {},
        "redis": {"vectordb": redis},
        "cli": {"vectordb": redis},
        "routescope": {"scope": "route"},
        "ttl": {"cache_ttl": 60, "cache_control": True},
        "history": {"message_countback": 1},
        "length": {"cache_finish_reasons": ["stop", "length"]},
        "down-open": {"vectordb": down},
        "down-closed": {"vectordb": down, "stop_on_failure": True},
        "provider-emb": {"embeddings": provider_embeddings(mock_url), "vectordb": {"dimensions": 1536}},
        "routed": {"embeddings": provider_embeddings(mock_url), "vectordb": {"dimensions": 1536}},
        "bad-dims": {"vectordb": {"dimensions": 512}},
        "emb-down": {"embeddings": {"model": {"provider": "openai", "name": "text-embedding-3-small",
                                              "options": {"upstream_url": "http://127.0.0.1:9/v1/embeddings"}},
                                    "timeout": 1},
                     "vectordb": {"dimensions": 1536}},
        "limited": {},
        "completions": {},
    }


ROUTE_TYPES = {"completions": "llm/v1/completions"}
# Routes with more plugins than the cache and the proxy.
EXTRA_PLUGINS = {"limited": [{"name": "tollgate-token-limit", "config": LIMIT}]}


def declarative(relay_url: str, caches: dict[str, dict[str, Any]], mock_url: str) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "services": [{"name": "relay", "url": relay_url, "retries": 0, "routes": [
            {"name": name, "paths": [f"/{name}/"], "strip_path": False, "plugins": [
                {"name": "key-auth", "config": {"key_names": ["apikey"], "anonymous": "anonymous"}},
                {"name": "tollgate-semantic-cache", "config": cache},
                {"name": "tollgate-proxy", "config": routed_proxy(mock_url) if name == "routed"
                 else proxy(mock_url, ROUTE_TYPES.get(name, "llm/v1/chat"))},
                *EXTRA_PLUGINS.get(name, [])]}
            for name, cache in caches.items()]}],
        "consumers": [{"username": "alice", "keyauth_credentials": [{"key": "alice-key"}]},
                      {"username": "bob", "keyauth_credentials": [{"key": "bob-key"}]},
                      {"username": "anonymous"}],
    }


@dataclass
class Node:
    proc: TollgateServer
    kong: KongDouble

    @property
    def url(self) -> str:
        return self.kong.url

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.proc.status_port}"

    async def logs(self, count: int) -> list[dict[str, Any]]:
        """The process's analytics lines, once at least ``count`` are written (the log writer is asynchronous)."""
        lines: list[dict[str, Any]] = []
        for _ in range(100):
            lines = [json.loads(line) for line in self.proc.stderr_text().splitlines()
                     if line.startswith("{") and '"msg":"ai request"' in line]
            if len(lines) >= count:
                return lines
            await asyncio.sleep(0.05)
        raise AssertionError(f"expected {count} analytics lines, got {len(lines)}")

    async def logged(self, text: str) -> bool:
        """Whether the process logs ``text`` within 5 s (the log writer is asynchronous)."""
        for _ in range(100):
            if text in self.proc.stderr_text():
                return True
            await asyncio.sleep(0.05)
        return False

    async def mark(self) -> int:
        """How many analytics lines the process has written so far (give it to `caches`)."""
        await asyncio.sleep(0.1)     # lines of earlier requests still on their way
        return len(await self.logs(0))

    async def caches(self, mark: int, count: int) -> list[dict[str, Any]]:
        """``ai.proxy.cache`` of the ``count`` requests logged after ``mark``."""
        lines = await self.logs(mark + count)
        return [line["ai"]["proxy"].get("cache") or {} for line in lines[mark:mark + count]]


@dataclass
class Env:
    nodes: list[Node]
    mock: MockLLM
    clock: FileClock
    redis: RedisServer | None = None
    down: RedisServer | None = None

    @property
    def node(self) -> Node:
        return self.nodes[0]


async def start_env(caches: dict[str, dict[str, Any]], mock: MockLLM, nodes: int = 2,
                    **extra: Any) -> Env:
    """``nodes`` processes, each behind its own Kong double with the routes of ``caches``."""
    clock = FileClock(tempfile.mktemp(prefix="tg-clock-"), EPOCH)
    made = []
    for _ in range(nodes):
        proc = TollgateServer(plugins_dir=CLOCK_PLUGIN_DIR, env={"TOLLGATE_TEST_CLOCK_FILE": clock.path})
        await proc.astart()
        kong = KongDouble(proc.entries("3.9", PLUGINS), declarative(proc.relay_url, caches, mock.url))
        await kong.start()
        made.append(Node(proc, kong))
    return Env(made, mock, clock=clock, **extra)


async def stop_env(env: Env) -> None:
    for node in env.nodes:
        await node.kong.stop()
        node.proc.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(redis_server):
    mock = MockLLM(shutdown_timeout=0.1, embedding_dims=1536)
    await mock.start()
    down = RedisServer().start()
    made = await start_env(routes(redis_server.url, down.url, mock.url), mock, redis=redis_server, down=down)
    yield made
    await stop_env(made)
    down.stop()
    await mock.stop()


def sdk(node: Node, route: str, key: str = "alice-key") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{node.url}/{route}/v1", api_key="unused", max_retries=0,
                              default_headers={"apikey": key})


async def ask(node: Node, route: str, content: str | None = None, *, key: str = "alice-key",
              headers: dict[str, str] | None = None, **body: Any) -> tuple[int, Any, Any]:
    """POST a chat request; returns (status, headers, JSON body)."""
    if content is not None:
        body.setdefault("messages", [{"role": "user", "content": content}])
    body.setdefault("model", "gpt-4o-mini")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{node.url}/{route}/v1/chat/completions", json=body,
                             headers={"apikey": key, **(headers or {})}) as answer:
            return answer.status, answer.headers, await answer.json(content_type=None)


def text(body: Any) -> str:
    return body["choices"][0]["message"]["content"]

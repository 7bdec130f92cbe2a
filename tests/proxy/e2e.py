"""The end-to-end environment of the proxy tests: the real ``tollgate serve`` process, the Kong double in front of
it (HTTP front for SDK clients, the plugin-server protocol behind), and the mock LLM, with one Kong route per
scenario so a test module starts everything once.

    client (openai SDK / aiohttp) -> Kong double :port /<route>/v1/... -> access: tollgate-proxy over its socket
      -> relay (tollgate serve) -> mock LLM (every provider's wire format)
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import pytest_asyncio
import yaml

from tests.harness import KongDouble
from tests.harness.bundled import BundledPlugin
from tests.harness.procs import TollgateServer
from tollgate.mock import MockLLM

from .helpers import KEYS, chat_config, openai_target

BEDROCK_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
BEDROCK_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PROVIDER_KEYS = {"openai": "sk-openai-e2e-0123456789abcdef", "azure": "az-e2e-0123456789abcdef",
                 "anthropic": "sk-ant-e2e-0123456789abcdef", "cohere": "co-e2e-0123456789abcdef",
                 "mistral": "mi-e2e-0123456789abcdef", "gemini": "AIza-e2e-0123456789abcdef",
                 "openai-compatible": "compat-e2e-0123456789abcdef"}
ALL_KEYS = [*KEYS.values(), *PROVIDER_KEYS.values(), BEDROCK_KEY_ID, BEDROCK_SECRET]


class CaptureLog(BundledPlugin):
    """A stand-in for a Kong log plugin (file-log): keeps what ``kong.log.serialize()`` gives it."""

    name = "file-log"
    priority = 9
    phases = ("log",)
    schema = {"name": "file-log", "fields": [{"config": {"type": "record", "fields": [
        {"path": {"type": "string"}}]}}]}

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    async def log(self, kong: Any, req: Any, conf: dict[str, Any]) -> None:
        self.entries.append(kong._serialize(req))


def provider_model(provider: str, mock_url: str, route_type: str = "chat") -> tuple[dict[str, Any], dict[str, Any]]:
    """(model, auth) of one provider served by the mock."""
    key = PROVIDER_KEYS.get(provider)
    bearer = {"header_name": "Authorization", "header_value": f"Bearer {key}"}
    embeddings = route_type == "embeddings"
    if provider == "openai":
        path = "/v1/embeddings" if embeddings else "/v1/chat/completions"
        name = "text-embedding-3-small" if embeddings else "gpt-4o-mini"
        return {"provider": "openai", "name": name, "options": {"upstream_url": mock_url + path}}, bearer
    if provider == "azure":
        kind = "embeddings" if embeddings else "chat/completions"
        version = "2024-10-21"
        return ({"provider": "azure", "name": "text-embedding-3-small" if embeddings else "gpt-4o",
                 "options": {"upstream_url": f"{mock_url}/openai/deployments/prod/{kind}",
                             "azure_api_version": version}},
                {"header_name": "api-key", "header_value": PROVIDER_KEYS["azure"]})
    if provider == "anthropic":
        return ({"provider": "anthropic", "name": "claude-sonnet-4-5",
                 "options": {"upstream_url": mock_url + "/v1/messages", "max_tokens": 256,
                             "anthropic_version": "2023-06-01"}},
                {"header_name": "x-api-key", "header_value": key})
    if provider == "cohere":
        return ({"provider": "cohere", "name": "command-a-03-2025", "options": {"upstream_url": mock_url + "/v2/chat"}},
                bearer)
    if provider == "mistral":
        path = "/mistral/v1/embeddings" if embeddings else "/mistral/v1/chat/completions"
        return ({"provider": "mistral", "name": "mistral-embed" if embeddings else "mistral-large-latest",
                 "options": {"upstream_url": mock_url + path}}, bearer)
    if provider == "gemini":
        model = "text-embedding-004" if embeddings else "gemini-2.0-flash"
        return ({"provider": "gemini", "name": model,
                 "options": {"upstream_url": f"{mock_url}/v1beta/models/{model}:generateContent"}},
                {"param_name": "key", "param_value": key, "param_location": "query"})
    if provider == "bedrock":
        model = "amazon.titan-embed-text-v2:0" if embeddings else "anthropic.claude-3-5-sonnet-20240620-v1:0"
        return ({"provider": "bedrock", "name": model,
                 "options": {"upstream_url": mock_url, "bedrock": {"aws_region": "us-west-2"}, "max_tokens": 512}},
                {"aws_access_key_id": BEDROCK_KEY_ID, "aws_secret_access_key": BEDROCK_SECRET})
    if provider == "openai-compatible":
        name = "nomic-embed-text" if embeddings else "llama3.1"
        return ({"provider": "openai-compatible", "name": name, "options": {"upstream_url": mock_url + "/compat/v1"}},
                bearer)
    raise ValueError(provider)


CHAT_PROVIDERS = ["openai", "azure", "anthropic", "cohere", "mistral", "gemini", "bedrock"]
EMBEDDING_PROVIDERS = ["openai", "azure", "mistral", "gemini", "bedrock", "openai-compatible"]


def proxy_configs(mock_url: str) -> dict[str, dict[str, Any]]:
    """Route name -> tollgate-proxy config (the route serves /<name>)."""
    m = mock_url
    configs: dict[str, dict[str, Any]] = {
        "failover": chat_config([openai_target(m, "primary", "gpt-4o"),
                                 openai_target(m, "secondary", "gpt-4o-mini", priority=2)],
                                balancer={"algorithm": "priority"}, timeout=5),
        "down": chat_config([openai_target(m, "down-a"), openai_target(m, "down-b")], timeout=2),
        "slow": chat_config([openai_target(m, "slow-a"), openai_target(m, "slow-b")], timeout=1),
        "weights": chat_config([openai_target(m, "w-a", weight=300), openai_target(m, "w-b", weight=100)]),
        "latency": chat_config([openai_target(m, "lat-slow"), openai_target(m, "lat-fast")],
                               balancer={"algorithm": "lowest-latency", "latency_strategy": "e2e"}),
        "rules": chat_config([openai_target(m, "premium", match={"headers": {"X-Tier": ["premium"]}}),
                              openai_target(m, "team", match={"consumers": ["team-a"]}),
                              openai_target(m, "large", match={"min_prompt_tokens": 300}),
                              openai_target(m, "default")]),
        "pinned": {"route_type": "llm/v1/chat",
                   "model": {"provider": "openai", "name": "gpt-4o-mini",
                             "options": {"upstream_url": m + "/pinned/v1/chat/completions"}},
                   "auth": {"header_name": "Authorization", "header_value": f"Bearer {KEYS['primary']}"},
                   "logging": {"log_statistics": True}},
        "captures": {"route_type": "llm/v1/chat",
                     "model": {"provider": "openai", "name": "$(uri_captures.model)",
                               "options": {"upstream_url": m + "/captures/v1/chat/completions"}},
                     "auth": {"header_name": "Authorization", "header_value": f"Bearer {KEYS['primary']}"}},
    }
    for provider in CHAT_PROVIDERS:
        model, auth = provider_model(provider, m)
        configs[f"chat-{provider}"] = {"route_type": "llm/v1/chat", "model": model, "auth": auth, "timeout": 10}
    v1, auth = provider_model("cohere", m)
    configs["chat-cohere-v1"] = {"route_type": "llm/v1/chat", "auth": auth, "timeout": 10,
                                 "model": {**v1, "name": "command-r-plus", "options": {"upstream_url": m + "/v1/chat"}}}
    for provider in EMBEDDING_PROVIDERS:
        model, auth = provider_model(provider, m, "embeddings")
        configs[f"emb-{provider}"] = {"route_type": "llm/v1/embeddings", "model": model, "auth": auth}
    return configs


def declarative(relay_url: str, configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    routes = []
    for name, config in configs.items():
        paths = ["~/captures/(?<model>[a-z0-9.-]+)/v1"] if name == "captures" else [f"/{name}/"]
        plugins: list[dict[str, Any]] = [{"name": "tollgate-proxy", "config": config}, {"name": "file-log"}]
        if name == "rules":
            plugins.append({"name": "key-auth", "config": {"anonymous": "anonymous"}})
        routes.append({"name": name, "paths": paths, "strip_path": False, "plugins": plugins})
    return {
        "_format_version": "3.0",
        "services": [{"name": "relay", "url": relay_url, "retries": 0, "routes": routes}],
        "consumers": [{"username": "alice", "custom_id": "team-a", "keyauth_credentials": [{"key": "alice-key"}]},
                      {"username": "bob", "custom_id": "team-b", "keyauth_credentials": [{"key": "bob-key"}]},
                      {"username": "anonymous"}],
    }


@dataclass
class Env:
    proc: TollgateServer
    mock: MockLLM
    kong: KongDouble
    logs: CaptureLog
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def base(self, route: str) -> str:
        """The openai SDK's base_url for a route."""
        return f"{self.kong.url}/{route}/v1"

    def stderr(self) -> str:
        return self.proc.stderr_text()

    def log_lines(self, msg: str = "ai request") -> list[dict[str, Any]]:
        out = []
        for line in self.stderr().splitlines():
            if line.startswith("{") and f'"msg":"{msg}"' in line:
                out.append(json.loads(line))
        return out

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.proc.status_port}/metrics", timeout=5) as r:
            return r.read().decode()


async def start_env(configs_for: Callable[[str], dict[str, dict[str, Any]]] = proxy_configs) -> Env:
    """The environment with one route per config that ``configs_for(mock_url)`` names."""
    mock = MockLLM(shutdown_timeout=0.1)
    await mock.start()
    proc = TollgateServer(env={"TOLLGATE_LOG_LEVEL": "info"})
    await proc.astart()
    configs = configs_for(mock.url)
    logs = CaptureLog()
    kong = KongDouble(proc.entries("3.9", ["tollgate-proxy"]), declarative(proc.relay_url, configs),
                      bundled={"file-log": logs})
    await kong.start()
    return Env(proc, mock, kong, logs, configs)


async def stop_env(env: Env) -> None:
    await env.kong.stop()
    env.proc.cleanup()
    await env.mock.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env():
    """One environment per test module (import ``env`` and ``fresh_mock`` into the module to use it)."""
    e = await start_env()
    yield e
    await stop_env(e)


@pytest.fixture(autouse=True)
def fresh_mock(env: Env):
    env.mock.reset()
    yield


def path_re(name: str) -> re.Pattern[str]:
    return re.compile(f"^/{re.escape(name)}/")


EXAMPLE = Path(__file__).resolve().parents[2] / "declarative" / "kong.yml"


def example_route(name: str, mock_url: str, relay_url: str) -> dict[str, Any]:
    """The declarative config of one route of the example, pointed at the mock and the relay."""
    text = EXAMPLE.read_text().replace("http://mock-llm:8000", mock_url).replace("http://127.0.0.1:8081", relay_url)
    doc = yaml.safe_load(text)
    (service,) = doc["services"]
    service["routes"] = [r for r in service["routes"] if r["name"] == name]
    assert len(service["routes"]) == 1
    return {"_format_version": doc["_format_version"], "services": [service]}


@asynccontextmanager
async def example_env(name: str) -> AsyncIterator[tuple[KongDouble, MockLLM]]:
    """One route of declarative/kong.yml, as shipped, behind the Kong double, ``tollgate serve`` and the mock."""
    mock = MockLLM(shutdown_timeout=0.1)
    await mock.start()
    proc = TollgateServer()
    await proc.astart()
    kong = KongDouble(proc.entries("3.9", ["tollgate-proxy"]), example_route(name, mock.url, proc.relay_url))
    await kong.start()
    try:
        yield kong, mock
    finally:
        await kong.stop()
        proc.cleanup()
        await mock.stop()


def example_fixture(name: str) -> Any:
    """A module fixture ``env``: (the Kong double, the mock) serving one route of the example."""
    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def env() -> AsyncIterator[tuple[KongDouble, MockLLM]]:
        async with example_env(name) as kong_and_mock:
            yield kong_and_mock
    return env

"""The ``/mcp`` route of declarative/kong.yml, as shipped, through the Kong double, ``tollgate serve`` and the mock
LLM (whose model list is the converted tool), with the official SDK client."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio
import yaml
from mcp.shared.exceptions import MCPError

from tests.harness import KongDouble
from tests.harness.procs import TollgateServer
from tollgate.mock import MockLLM

from .env import sdk_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

EXAMPLE = Path(__file__).resolve().parents[2] / "declarative" / "kong.yml"


def mcp_route(mock_url: str, relay_url: str) -> dict:
    text = EXAMPLE.read_text().replace("http://mock-llm:8000", mock_url).replace("http://127.0.0.1:8081", relay_url)
    doc = yaml.safe_load(text)
    (service,) = doc["services"]
    service["routes"] = [r for r in service["routes"] if r["name"] == "mcp"]
    consumers = doc["consumers"] + [{"username": "bob", "keyauth_credentials": [{"key": "bob-key"}]}]
    return {"_format_version": doc["_format_version"], "services": [service], "consumers": consumers}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def kong():
    mock = MockLLM(shutdown_timeout=0.1)
    await mock.start()
    proc = TollgateServer()
    await proc.astart()
    double = KongDouble(proc.entries("3.9", ["tollgate-mcp"]), mcp_route(mock.url, proc.relay_url))
    await double.start()
    yield double
    await double.stop()
    proc.cleanup()
    await mock.stop()


async def test_the_demo_consumer_lists_and_calls_the_converted_tool(kong):
    async with sdk_client(f"{kong.url}/mcp", user="demo") as client:
        tools = (await client.list_tools()).tools
        result = await client.call_tool("list_models", {})
    assert [t.name for t in tools] == ["list_models"] and tools[0].annotations.read_only_hint is True
    assert not result.is_error and result.structured_content["object"] == "list"


async def test_another_consumer_sees_nothing_and_may_call_nothing(kong):
    async with sdk_client(f"{kong.url}/mcp", user="bob") as client:
        assert (await client.list_tools()).tools == []
        with pytest.raises(MCPError) as refused:
            await client.call_tool("list_models", {})
    assert refused.value.code == -32003

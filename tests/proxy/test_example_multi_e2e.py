"""The ``/multi`` route of declarative/kong.yml, as shipped, through the Kong double, ``tollgate serve`` and the mock:
the primary answers; when it fails (503, 429 with Retry-After) the secondary does, at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from tests.harness import KongDouble
from tests.harness.procs import TollgateServer
from tollgate.mock import MockLLM, Reply

from .helpers import post

pytestmark = pytest.mark.asyncio(loop_scope="module")

EXAMPLE = Path(__file__).resolve().parents[2] / "declarative" / "kong.yml"


def example_route(name: str, mock_url: str, relay_url: str) -> dict:
    """The declarative config of one route of the example, pointed at the mock and the relay."""
    text = EXAMPLE.read_text().replace("http://mock-llm:8000", mock_url).replace("http://127.0.0.1:8081", relay_url)
    doc = yaml.safe_load(text)
    (service,) = doc["services"]
    service["routes"] = [r for r in service["routes"] if r["name"] == name]
    assert len(service["routes"]) == 1
    return {"_format_version": doc["_format_version"], "services": [service]}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env():
    mock = MockLLM(shutdown_timeout=0.1)
    await mock.start()
    proc = TollgateServer()
    await proc.astart()
    kong = KongDouble(proc.entries("3.9", ["tollgate-proxy"]), example_route("multi", mock.url, proc.relay_url))
    await kong.start()
    yield kong, mock
    await kong.stop()
    proc.cleanup()
    await mock.stop()


async def test_the_primary_answers(env):
    kong, mock = env
    mock.reset()
    for _ in range(3):
        result = await post(kong.url, path="/multi/v1/chat/completions")
        assert result.status == 200 and result.target == "primary"
    assert [r.model for r in mock.requests] == ["gpt-4o-mini"] * 3


@pytest.mark.parametrize("failure", [Reply.fail(503), Reply.fail(429, retry_after=30)])
async def test_a_failing_primary_fails_over_to_the_secondary_at_once(env, failure):
    kong, mock = env
    mock.reset()
    mock.enqueue(failure, model="gpt-4o-mini")
    result = await post(kong.url, path="/multi/v1/chat/completions")
    assert result.status == 200 and result.target == "secondary" and result.headers["X-Tollgate-Attempts"] == "2"
    assert result.elapsed < 1.5                                   # no waiting on the primary's Retry-After
    assert [r.model for r in mock.requests] == ["gpt-4o-mini", "gpt-4o"]

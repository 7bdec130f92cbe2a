"""Fixtures shared by every test: the Kong double, the Tollgate process, the mock LLM, Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import pytest_asyncio

from tests import openai_types
from tests.harness.fixtures import *  # noqa: F401,F403
from tests.redis_server import RedisServer, redis_available
from tollgate.mock import MockLLM


@pytest.fixture(autouse=True)
def openai_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer and chunk a driver produces in any test is checked against OpenAI's types (strict)."""
    openai_types.watch(monkeypatch)


@pytest_asyncio.fixture
async def mock_llm():
    async with MockLLM() as mock:
        yield mock


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    if not redis_available():
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flushall()
    return redis_server.url

"""Fixtures shared by every test: the Kong double, the Tollgate process, the mock LLM, Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import pytest_asyncio

from tests import openai_types
from tests.harness.fixtures import *  # noqa: F401,F403
from tests.redis_server import REDIS_INSTALL_HINT, REDIS_MISSING, RedisServer, redis_available
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
        pytest.skip(REDIS_MISSING)
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flushall()
    return redis_server.url


# --- the run's last line names the tests skipped for want of redis-server, and how to get it -----------------------

_skipped_for_redis: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and REDIS_MISSING in str(report.longrepr):
        _skipped_for_redis.add(report.nodeid)


def pytest_unconfigure(config: pytest.Config) -> None:
    """After pytest's own summary line, so that it is the very last line of `make test`."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if _skipped_for_redis and reporter is not None:
        count = len(_skipped_for_redis)
        reporter.write_line(f"{count} test{'s' if count != 1 else ''} skipped because redis-server is not installed; "
                            f"install it to run them: {REDIS_INSTALL_HINT}", yellow=True, bold=True)

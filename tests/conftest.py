"""Fixtures shared by every test: the Kong double, the Tollgate process, the mock LLM, Redis."""

from __future__ import annotations

import pytest_asyncio

from tests.harness.fixtures import *  # noqa: F401,F403
from tollgate.mock import MockLLM


@pytest_asyncio.fixture
async def mock_llm():
    async with MockLLM() as mock:
        yield mock

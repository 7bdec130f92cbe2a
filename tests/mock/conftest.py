"""Fixtures for the mock LLM tests."""

from __future__ import annotations

import aiohttp
import pytest

from tollgate.mock import MockLLM


@pytest.fixture
async def mock():
    async with MockLLM() as m:
        yield m


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def openai_client(mock):
    import openai

    client = openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="sk-test", max_retries=0, timeout=10)
    return client

"""The ``/tiered`` route of declarative/kong.yml, as shipped, through the Kong double, ``tollgate serve`` and the
mock: a simple question goes to the small model, a hard one to the strong model, and a failing strong model falls
over to the next tier."""

from __future__ import annotations

import pytest

from tollgate.mock import Reply

from .e2e import example_fixture
from .helpers import HARD, ask, post

pytestmark = pytest.mark.asyncio(loop_scope="module")

PATH = "/tiered/v1/chat/completions"

env = example_fixture("tiered")


async def test_each_prompt_goes_to_its_tier(env):
    kong, mock = env
    mock.reset()
    simple = await post(kong.url, ask("What is the capital of Peru?"), path=PATH)
    hard = await post(kong.url, ask(HARD), path=PATH)
    assert (simple.status, simple.target, hard.target) == (200, "small", "large")
    assert simple.headers["X-Tollgate-Route-Reason"].startswith("tier=simple;")
    assert [r.model for r in mock.requests] == ["gpt-4o-mini", "o3"]


async def test_a_failing_tier_falls_over_to_the_next(env):
    kong, mock = env
    mock.reset()
    mock.enqueue(Reply.fail(503), model="o3")
    result = await post(kong.url, ask(HARD), path=PATH)
    assert result.status == 200 and result.target == "medium" and result.headers["X-Tollgate-Attempts"] == "2"
    assert [r.model for r in mock.requests] == ["o3", "gpt-4o"]

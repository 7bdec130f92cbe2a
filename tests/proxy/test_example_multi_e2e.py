"""The ``/multi`` route of declarative/kong.yml, as shipped, through the Kong double, ``tollgate serve`` and the mock:
the primary answers; when it fails (503, 429 with Retry-After) the secondary does, at once."""

from __future__ import annotations

import pytest

from tollgate.mock import Reply

from .e2e import example_fixture
from .helpers import post

pytestmark = pytest.mark.asyncio(loop_scope="module")

env = example_fixture("multi")


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

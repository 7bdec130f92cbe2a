"""OpenAI moderation: the documented request, thresholds per category over category_scores, OpenAI's own flags
where no threshold is set, and faults as GuardUnavailable without the text or the key."""

import pytest

from tollgate.plugins.guardrails.guards.base import GuardUnavailable

from ..mocks import BOOM, SHOVE, SMASH
from ..mocks.openai_moderation import KEY
from .conftest import make

pytestmark = pytest.mark.asyncio(loop_scope="module")


def guard(mocks, **settings):
    return make("openai_moderation", {"url": f"{mocks.url}/v1/moderations", "api_key": KEY, **settings})


async def test_the_request_is_the_documented_one(mocks):
    verdict = await guard(mocks).check("hello there", "input")
    assert not verdict.blocked
    sent = mocks.of("openai_moderation")[-1]
    assert sent.json == {"model": "omni-moderation-latest", "input": "hello there"}
    assert sent.headers["Authorization"] == f"Bearer {KEY}" and sent.headers["Content-Type"] == "application/json"


async def test_openais_own_flag_blocks_without_a_threshold(mocks):
    assert (await guard(mocks).check(SMASH, "input")).categories == ("violence",)
    assert not (await guard(mocks).check(SHOVE, "input")).blocked


async def test_a_threshold_per_category_over_the_scores(mocks):
    strict = guard(mocks, thresholds={"violence": 0.3})
    assert (await strict.check(SHOVE, "output")).categories == ("violence",)
    lenient = guard(mocks, thresholds={"violence": 0.95})
    assert not (await lenient.check(SMASH, "input")).blocked      # the threshold replaces OpenAI's own flag


async def test_faults_are_unavailable_and_never_show_the_text_or_the_key(mocks):
    for g, text in [(guard(mocks), f"{BOOM} secret-text"), (make("openai_moderation", {
            "url": f"{mocks.url}/v1/moderations", "api_key": "sk-wrong-key"}), "secret-text"),
            (make("openai_moderation", {"url": "http://127.0.0.1:9/v1/moderations", "api_key": KEY}),
             "secret-text")]:
        with pytest.raises(GuardUnavailable) as caught:
            await g.check(text, "input")
        assert "secret-text" not in str(caught.value) and "sk-" not in str(caught.value)

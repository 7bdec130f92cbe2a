"""Azure AI Content Safety: the documented text:analyze request (api-version, key header, categories,
blocklistNames, haltOnBlocklistHit, outputType), severity per category, blocklist hits."""

import pytest

from tollgate.plugins.guardrails.guards.base import GuardUnavailable

from ..mocks import SHOVE, SMASH
from ..mocks.azure_content_safety import KEY
from .conftest import make

pytestmark = pytest.mark.asyncio(loop_scope="module")


def guard(mocks, **settings):
    return make("azure_content_safety", {"content_safety_url": f"{mocks.url}/contentsafety/text:analyze",
                                         "content_safety_key": KEY, **settings})


VIOLENCE = [{"name": "Violence", "rejection_level": 4}, {"name": "Hate", "rejection_level": 2}]


async def test_the_request_is_the_documented_one(mocks):
    g = guard(mocks, categories=VIOLENCE, blocklist_names=["competitors"], halt_on_blocklist_hit=True,
              output_type="EightSeverityLevels", azure_api_version="2024-09-01")
    assert not (await g.check("hello", "input")).blocked
    sent = mocks.of("azure_content_safety")[-1]
    assert sent.query == {"api-version": "2024-09-01"} and sent.headers["Ocp-Apim-Subscription-Key"] == KEY
    assert sent.json == {"text": "hello", "categories": ["Violence", "Hate"], "outputType": "EightSeverityLevels",
                         "blocklistNames": ["competitors"], "haltOnBlocklistHit": True}
    await guard(mocks, categories=VIOLENCE).check("hello", "input")
    assert mocks.of("azure_content_safety")[-1].json == {"text": "hello", "categories": ["Violence", "Hate"],
                                                         "outputType": "FourSeverityLevels"}


async def test_severity_reaching_the_rejection_level_blocks(mocks):
    g = guard(mocks, categories=VIOLENCE)
    assert (await g.check(SMASH, "input")).categories == ("Violence",)
    assert not (await g.check(SHOVE, "input")).blocked                       # severity 2 < 4
    strict = guard(mocks, categories=[{"name": "Violence", "rejection_level": 2}])
    assert (await strict.check(SHOVE, "output")).categories == ("Violence",)


async def test_blocklist_hits_block_with_or_without_halting(mocks):
    for halt in (True, False):
        g = guard(mocks, categories=VIOLENCE, blocklist_names=["competitors"], halt_on_blocklist_hit=halt)
        verdict = await g.check(f"buy from ACME and {SMASH}", "input")
        assert verdict.categories == (("Blocklist:competitors",) if halt else ("Blocklist:competitors", "Violence"))


async def test_a_long_text_is_judged_in_overlapping_parts_azure_accepts(mocks):
    text = "x" * 9997 + SMASH + "y" * 9000                   # "smash" is cut by the first part's end
    verdict = await guard(mocks, categories=VIOLENCE).check(text, "input")
    sent = [r.json["text"] for r in mocks.of("azure_content_safety")]
    assert [len(t) for t in sent] == [10000, len(text) - 9500] and sent[1] == text[9500:]
    assert "smash" not in sent[0] and verdict.categories == ("Violence",)
    mocks.reset()
    await guard(mocks, categories=VIOLENCE).check("x" * 10000, "input")
    await guard(mocks, categories=VIOLENCE).check("", "input")
    assert [len(r.json["text"]) for r in mocks.of("azure_content_safety")] == [10000, 0]


async def test_a_service_error_is_unavailable(mocks):
    with pytest.raises(GuardUnavailable, match="HTTP 404"):
        await guard(mocks, categories=VIOLENCE, blocklist_names=["unknown"]).check("hello", "input")

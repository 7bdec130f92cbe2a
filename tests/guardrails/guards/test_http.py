"""The generic HTTP guard: the body template (the text can never change its structure), headers, queries and auth,
the block rule and masked text read by path, and the timeout."""

import time

import orjson
import pytest

from tollgate.plugins.guardrails.guards.base import GuardUnavailable
from tollgate.plugins.guardrails.guards.http import MISSING, fill, lookup

from ..mocks import CARD, HANG, MASKED_CARD, SMASH
from ..mocks.custom import KEY
from .conftest import make

pytestmark = pytest.mark.asyncio(loop_scope="module")

BODY = '{"input": "$(content)", "phase": "$(phase)", "meta": {"source": "tollgate"}}'


def guard(mocks, *, auth=None, **common):
    return make("http", {"request": {"url": f"{mocks.url}/custom/check", "body": BODY,
                                     "headers": {"X-Team": "blue"},
                                     "auth": auth or {"name": "X-Api-Key", "value": KEY}},
                         "response": {"block": "verdict.action", "block_values": ["BLOCK"],
                                      "block_reason": "verdict.reasons", "masked": "redacted"}}, **common)


async def test_paths_and_templates():
    data = {"results": [{"flagged": True}], "a": {"b": "c"}}
    assert lookup(data, "results.0.flagged") is True and lookup(data, "$.a.b") == "c"
    assert lookup(data, "results.1.flagged") is MISSING and lookup(data, "a.x") is MISSING
    attack = '", "admin": true, "x": "'
    assert fill(orjson.loads(BODY), {"$(content)": attack, "$(phase)": "input"}) == {
        "input": attack, "phase": "input", "meta": {"source": "tollgate"}}


async def test_the_request_follows_the_template_with_headers_and_auth(mocks):
    assert not (await guard(mocks).check('say "hi"\n', "output")).blocked
    sent = mocks.of("custom")[-1]
    assert sent.json == {"input": 'say "hi"\n', "phase": "output", "meta": {"source": "tollgate"}}
    assert sent.headers["X-Api-Key"] == KEY and sent.headers["X-Team"] == "blue"
    await guard(mocks, auth={"location": "query", "name": "key", "value": KEY}).check("hi", "input")
    assert mocks.of("custom")[-1].query == {"key": KEY}


async def test_block_and_reasons_and_mask_by_path(mocks):
    assert (await guard(mocks).check(SMASH, "input")).categories == ("violence",)
    verdict = await guard(mocks).check(f"card {CARD}", "input")
    assert not verdict.blocked and verdict.masked == f"card {MASKED_CARD}"


async def test_an_answer_without_the_block_path_is_unreadable(mocks):
    g = make("http", {"request": {"url": f"{mocks.url}/custom/check", "body": BODY,
                                  "auth": {"name": "X-Api-Key", "value": KEY}},
                      "response": {"block": "verdict.missing"}})
    with pytest.raises(GuardUnavailable, match="unreadable"):
        await g.check("hello", "input")


async def test_the_timeout_is_in_milliseconds(mocks):
    start = time.monotonic()
    with pytest.raises(GuardUnavailable, match="did not answer within 0.2 s"):
        await guard(mocks, timeout=200).check(f"{HANG} secret-text", "input")
    assert time.monotonic() - start < 2

"""Running guards: all of a phase at once, each with its own fail_open, masks that add up, an audit without text."""

import asyncio

import pytest

from tollgate.plugins.guardrails.guards.base import ALLOW, Verdict
from tollgate.plugins.guardrails.guards.run import check_output, judge

from .scripted import Scripted


async def test_guards_of_a_phase_run_side_by_side():
    # each guard waits for the other to have started: run one after the other, they would time out
    a_started, b_started = asyncio.Event(), asyncio.Event()
    a = Scripted("a", lambda t: ALLOW, wait=b_started, start=a_started)
    b = Scripted("b", lambda t: Verdict(True, ("x",)), wait=a_started, start=b_started)
    out = Scripted("out", lambda t: ALLOW, mode="OUTPUT")
    judgement = await judge([a, b, out], "text", "input")
    assert [o.result for o in judgement.outcomes] == ["pass", "block"] and not out.seen
    assert judgement.categories == ["x"] and judgement.revealed() == []


async def test_fail_open_is_per_guard():
    down_open = Scripted("o", lambda t: None, fail_open=True)
    down_closed = Scripted("c", lambda t: None)
    judgement = await judge([down_open], "t", "input")
    assert not judgement.failed and [o.guard.name for o in judgement.failed_open] == ["o"]
    judgement = await judge([down_open, down_closed], "t", "input")
    assert [o.guard.name for o in judgement.failed] == ["c"]
    assert judgement.audit()[0] == {"name": "o", "phase": "input", "result": "unavailable", "latency_ms":
                                    judgement.audit()[0]["latency_ms"], "fail_open": True}


async def test_several_masks_add_up_and_a_later_guard_may_still_block():
    cards = Scripted("cards", lambda t: Verdict(False, masked=t.replace("4111", "[CARD]")))
    names = Scripted("names", lambda t: Verdict(False, masked=t.replace("Ann", "[NAME]")) if "Ann" in t else ALLOW)
    judgement = await judge([cards, names], "Ann pays 4111", "input")
    assert judgement.masked == "[NAME] pays [CARD]" and names.seen == ["Ann pays 4111", "Ann pays [CARD]"]
    strict = Scripted("strict", lambda t: Verdict(True, ("masked-text",)) if "[CARD]" in t
                      else Verdict(False, masked=t + "!"))
    judgement = await judge([cards, strict], "pays 4111", "input")
    assert judgement.blocked and judgement.masked is None


async def test_output_checks_only_output_guards_and_audits_no_text():
    both = Scripted("both", lambda t: Verdict(True, ("violence",)), mode="BOTH", reveal=True)
    judgement = await check_output([both, Scripted("in", lambda t: ALLOW)], "secret words")
    assert judgement.phase == "output" and judgement.revealed() == ["violence"]
    assert "secret" not in repr(judgement.audit())


async def test_the_timeout_makes_a_hanging_guard_unavailable():
    never = asyncio.Event()
    slow = Scripted("slow", lambda t: ALLOW, wait=never)
    slow.config["timeout"] = 50
    judgement = await judge([slow], "t", "input")
    assert judgement.failed and "did not answer within 0.05 s" in judgement.outcomes[0].error


@pytest.mark.parametrize("mode, phases", [("INPUT", ["input"]), ("OUTPUT", ["output"]),
                                          ("BOTH", ["input", "output"])])
def test_guarding_mode(mode, phases):
    guard = Scripted("g", lambda t: ALLOW, mode=mode)
    assert [p for p in ("input", "output") if guard.guards(p)] == phases

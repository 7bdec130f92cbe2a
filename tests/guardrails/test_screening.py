"""Which text each guard judges (text_source), where a masked text goes back, and the output guards on whole answers
(every choice, tool-call arguments too) and on streams."""

import orjson
import pytest

from tollgate.plugins.guardrails.guards.base import ALLOW, Verdict
from tollgate.plugins.guardrails.screening import GuardsFilter, screen_input
from tollgate.plugins.guardrails.texts import source_texts, split_like
from tollgate.plugins.guardrails.window import WindowedGuardsFilter
from tollgate.relay.pipeline import AnswerBlocked, AnswerRefused

from .guards.scripted import Scripted

BODY = {"model": "m", "messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "first\n\nwith a blank line"},
    {"role": "assistant", "content": "ok"},
    {"role": "user", "content": [{"type": "text", "text": "card 4111"}]}]}


def masker(name="mask", **kw):
    return Scripted(name, lambda t: Verdict(False, masked=t.replace("4111", "[CARD]")) if "4111" in t else ALLOW, **kw)


def test_text_sources():
    assert source_texts(BODY, "concatenate_all_content") == ["You are terse.", "first\n\nwith a blank line", "ok",
                                                             "card 4111"]
    assert source_texts(BODY, "concatenate_user_content") == ["first\n\nwith a blank line", "card 4111"]
    assert source_texts(BODY, "last_message") == ["card 4111"]
    assert source_texts({"prompt": "p"}, "last_message") == ["p"]
    assert source_texts({"input": ["a", "b"]}, "concatenate_user_content") == ["a", "b"]


def test_split_like_keeps_the_pieces_blank_lines():
    pieces = ["a\n\nb", "c"]
    assert split_like(pieces, "A\n\nB\n\nC") == ["A\n\nB", "C"]
    assert split_like(pieces, "A B\n\nC") is None


@pytest.mark.parametrize("source", ["concatenate_all_content", "concatenate_user_content", "last_message"])
async def test_each_guard_judges_its_source_and_the_mask_goes_back_in_place(source):
    guard = masker()
    guard.config["text_source"] = source
    audit: dict = {}
    screened = await screen_input([guard], BODY, audit)
    assert screened.refusal is None and guard.seen == ["\n\n".join(source_texts(BODY, source))]
    assert screened.body["messages"][3]["content"] == [{"type": "text", "text": "card [CARD]"}]
    assert screened.body["messages"][:3] == BODY["messages"][:3] and audit["masked"] is True
    assert BODY["messages"][3]["content"][0]["text"] == "card 4111"               # the original is left alone


async def test_a_mask_that_no_longer_lines_up_is_refused_not_sent_unmasked():
    flat = Scripted("flat", lambda t: Verdict(False, masked=t.replace("\n\n", " ")))
    screened = await screen_input([flat], BODY, {})
    assert screened.refusal is not None and screened.refusal.status == 400
    assert orjson.loads(screened.refusal.body)["error"]["code"] == "content_blocked"


async def test_a_block_wins_over_a_mask_and_over_fail_open():
    audit: dict = {}
    screened = await screen_input([masker(), Scripted("down", lambda t: None, fail_open=True),
                                   Scripted("no", lambda t: Verdict(True, ("x",)))], BODY, audit)
    assert screened.refusal.status == 400 and audit["blocked_by"] == ["no"]
    assert [e["result"] for e in audit["guards"]] == ["mask", "unavailable", "block"]


ANSWER = {"id": "c1", "object": "chat.completion", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "pay 4111"}, "finish_reason": "stop"},
    {"index": 1, "message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "pay", "arguments": '{"card": "4111"}'}}]},
     "finish_reason": "tool_calls"}]}


async def test_every_choice_and_tool_call_arguments_are_judged_and_masked():
    guard = masker(mode="OUTPUT")
    out = await GuardsFilter([guard], {}).answer(ANSWER)
    assert sorted(guard.seen) == ['pay 4111', '{"card": "4111"}']
    assert out["choices"][0]["message"]["content"] == "pay [CARD]"
    assert out["choices"][1]["message"]["tool_calls"][0]["function"] == {"name": "pay",
                                                                         "arguments": '{"card": "[CARD]"}'}


async def test_a_blocked_choice_refuses_the_whole_answer():
    guard = Scripted("g", lambda t: Verdict(True, ("fraud",)) if "card" in t else ALLOW, mode="OUTPUT", reveal=True)
    with pytest.raises(AnswerRefused) as caught:
        await GuardsFilter([guard], {}).answer(ANSWER)
    assert (caught.value.status, caught.value.code) == (400, "content_filter")
    assert caught.value.message == "the answer was blocked by a content guard: fraud"
    down = Scripted("down", lambda t: None, mode="OUTPUT")
    with pytest.raises(AnswerRefused) as caught:
        await GuardsFilter([down], {}).answer(ANSWER)
    assert (caught.value.status, caught.value.code) == (500, "guardrail_failed")


async def test_a_stream_is_judged_with_its_tool_arguments():
    guard = Scripted("g", lambda t: Verdict(True) if "4111" in t else ALLOW, mode="OUTPUT")
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
                  {"index": 0, "id": "t", "function": {"name": "pay", "arguments": '{"card": "41'}}]}}]},
              {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '11"}'}}]},
                            "finish_reason": "tool_calls"}]}]
    stage = WindowedGuardsFilter([guard], {})
    first = await stage.feed(chunks[0])          # the call's id and name go out; its arguments wait
    assert first[0]["choices"][0]["delta"]["tool_calls"][0]["function"] == {"name": "pay", "arguments": ""}
    with pytest.raises(AnswerBlocked):
        await stage.feed(chunks[1])
    assert guard.seen == ['{"card": "4111"}']

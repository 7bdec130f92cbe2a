"""Output guards on streamed and whole answers: the sliding window, the hold-back bound, blocks, masking, fail_open."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tollgate.plugins.guardrails.guards.base import Guard, GuardUnavailable, Verdict
from tollgate.plugins.guardrails.output import OutputGuardsFilter
from tollgate.relay.pipeline import AnswerBlocked, AnswerRefused

TEXT = " ".join(f"word{i}" for i in range(60)) + " the quick brown fox."


class WordGuard(Guard):
    """Blocks a text holding ``word``; records what it was asked; may wait, fail or mask."""

    type = "test"

    def __init__(self, name: str, config: dict[str, Any], word: str = "", delay: float = 0.0,
                 down: bool = False, mask: tuple[str, str] | None = None):
        self.name, self.config = name, config
        self.word, self.delay, self.down, self.mask = word, delay, down, mask
        self.seen: list[str] = []

    async def _check(self, text: str, phase: str) -> Verdict:
        self.seen.append(text)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise GuardUnavailable("down")
        if self.word and self.word in text:
            return Verdict(blocked=True, categories=("violence",))
        if self.mask and self.mask[0] in text:
            return Verdict(blocked=False, masked=text.replace(*self.mask))
        return Verdict(blocked=False)


def chunk(content: str | None = None, finish: str | None = None, role: str | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def pieces(text: str, size: int = 7) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def content(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


async def run(flt: OutputGuardsFilter, parts: list[str]) -> tuple[list[dict[str, Any]], list[int]]:
    """Feeds the parts as a stream; the client's chunks and, after each feed, how many characters were held."""
    out = await flt.feed(chunk("", role="assistant"))
    fed, held = 0, []
    for part in parts:
        out += await flt.feed(chunk(part))
        fed += len(part)
        held.append(fed - len(content(out)))
    out += await flt.feed(chunk(finish="stop"))
    out += await flt.flush()
    return out, held


async def test_a_passing_stream_arrives_whole_and_held_text_stays_within_the_buffer():
    guard = WordGuard("g", {"response_buffer_size": 40})
    flt = OutputGuardsFilter([guard], {})
    out, held = await run(flt, pieces(TEXT))
    assert content(out) == TEXT
    assert max(held) < 40 and out[-1]["choices"][0]["finish_reason"] == "stop"
    # each check saw a piece of the answer at most two windows long, and together they saw all of it
    covered = set()
    for seen in guard.seen:
        start = TEXT.index(seen)
        assert len(seen) <= 80
        covered.update(range(start, start + len(seen)))
    assert covered == set(range(len(TEXT)))


async def test_a_block_mid_stream_lets_out_only_the_windows_that_passed_then_content_filter():
    text = TEXT[:100] + "FORBIDDEN" + TEXT[:100]
    flt = OutputGuardsFilter([WordGuard("g", {"response_buffer_size": 30, "reveal_failure_reason": True},
                                        word="FORBIDDEN")], audit := {})
    out: list[dict[str, Any]] = []
    with pytest.raises(AnswerBlocked) as caught:
        for part in pieces(text):
            out += await flt.feed(chunk(part))
    sent = content(out) + content(caught.value.chunks)
    assert "FORB" not in sent and text.startswith(sent) and len(sent) >= 90 - 30
    end = caught.value.chunks[-1]["choices"][0]
    assert end["finish_reason"] == "content_filter" and end["delta"] == {}
    assert caught.value.code == "response_blocked" and "violence" in caught.value.message
    assert audit["guard_output"] == {"guard": "g", "phase": "output", "action": "block", "categories": ["violence"]}


async def test_a_phrase_across_two_windows_is_seen_whole_thanks_to_the_context():
    text = "a" * 15 + " FORBIDDEN WORDS" + " b" * 20          # the phrase straddles the 30-character boundary
    flt = OutputGuardsFilter([WordGuard("g", {"response_buffer_size": 30}, word="FORBIDDEN WORDS")], {})
    out: list[dict[str, Any]] = []
    with pytest.raises(AnswerBlocked) as caught:
        for part in text:
            out += await flt.feed(chunk(part))
    sent = content(out) + content(caught.value.chunks)
    assert sent == "a" * 15 + " FORBIDDEN "      # the first window (cut after a word); nothing past the block


async def test_windows_end_after_a_word_so_no_part_of_a_blocked_word_goes_out():
    text = "a" * 20 + " FORBIDDEN" + " b" * 30              # the word straddles the 25-character boundary
    flt = OutputGuardsFilter([WordGuard("g", {"response_buffer_size": 25}, word="FORBIDDEN")], {})
    out: list[dict[str, Any]] = []
    with pytest.raises(AnswerBlocked) as caught:
        for part in pieces(text, 5):
            out += await flt.feed(chunk(part))
    assert content(out) + content(caught.value.chunks) == "a" * 20 + " "


async def test_the_end_of_the_stream_is_judged_too():
    flt = OutputGuardsFilter([WordGuard("g", {"response_buffer_size": 500}, word="BAD")], {})
    with pytest.raises(AnswerBlocked) as caught:
        await run(flt, ["fine text, ", "and BAD"])
    assert content(caught.value.chunks) == ""


async def test_guards_run_side_by_side_and_the_first_in_order_decides():
    slow = [WordGuard(f"g{i}", {"response_buffer_size": 50}, delay=0.2) for i in range(3)]
    flt = OutputGuardsFilter(slow, {})
    started = asyncio.get_running_loop().time()
    out = await flt.feed(chunk("x" * 50))
    assert asyncio.get_running_loop().time() - started < 0.35 and content(out) == "x" * 50


@pytest.mark.parametrize("fail_open", [True, False])
async def test_a_guard_that_cannot_judge_follows_fail_open(fail_open: bool):
    audit: dict[str, Any] = {}
    flt = OutputGuardsFilter([WordGuard("svc", {"response_buffer_size": 20, "fail_open": fail_open}, down=True)],
                             audit)
    if fail_open:
        out, _ = await run(flt, pieces(TEXT[:60]))
        assert content(out) == TEXT[:60] and audit["guard_unjudged"] == ["svc"]
        return
    with pytest.raises(AnswerBlocked) as caught:
        await run(flt, pieces(TEXT[:60]))
    assert caught.value.code == "guardrail_failed" and content(caught.value.chunks) == ""
    assert caught.value.chunks[-1]["choices"][0]["finish_reason"] == "content_filter"


async def test_masking_replaces_the_window_text():
    flt = OutputGuardsFilter([WordGuard("g", {"response_buffer_size": 30}, mask=("fox", "***"))], audit := {})
    out, _ = await run(flt, pieces(TEXT[-90:]))
    assert content(out) == TEXT[-90:].replace("fox", "***") and audit["guard_output_masked"] is True


async def test_whole_answers_are_judged_once():
    guard = WordGuard("g", {}, word="BAD")
    flt = OutputGuardsFilter([guard], {})
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "all fine"}}]}
    assert await flt.answer(body) == body and guard.seen == ["all fine"]
    with pytest.raises(AnswerRefused) as caught:
        await flt.answer({"choices": [{"index": 0, "message": {"role": "assistant", "content": "BAD"}}]})
    assert caught.value.status == 400 and not isinstance(caught.value, AnswerBlocked)

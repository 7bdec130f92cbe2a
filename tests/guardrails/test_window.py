"""Output guards on streams: the sliding window, the hold-back bound, blocks, masking, fail_open, tool arguments."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tollgate.plugins.guardrails.guards.base import Guard, GuardUnavailable, Verdict
from tollgate.plugins.guardrails.window import WindowedGuardsFilter
from tollgate.relay.pipeline import AnswerBlocked

TEXT = " ".join(f"word{i}" for i in range(60)) + " the quick brown fox."


class WordGuard(Guard):
    """Blocks a text holding ``word``; records what it was asked; may wait, fail or mask."""

    type = "test"

    def __init__(self, name: str, config: dict[str, Any], word: str = "", delay: float = 0.0,
                 down: bool = False, mask: tuple[str, str] | None = None):
        super().__init__(name, {"guarding_mode": "OUTPUT", **config})
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


async def run(flt: WindowedGuardsFilter, parts: list[str]) -> tuple[list[dict[str, Any]], list[int]]:
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
    flt = WindowedGuardsFilter([guard], {})
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
    flt = WindowedGuardsFilter([WordGuard("g", {"response_buffer_size": 30, "reveal_failure_reason": True},
                                        word="FORBIDDEN")], audit := {})
    out: list[dict[str, Any]] = []
    with pytest.raises(AnswerBlocked) as caught:
        for part in pieces(text):
            out += await flt.feed(chunk(part))
    sent = content(out) + content(caught.value.chunks)
    assert "FORB" not in sent and text.startswith(sent) and len(sent) >= 90 - 30
    end = caught.value.chunks[-1]["choices"][0]
    assert end["finish_reason"] == "content_filter" and end["delta"] == {}
    assert caught.value.code == "content_filter" and caught.value.message.endswith(": violence")
    assert audit["blocked_by"] == ["g"] and audit["guards"][-1]["categories"] == ["violence"]
    assert audit["output_windows"] >= 4


async def test_a_phrase_across_two_windows_is_seen_whole_thanks_to_the_context():
    text = "a" * 15 + " FORBIDDEN WORDS" + " b" * 20          # the phrase straddles the 30-character boundary
    flt = WindowedGuardsFilter([WordGuard("g", {"response_buffer_size": 30}, word="FORBIDDEN WORDS")], {})
    out: list[dict[str, Any]] = []
    with pytest.raises(AnswerBlocked) as caught:
        for part in text:
            out += await flt.feed(chunk(part))
    sent = content(out) + content(caught.value.chunks)
    assert sent == "a" * 15 + " FORBIDDEN "      # the first window (cut after a word); nothing past the block


async def test_windows_end_after_a_word_so_no_part_of_a_blocked_word_goes_out():
    text = "a" * 20 + " FORBIDDEN" + " b" * 30              # the word straddles the 25-character boundary
    flt = WindowedGuardsFilter([WordGuard("g", {"response_buffer_size": 25}, word="FORBIDDEN")], {})
    out: list[dict[str, Any]] = []
    with pytest.raises(AnswerBlocked) as caught:
        for part in pieces(text, 5):
            out += await flt.feed(chunk(part))
    assert content(out) + content(caught.value.chunks) == "a" * 20 + " "


async def test_the_end_of_the_stream_is_judged_too():
    flt = WindowedGuardsFilter([WordGuard("g", {"response_buffer_size": 500}, word="BAD")], {})
    with pytest.raises(AnswerBlocked) as caught:
        await run(flt, ["fine text, ", "and BAD"])
    assert content(caught.value.chunks) == ""


async def test_guards_run_side_by_side_and_the_first_in_order_decides():
    slow = [WordGuard(f"g{i}", {"response_buffer_size": 50}, delay=0.2) for i in range(3)]
    flt = WindowedGuardsFilter(slow, {})
    started = asyncio.get_running_loop().time()
    out = await flt.feed(chunk("x" * 50))
    assert asyncio.get_running_loop().time() - started < 0.35 and content(out) == "x" * 50


@pytest.mark.parametrize("fail_open", [True, False])
async def test_a_guard_that_cannot_judge_follows_fail_open(fail_open: bool):
    audit: dict[str, Any] = {}
    flt = WindowedGuardsFilter([WordGuard("svc", {"response_buffer_size": 20, "fail_open": fail_open}, down=True)],
                             audit)
    if fail_open:
        out, _ = await run(flt, pieces(TEXT[:60]))
        assert content(out) == TEXT[:60] and audit["output_windows"] >= 3
        assert [g["result"] for g in audit["guards"]] == ["unavailable"] and audit["guards"][0]["fail_open"]
        return
    with pytest.raises(AnswerBlocked) as caught:
        await run(flt, pieces(TEXT[:60]))
    assert caught.value.code == "guardrail_failed" and content(caught.value.chunks) == ""
    assert caught.value.chunks[-1]["choices"][0]["finish_reason"] == "content_filter"


async def test_masking_replaces_the_window_text():
    flt = WindowedGuardsFilter([WordGuard("g", {"response_buffer_size": 30}, mask=("fox", "***"))], audit := {})
    out, _ = await run(flt, pieces(TEXT[-90:]))
    assert content(out) == TEXT[-90:].replace("fox", "***") and audit["masked"] is True


async def test_tool_call_arguments_are_windowed_too():
    flt = WindowedGuardsFilter([WordGuard("g", {"response_buffer_size": 20}, word="rm -rf")], {})
    start = {"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "finish_reason": None, "delta": {
        "role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                             "function": {"name": "shell", "arguments": ""}}]}}]}
    out = await flt.feed(start)
    assert out[0]["choices"][0]["delta"]["tool_calls"][0]["function"] == {"name": "shell", "arguments": ""}

    def args(piece: str) -> dict[str, Any]:
        return {"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "finish_reason": None,
                "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}}]}
    sent = ""
    with pytest.raises(AnswerBlocked) as caught:
        for piece in pieces('{"command": "echo hello there; rm -rf / now"}', 4):
            for c in await flt.feed(args(piece)):
                sent += c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
    assert "rm" not in sent and sent and caught.value.chunks[-1]["choices"][0]["finish_reason"] == "content_filter"


async def test_completions_and_several_choices_have_their_own_windows():
    flt = WindowedGuardsFilter([WordGuard("g", {"response_buffer_size": 20}, word="BAD")], {})

    def text_chunk(index: int, text: str, finish: str | None = None) -> dict[str, Any]:
        return {"id": "x", "object": "text_completion", "choices": [
            {"index": index, "text": text, "logprobs": None, "finish_reason": finish}]}
    out = []
    for piece in pieces("first choice, all of it fine here.", 6):
        out += await flt.feed(text_chunk(0, piece))
        out += await flt.feed(text_chunk(1, piece.upper()))
    out += await flt.feed(text_chunk(0, "", "stop"))
    by_choice = {0: "", 1: ""}
    for c in out:
        for choice in c["choices"]:
            by_choice[choice["index"]] += choice["text"]
    assert by_choice[0] == "first choice, all of it fine here."
    with pytest.raises(AnswerBlocked) as caught:
        await flt.feed(text_chunk(1, " BAD", "stop"))
    end = caught.value.chunks[-1]["choices"]
    assert [(c["index"], c["finish_reason"], c["text"]) for c in end] == [(1, "content_filter", "")]   # 0 stopped
    assert "BAD" not in by_choice[1] + "".join(ch.get("text", "") for c in caught.value.chunks
                                               for ch in c["choices"])

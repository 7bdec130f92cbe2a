"""Output guards on the answer: a whole answer is judged once; a stream is judged over a sliding window as it arrives.

The window rule, per text of the stream (each choice's content, or completion text):

- Text is released to the client only after every output guard has passed a window that contains it. At most
  ``response_buffer_size`` characters (the smallest of the output guards') wait for a verdict: the reading of the
  provider's stream pauses while a window is judged, so nothing else piles up behind it.
- A window is the next ``response_buffer_size`` characters (up to its last space, when that keeps at least half of
  it, so that words are not cut), or what is left when the choice or the stream ends.
  Each guard sees the window plus the ``response_buffer_size`` characters before it (already passed), so a phrase
  no longer than the window is seen whole by at least one check even when it straddles two windows.
- The windows of one provider read, and the guards of each window, are judged side by side; windows are released in
  order up to the first one blocked.
- A block: the client has the windows that passed and nothing after; the stream ends with a chunk whose
  finish_reason is ``content_filter``, the error event, then ``[DONE]`` (`AnswerBlocked`). A guard that cannot judge
  follows its ``fail_open``: passes unchecked (audited), or ends the stream the same way (``guardrail_failed``).
- A guard that masks a window replaces the window's text when its masked text keeps the context unchanged (the
  context is already out); a masking it cannot apply that way blocks.

Tool-call arguments are not judged here (they are JSON for a tool, not text for a reader).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Sequence

from ... import log
from ...relay.pipeline import AnswerBlocked, AnswerFilter, AnswerRefused, Chunk
from .guards.base import Guard, GuardUnavailable, Verdict

logger = log.get("guardrails")

DEFAULT_BUFFER = 100          # Kong's response_buffer_size default, in characters
Slot = tuple[int, str]        # (choice index, "content" | "text")


@dataclass(frozen=True)
class Judgement:
    """What the guards said of one text, together: blocked by whom and why, or passed (maybe masked)."""

    blocked_by: Guard | None = None
    categories: tuple[str, ...] = ()
    failed: bool = False              # blocked because a guard could not judge and does not fail open
    masked: str | None = None
    masked_by: Guard | None = None
    unjudged: tuple[str, ...] = ()    # guards that could not judge and failed open


async def judge(guards: Sequence[Guard], text: str, phase: str) -> Judgement:
    """Every guard on ``text`` side by side; the first blocking guard (in config order) decides."""
    if len(guards) == 1:
        results: list[Any] = [await _one(guards[0], text, phase)]
    else:
        results = await asyncio.gather(*(_one(g, text, phase) for g in guards))
    masked: tuple[str, Guard] | None = None
    unjudged = []
    for guard, result in zip(guards, results):
        if isinstance(result, GuardUnavailable):
            if not guard.fail_open:
                return Judgement(blocked_by=guard, failed=True)
            unjudged.append(guard.name)
        elif result.blocked:
            return Judgement(blocked_by=guard, categories=result.categories)
        elif result.masked is not None and masked is None:
            masked = (result.masked, guard)
    if masked is None:
        return Judgement(unjudged=tuple(unjudged))
    return Judgement(masked=masked[0], masked_by=masked[1], unjudged=tuple(unjudged))


async def _one(guard: Guard, text: str, phase: str) -> Verdict | GuardUnavailable:
    try:
        return await guard.check(text, phase)  # type: ignore[arg-type]
    except GuardUnavailable as exc:
        log.event(logger, "guard could not judge", logging.WARNING, guard=guard.name, phase=phase, error=str(exc),
                  fail_open=guard.fail_open)
        return exc


def buffer_size(guards: Sequence[Guard]) -> int:
    return min(int(g.config.get("response_buffer_size") or DEFAULT_BUFFER) for g in guards)


class _Text:
    """One text of the stream: what passed (its tail is the next window's context) and what waits."""

    def __init__(self) -> None:
        self.context = ""
        self.pending = ""


class OutputGuardsFilter(AnswerFilter):
    def __init__(self, guards: Sequence[Guard], audit: dict[str, Any]):
        self.guards = list(guards)
        self.audit = audit
        self.size = buffer_size(self.guards)
        self.texts: dict[Slot, _Text] = {}
        self.last: Chunk = {}
        self.choices: set[int] = set()

    # -- verdicts -----------------------------------------------------------------------------------------------

    def _refusal(self, judgement: Judgement, chunks: list[Chunk] | None) -> AnswerRefused:
        guard = judgement.blocked_by
        assert guard is not None
        outcome = {"guard": guard.name, "phase": "output", "action": "block"}
        if judgement.failed:
            self.audit["guard_output"] = {**outcome, "error": "unavailable"}
            message, status, code, type_ = "a guardrail could not check the answer; it was stopped", 500, \
                "guardrail_failed", "server_error"
        else:
            self.audit["guard_output"] = {**outcome, "categories": list(judgement.categories)}
            message, status, code, type_ = "the answer was blocked by a guardrail", 400, "response_blocked", \
                "invalid_request_error"
            if judgement.categories and guard.config.get("reveal_failure_reason"):
                message += ": " + ", ".join(judgement.categories)
        if chunks is None:
            return AnswerRefused(status, message, code, type_)
        return AnswerBlocked(status, message, code, type_, chunks)

    def _noted(self, judgement: Judgement) -> None:
        if judgement.unjudged:
            unjudged = self.audit.setdefault("guard_unjudged", [])
            unjudged.extend(n for n in judgement.unjudged if n not in unjudged)

    async def _windows(self, windows: list[tuple[Slot, str, str]]) -> tuple[dict[Slot, str], Judgement | None]:
        """Judges ``(slot, context, window)`` side by side: the text each slot may release, and the first block."""
        judgements = await asyncio.gather(*(judge(self.guards, context + window, "output")
                                            for _, context, window in windows))
        released: dict[Slot, str] = {}
        stopped: set[Slot] = set()
        block: Judgement | None = None
        for (slot, context, window), judgement in zip(windows, judgements):
            if slot in stopped:
                continue
            self._noted(judgement)
            if judgement.blocked_by is None and judgement.masked is not None:
                if judgement.masked.startswith(context):
                    window = judgement.masked[len(context):]
                    self.audit["guard_output_masked"] = True
                else:
                    judgement = Judgement(blocked_by=judgement.masked_by, categories=("unappliable_mask",))
            if judgement.blocked_by is not None:
                stopped.add(slot)
                block = block or judgement
                continue
            released[slot] = released.get(slot, "") + window
            text = self.texts[slot]
            text.context = (text.context + window)[-self.size:]
        return released, block

    def _take(self, slot: Slot, piece: str, final: bool) -> list[tuple[Slot, str, str]]:
        """Adds ``piece`` to the slot's text; the windows now due (all that is left when ``final``)."""
        text = self.texts.setdefault(slot, _Text())
        text.pending += piece
        windows = []
        context = text.context
        while len(text.pending) >= self.size or (final and text.pending):
            cut = _word_end(text.pending, self.size) if len(text.pending) >= self.size else len(text.pending)
            window, text.pending = text.pending[:cut], text.pending[cut:]
            windows.append((slot, context, window))
            context = (context + window)[-self.size:]
        return windows

    # -- streams ------------------------------------------------------------------------------------------------

    async def feed(self, chunk: Chunk) -> list[Chunk]:
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return [chunk]
        self.last = chunk
        windows: list[tuple[Slot, str, str]] = []
        for choice in choices:
            slot = _slot(choice)
            if slot is None:
                continue
            self.choices.add(slot[0])
            windows += self._take(slot, _text_of(choice, slot), choice.get("finish_reason") is not None)
        released, block = await self._windows(windows) if windows else ({}, None)
        out_choices = []
        for choice in choices:
            slot = _slot(choice)
            if slot is None:
                out_choices.append(choice)
                continue
            text = released.get(slot, "")
            if not text and _only_text(choice, slot):
                continue                                         # nothing of it may go out yet
            out_choices.append(_with_text(choice, slot, text))
        if block is not None:
            passed = [{**chunk, "choices": [_unfinished(c) for c in out_choices]}] if out_choices else []
            raise self._refusal(block, passed + [self._filtered_end()])
        if not out_choices and not chunk.get("usage"):
            return []
        return [{**chunk, "choices": out_choices}]

    async def flush(self) -> list[Chunk]:
        windows = [w for slot in list(self.texts) for w in self._take(slot, "", True)]
        if not windows:
            return []
        released, block = await self._windows(windows)
        tails = [_tail_choice(slot, text) for slot, text in sorted(released.items()) if text]
        base = {k: self.last[k] for k in ("id", "object", "created", "model") if k in self.last}
        passed = [{**base, "choices": tails}] if tails else []
        if block is not None:
            raise self._refusal(block, passed + [self._filtered_end()])
        return passed

    def _filtered_end(self) -> Chunk:
        """The chunk that tells the client each choice ended because content was filtered."""
        base = {k: self.last[k] for k in ("id", "object", "created", "model") if k in self.last}
        completion = any(k[1] == "text" for k in self.texts)
        choices = []
        for index in sorted(self.choices) or [0]:
            if completion:
                choices.append({"index": index, "text": "", "logprobs": None, "finish_reason": "content_filter"})
            else:
                choices.append({"index": index, "delta": {}, "logprobs": None, "finish_reason": "content_filter"})
        return {**base, "choices": choices}

    # -- whole answers ------------------------------------------------------------------------------------------

    async def answer(self, body: Chunk) -> Chunk:
        choices = body.get("choices")
        if not isinstance(choices, list):
            return body
        places = []
        for k, choice in enumerate(choices):
            if isinstance(choice.get("text"), str):
                places.append((k, "text", choice["text"]))
            elif isinstance((choice.get("message") or {}).get("content"), str):
                places.append((k, "content", choice["message"]["content"]))
        judgements = await asyncio.gather(*(judge(self.guards, text, "output") for _, _, text in places))
        out = list(choices)
        for (k, kind, _), judgement in zip(places, judgements):
            self._noted(judgement)
            if judgement.blocked_by is not None:
                raise self._refusal(judgement, None)
            if judgement.masked is not None:
                self.audit["guard_output_masked"] = True
                choice = out[k]
                out[k] = {**choice, "text": judgement.masked} if kind == "text" else \
                    {**choice, "message": {**choice["message"], "content": judgement.masked}}
        return {**body, "choices": out}


def _word_end(text: str, size: int) -> int:
    """Where a full window ends: after its last space when that keeps at least half of it (a word is then judged
    whole in one window), else at ``size``."""
    space = text.rfind(" ", 0, size)
    return space + 1 if space >= size // 2 else size


def _slot(choice: Any) -> Slot | None:
    if not isinstance(choice, dict):
        return None
    index = choice.get("index", 0)
    if isinstance(choice.get("text"), str):
        return (index, "text")
    if isinstance(choice.get("delta"), dict):
        return (index, "content")
    return None


def _text_of(choice: dict[str, Any], slot: Slot) -> str:
    if slot[1] == "text":
        return choice["text"]
    content = choice["delta"].get("content")
    return content if isinstance(content, str) else ""


def _only_text(choice: dict[str, Any], slot: Slot) -> bool:
    """The choice carries nothing but (held) text: leaving it out loses nothing."""
    if choice.get("finish_reason") is not None or choice.get("logprobs") is not None:
        return False
    if slot[1] == "text":
        return True
    return set(choice["delta"]) <= {"content"}


def _with_text(choice: dict[str, Any], slot: Slot, text: str) -> dict[str, Any]:
    if slot[1] == "text":
        return {**choice, "text": text}
    delta = choice["delta"]
    if "content" not in delta and not text:
        return choice
    return {**choice, "delta": {**delta, "content": text}}


def _unfinished(choice: dict[str, Any]) -> dict[str, Any]:
    """A choice let out before a block: its own finish is replaced by the ``content_filter`` end."""
    return {**choice, "finish_reason": None} if choice.get("finish_reason") is not None else choice


def _tail_choice(slot: Slot, text: str) -> dict[str, Any]:
    if slot[1] == "text":
        return {"index": slot[0], "text": text, "logprobs": None, "finish_reason": None}
    return {"index": slot[0], "delta": {"content": text}, "logprobs": None, "finish_reason": None}

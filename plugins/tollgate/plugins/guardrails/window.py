"""The output guards on a streamed answer: judged over a sliding window as it arrives, released as it passes.

The window rule, for each text of the stream (a choice's content or completion text, each tool call's arguments):

- Text is released to the client only after every output guard has passed a window that contains it. At most
  ``response_buffer_size`` characters (the smallest of the output guards') wait for a verdict: reading the
  provider's stream pauses while a window is judged, so nothing else piles up behind it.
- A window is the next ``response_buffer_size`` characters, cut after its last space when that keeps at least half
  of it (so a word is judged whole in one window), or what is left when the choice or the stream ends.
- Each guard sees the window plus the ``response_buffer_size`` characters before it (already passed), so a phrase
  no longer than the window is seen whole by one check even when it straddles two windows.
- The windows due after one provider read are judged side by side (as are the guards of each window, guards/run.py)
  and released in order up to the first that is not passed.
- A block: the client has the windows that passed and nothing after them. The stream ends with a chunk whose
  finish_reason is ``content_filter``, then the error event (400 ``content_filter``; 500 ``guardrail_failed`` when
  a guard that does not fail open could not judge), then ``[DONE]`` (`AnswerBlocked`).
- A guard that masks a window: the window's masked text goes out when the guard kept the context unchanged (the
  context is already out); a mask that cannot be placed that way blocks.

Audit: the number of windows judged (``output_windows``) and the guards' outcomes (guards/run.py) of the windows
that did not simply pass (the block, a mask, the first guard that failed open).
"""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from ...relay.pipeline import AnswerBlocked, AnswerRefused, Chunk
from .guards.base import Guard
from .guards.run import Judgement, check_output
from .screening import GuardsFilter, record, refusal
from .texts import answer_texts

DEFAULT_BUFFER = 100                    # Kong's response_buffer_size default, in characters
Slot = tuple[int, str, int]             # (choice index, "content" | "text" | "tool", tool call index)


def buffer_size(guards: Sequence[Guard]) -> int:
    return min(int(g.config.get("response_buffer_size") or DEFAULT_BUFFER) for g in guards)


class _Text:
    """One text of the stream: the tail of what passed (the next window's context), and what waits."""

    __slots__ = ("context", "pending")

    def __init__(self) -> None:
        self.context = ""
        self.pending = ""


class WindowedGuardsFilter(GuardsFilter):
    """`GuardsFilter` (whole answers) with streams judged window by window."""

    def __init__(self, guards: Sequence[Guard], audit: dict[str, Any]):
        super().__init__(guards, audit)
        self.size = buffer_size(self.guards)
        self.texts: dict[Slot, _Text] = {}
        self.choices: set[int] = set()
        self.finished: set[int] = set()           # choices whose own finish went out
        self.last: Chunk = {}
        self.windows = 0
        self.noted_open = False

    # -- windows ------------------------------------------------------------------------------------------------

    def _take(self, slot: Slot, piece: str, final: bool) -> list[tuple[Slot, str, str]]:
        """Adds ``piece`` to the slot's text; the windows now due, each with its context (all when ``final``)."""
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

    async def _judge(self, windows: list[tuple[Slot, str, str]]) -> tuple[dict[Slot, str], AnswerRefused | None]:
        """The windows judged side by side: the text each slot may release, and the refusal of the first window
        that did not pass."""
        judgements: list[Judgement] = list(await asyncio.gather(*(check_output(self.guards, context + window)
                                                                  for _, context, window in windows)))
        self.windows += len(windows)
        self.audit["output_windows"] = self.windows
        released: dict[Slot, str] = {}
        for (slot, context, window), judgement in zip(windows, judgements):
            refused = refusal([judgement])
            masked = refused is None and judgement.masked is not None and judgement.masked != context + window
            if masked:
                if not judgement.masked.startswith(context):  # type: ignore[union-attr]
                    self.audit.update(action="block", masking="unplaceable")
                    refused = AnswerRefused(400, "the answer was blocked by a content guard: its masked text could "
                                            "not be applied", "content_filter")
                else:
                    window = judgement.masked[len(context):]  # type: ignore[index]
                    self.audit["masked"] = True
            self._note(judgement, refused is not None, masked)
            if refused is not None:
                return released, refused
            released[slot] = released.get(slot, "") + window
            text = self.texts[slot]
            text.context = (text.context + window)[-self.size:]
        return released, None

    def _note(self, judgement: Judgement, stopped: bool, masked: bool) -> None:
        """Only what did not simply pass goes in the audit (one entry per window would flood the log line)."""
        if stopped or masked or (judgement.failed_open and not self.noted_open):
            self.noted_open = self.noted_open or bool(judgement.failed_open)
            record(self.audit, [judgement])

    def _blocked(self, refused: AnswerRefused, passed: list[Chunk]) -> AnswerBlocked:
        return AnswerBlocked(refused.status, refused.message, refused.code, refused.type,
                             passed + [self._filtered_end()])

    def _filtered_end(self) -> Chunk:
        """The chunk that tells the client each choice still open ended because content was filtered."""
        base = {k: self.last[k] for k in ("id", "object", "created", "model") if k in self.last}
        completion = any(slot[1] == "text" for slot in self.texts)
        choices = [{"index": i, "text": "", "logprobs": None, "finish_reason": "content_filter"} if completion else
                   {"index": i, "delta": {}, "logprobs": None, "finish_reason": "content_filter"}
                   for i in sorted(self.choices - self.finished) or sorted(self.choices) or [0]]
        return {**base, "choices": choices}

    # -- the stream ---------------------------------------------------------------------------------------------

    async def feed(self, chunk: Chunk) -> list[Chunk]:
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return [chunk]
        self.last = chunk
        windows: list[tuple[Slot, str, str]] = []
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            self.choices.add(index)
            for (kind, k), piece in answer_texts(choice, "delta"):
                windows += self._take((index, kind, k), piece, False)
            if choice.get("finish_reason") is not None:        # the choice is over: the rest of its texts is due
                for slot in [s for s in self.texts if s[0] == index]:
                    windows += self._take(slot, "", True)
        released, refused = await self._judge(windows) if windows else ({}, None)
        out_choices = []
        for choice in choices:
            if not isinstance(choice, dict):
                out_choices.append(choice)
                continue
            new, held_only = _released(choice, released)
            if not held_only:
                out_choices.append(new)
        if refused is not None:
            passed = [{**chunk, "choices": [_unfinished(c) for c in out_choices]}] if out_choices else []
            raise self._blocked(refused, passed)
        self.finished.update(c.get("index", 0) for c in out_choices
                             if isinstance(c, dict) and c.get("finish_reason") is not None)
        if not out_choices and not chunk.get("usage"):
            return []
        return [{**chunk, "choices": out_choices}]

    async def flush(self) -> list[Chunk]:
        windows = [w for slot in list(self.texts) for w in self._take(slot, "", True)]
        if not windows:
            return []
        released, refused = await self._judge(windows)
        tails: dict[int, dict[str, Any]] = {}
        for (index, kind, k), text in sorted(released.items()):
            if not text:
                continue
            if kind == "text":
                tails[index] = {"index": index, "text": text, "logprobs": None, "finish_reason": None}
                continue
            delta = tails.setdefault(index, {"index": index, "delta": {}, "logprobs": None,
                                             "finish_reason": None})["delta"]
            if kind == "content":
                delta["content"] = text
            else:
                delta.setdefault("tool_calls", []).append({"index": k, "function": {"arguments": text}})
        base = {k: self.last[k] for k in ("id", "object", "created", "model") if k in self.last}
        passed = [{**base, "choices": [tails[i] for i in sorted(tails)]}] if tails else []
        if refused is not None:
            raise self._blocked(refused, passed)
        return passed


def _word_end(text: str, size: int) -> int:
    """Where a full window ends: after its last space when that keeps at least half of it, else at ``size``."""
    space = text.rfind(" ", 0, size)
    return space + 1 if space >= size // 2 else size




def _released(choice: dict[str, Any], released: dict[Slot, str]) -> tuple[dict[str, Any], bool]:
    """The choice with its texts replaced by what may go out now (at a finish, that may include text held from
    earlier chunks), and whether it carried nothing but held text (then it is left out)."""
    index = choice.get("index", 0)
    plain = choice.get("finish_reason") is None and choice.get("logprobs") is None
    if isinstance(choice.get("text"), str):
        text = released.pop((index, "text", 0), "")
        return {**choice, "text": text}, plain and not text
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return choice, False
    new = dict(delta)
    held_only = plain and set(delta) <= {"content", "tool_calls"}
    content = released.pop((index, "content", 0), "")
    if "content" in delta or content:
        new["content"] = content
        held_only = held_only and not content
    calls = []
    for call in delta.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            arguments = released.pop((index, "tool", call.get("index", 0)), "")
            held_only = held_only and not arguments and not (set(call) - {"index", "function"}) \
                and set(function) == {"arguments"}
            call = {**call, "function": {**function, "arguments": arguments}}
        else:
            held_only = False
        calls.append(call)
    for (i, kind, k) in [slot for slot in released if slot[0] == index and slot[1] == "tool"]:
        calls.append({"index": k, "function": {"arguments": released.pop((i, kind, k))}})
    if calls:
        new["tool_calls"] = calls
    return {**choice, "delta": new}, held_only


def _unfinished(choice: dict[str, Any]) -> dict[str, Any]:
    """A choice let out before a block: its own finish gives way to the ``content_filter`` end."""
    return {**choice, "finish_reason": None} if choice.get("finish_reason") is not None else choice

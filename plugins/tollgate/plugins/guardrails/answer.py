"""The guardrails' answer filter: PII the model wrote is redacted (``pii.mode`` OUTPUT/BOTH), then this request's
placeholders are restored (``pii.restore``), in whole answers and in streams.

Scanning comes before restoring, so the values the client sent come back as they were and are not taken for the
model's own PII. Every text of a chunk (each choice's content or completion text, each tool call's arguments) has
its own stages (pii/stream.py). Chunks are copied before they change: a filter nearer the provider (the cache fill)
may keep the provider's chunk. A chunk whose only text is held back is left out, and the held text goes out with
the next piece of the same text, with the choice's finish, or at the end of the stream.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...relay.pipeline import AnswerFilter, AnswerRefused, Chunk
from .pii.pool import AnalyzerFailed
from .pii.redact import PiiBlocked, Redactor, Vault
from .pii.stream import OutputScan, Restore

if TYPE_CHECKING:
    from .pii.engine import PiiEngine

Slot = tuple[int, str, int]        # (choice index, "content" | "text" | "tool", tool call index)


@dataclass
class OutputRules:
    """What the answer side needs from the policy's config."""

    engine: PiiEngine
    redactor: Redactor
    lookbehind: int
    fail_open: bool


class _Stages:
    """One text's way through the scan and the restore."""

    def __init__(self, scan: OutputScan | None, restore: Restore | None):
        self.scan, self.restore = scan, restore

    async def push(self, text: str) -> str:
        if self.scan is not None:
            text = await self.scan.push(text)
        return self.restore.push(text) if self.restore is not None else text

    async def end(self) -> str:
        text = await self.scan.end() if self.scan is not None else ""
        if self.restore is not None:
            text = self.restore.push(text) + self.restore.end()
        return text


class GuardrailsFilter(AnswerFilter):
    def __init__(self, vault: Vault | None, output: OutputRules | None, audit: dict[str, Any]):
        self.vault, self.output, self.audit = vault, output, audit
        self.found: Counter[str] = Counter()
        self.stages: dict[Slot, _Stages] = {}
        self.last: Chunk = {}
        self.unchecked = False

    # -- one text ---------------------------------------------------------------------------------------------------

    def _stages(self, slot: Slot) -> _Stages:
        stages = self.stages.get(slot)
        if stages is None:
            scan = None
            if self.output is not None and not self.unchecked:
                scan = OutputScan(self.output.engine, self.output.redactor, self.output.lookbehind, self.found)
            restore = Restore(self.vault, json_string=slot[1] == "tool") if self.vault else None
            stages = self.stages[slot] = _Stages(scan, restore)
        return stages

    async def _guarded(self, call: Any) -> str:
        """Runs one scan step, turning analyzer trouble into the route's choice: refuse, or pass unchecked."""
        try:
            return await call
        except PiiBlocked as exc:
            self._note()
            raise AnswerRefused(400, "the answer contains personal data this route does not return: "
                                + ", ".join(exc.entities), "response_blocked") from None
        except AnalyzerFailed:
            self.audit["pii_error"] = "analyzer_failed"
            if self.output is None or not self.output.fail_open:
                raise AnswerRefused(500, "the PII analyzer failed on the answer; it was not sent",
                                    "guardrail_failed", "server_error") from None
            self.unchecked = True
            raise

    async def _push(self, slot: Slot, text: str) -> str:
        stages = self._stages(slot)
        try:
            return await self._guarded(stages.push(text))
        except AnalyzerFailed:                         # fail_open: what the scan held goes on unchecked
            return self._unchecked(stages, text)

    async def _end(self, slot: Slot) -> str:
        stages = self.stages.pop(slot, None)
        if stages is None:
            return ""
        try:
            return await self._guarded(stages.end())
        except AnalyzerFailed:
            return self._unchecked(stages, "")

    @staticmethod
    def _unchecked(stages: _Stages, text: str) -> str:
        held = ""
        if stages.scan is not None:
            held, stages.scan.pending = stages.scan.pending, ""
            stages.scan = None
        return stages.restore.push(held + text) if stages.restore is not None else held + text

    def _note(self) -> None:
        if self.found:
            self.audit["pii_output"] = dict(self.found)

    # -- streams ----------------------------------------------------------------------------------------------------

    async def feed(self, chunk: Chunk) -> list[Chunk]:
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return [chunk]
        self.last = chunk
        out_choices, held_only = [], True
        for choice in choices:
            new, only_text = await self._choice(choice)
            out_choices.append(new)
            held_only = held_only and only_text and not _has_text(new)
        self._note()
        if held_only and not chunk.get("usage"):
            return []
        return [{**chunk, "choices": out_choices}]

    async def _choice(self, choice: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The choice with its texts passed through, and whether it carried nothing but text."""
        index = choice.get("index", 0)
        finished = choice.get("finish_reason") is not None
        only_text = not finished and choice.get("logprobs") is None
        if isinstance(choice.get("text"), str):                                   # completions
            text = await self._push((index, "text", 0), choice["text"])
            if finished:
                text += await self._end((index, "text", 0))
            return {**choice, "text": text}, only_text
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return choice, False
        new = dict(delta)
        only_text = only_text and set(delta) <= {"content", "tool_calls", "role"} and not delta.get("role")
        if isinstance(delta.get("content"), str):
            new["content"] = await self._push((index, "content", 0), delta["content"])
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            new_calls = []
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    only_text = only_text and not call.get("id") and not function.get("name")
                    arguments = await self._push((index, "tool", call.get("index", 0)), function["arguments"])
                    call = {**call, "function": {**function, "arguments": arguments}}
                else:
                    only_text = False
                new_calls.append(call)
            new["tool_calls"] = new_calls
        if finished:
            await self._finish_choice(index, new)
        return {**choice, "delta": new}, only_text

    async def _finish_choice(self, index: int, delta: dict[str, Any]) -> None:
        """A choice's finish: what its texts still hold goes out in this chunk."""
        for slot in [s for s in self.stages if s[0] == index]:
            tail = await self._end(slot)
            if not tail:
                continue
            if slot[1] == "content":
                delta["content"] = (delta.get("content") or "") + tail
            else:
                calls = delta.setdefault("tool_calls", [])
                calls.append({"index": slot[2], "function": {"arguments": tail}})

    async def flush(self) -> list[Chunk]:
        """The end of the stream: whatever is still held, as one last chunk per choice."""
        tails: dict[int, dict[str, Any]] = {}
        for slot in list(self.stages):
            tail = await self._end(slot)
            if not tail:
                continue
            index, kind, call = slot
            if kind == "text":
                tails[index] = {"index": index, "text": tail, "finish_reason": None}
                continue
            delta = tails.setdefault(index, {"index": index, "delta": {}, "finish_reason": None})["delta"]
            if kind == "content":
                delta["content"] = tail
            else:
                delta.setdefault("tool_calls", []).append({"index": call, "function": {"arguments": tail}})
        self._note()
        if not tails:
            return []
        base = {k: self.last[k] for k in ("id", "object", "created", "model") if k in self.last}
        return [{**base, "choices": [tails[i] for i in sorted(tails)]}]

    # -- whole answers ----------------------------------------------------------------------------------------------

    async def answer(self, body: Chunk) -> Chunk:
        choices = body.get("choices")
        if not isinstance(choices, list):
            return body
        out = []
        for choice in choices:
            index = choice.get("index", 0)
            if isinstance(choice.get("text"), str):
                out.append({**choice, "text": await self._whole((index, "text", 0), choice["text"])})
                continue
            message = choice.get("message")
            if not isinstance(message, dict):
                out.append(choice)
                continue
            new = dict(message)
            if isinstance(message.get("content"), str):
                new["content"] = await self._whole((index, "content", 0), message["content"])
            if isinstance(message.get("tool_calls"), list):
                new["tool_calls"] = [await self._whole_call(index, k, c) for k, c in enumerate(message["tool_calls"])]
            out.append({**choice, "message": new})
        self._note()
        return {**body, "choices": out}

    async def _whole(self, slot: Slot, text: str) -> str:
        return await self._push(slot, text) + await self._end(slot)

    async def _whole_call(self, index: int, k: int, call: Any) -> Any:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
            return call
        arguments = await self._whole((index, "tool", k), function["arguments"])
        return {**call, "function": {**function, "arguments": arguments}}


def _has_text(choice: dict[str, Any]) -> bool:
    if choice.get("text"):
        return True
    delta = choice.get("delta") or {}
    if delta.get("content"):
        return True
    calls = [c for c in delta.get("tool_calls") or [] if isinstance(c, dict)]
    return any((c.get("function") or {}).get("arguments") for c in calls)

"""PII in a streamed text, a piece at a time, holding back only what must wait.

Each text of an answer (a choice's content, one tool call's arguments) gets its own stages; a piece goes in with
`push`, comes out with whatever can go to the client now, and `end` gives the rest when that text is complete.

* `OutputScan` (``pii.mode`` OUTPUT or BOTH) redacts PII the model wrote. It releases text up to a word boundary
  and holds the tail that could still be, or become, part of an entity: the word being written, and from the first
  word in the look-behind window that has a character some entity needs (a digit, an ``@``). Prose without those
  flows on with only its last word held; an entity is seen whole before any of it goes out, as long as it is no
  longer than ``pii.stream_lookbehind`` characters (the bound on what is held).
* `Restore` turns this request's placeholders back into their values. It holds only a tail that could be the
  start of a placeholder (``<EMAIL_ADD``), at most as long as the longest placeholder of the request.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

from .pool import analyze_all
from .redact import Redactor, Vault

if TYPE_CHECKING:
    from .engine import PiiEngine

_PLACEHOLDER_START = re.compile(r"<[A-Z0-9_]*")
_SPACE = re.compile(r"\s")


class Restore:
    def __init__(self, vault: Vault, json_string: bool):
        self.vault, self.json_string = vault, json_string
        self.held = ""

    def push(self, text: str) -> str:
        text = self.held + text
        cut = len(text)
        start = text.rfind("<", max(0, len(text) - self.vault.longest))
        if start >= 0 and _PLACEHOLDER_START.fullmatch(text, start):
            cut = start
        self.held = text[cut:]
        return self.vault.restore(text[:cut], self.json_string)

    def end(self) -> str:
        text, self.held = self.held, ""
        return self.vault.restore(text, self.json_string)


class OutputScan:
    def __init__(self, engine: PiiEngine, redactor: Redactor, lookbehind: int, counts: Counter[str]):
        self.engine, self.redactor, self.lookbehind, self.counts = engine, redactor, lookbehind, counts
        self.pending = ""

    async def push(self, text: str) -> str:
        self.pending += text
        return await self._release(self._hold_from(self.pending))

    async def end(self) -> str:
        return await self._release(len(self.pending))

    def _hold_from(self, text: str) -> int:
        """Where the held tail starts."""
        floor = max(0, len(text) - self.lookbehind)            # never hold more than the look-behind
        word = _last_word_start(text)
        trigger = self.engine.hold_trigger
        if trigger is None:                                    # any word may be part of an entity: hold the window
            cut = _next_word_start(text, floor, word)
        else:
            hit = trigger.search(text, floor, word)
            cut = word if hit is None else _word_start(text, hit.start())
        return max(cut, floor)

    async def _release(self, cut: int) -> str:
        if cut <= 0:
            return ""
        text = self.pending
        (findings,) = await analyze_all(self.engine, [text])
        for f in reversed(findings):                           # an entity across the cut waits, whole
            if f.start < cut < f.end:
                cut = f.start
        if cut <= 0:
            return ""
        self.pending = text[cut:]
        return self.redactor.apply(text[:cut], [f for f in findings if f.end <= cut], None, self.counts)


def _last_word_start(text: str) -> int:
    for i in range(len(text) - 1, -1, -1):
        if text[i].isspace():
            return i + 1
    return 0


def _word_start(text: str, at: int) -> int:
    for i in range(at - 1, -1, -1):
        if text[i].isspace():
            return i + 1
    return 0


def _next_word_start(text: str, at: int, limit: int) -> int:
    if at == 0:
        return 0
    m = _SPACE.search(text, at - 1, limit)
    return m.end() if m else limit

"""Allow and deny patterns on the prompt, as Kong's ai-prompt-guard, matched in linear time.

Each pattern list is one RE2 set, so a prompt is read once per list whatever the number of patterns, and no pattern
can backtrack catastrophically. A text is checked as sent and normalised (`normalise`), so obfuscation does not
slip past a deny rule. Deny wins: a text matching any deny pattern is blocked; with allow patterns, every checked
text must match one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import re2

from .normalize import normalise
from .texts import guarded_texts


class PatternError(ValueError):
    """A pattern RE2 cannot compile (a config error, raised when the instance starts)."""


@dataclass(frozen=True)
class Blocked:
    """Why a prompt was refused: the rule's name (``deny_patterns[2]``), never the text it matched."""

    rule: str


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False          # RE2 would print the pattern to stderr; the error is raised instead
    return options


def compile_pattern(pattern: str, where: str) -> Any:
    """One pattern as RE2 (for callers that need match positions)."""
    try:
        return re2.compile(pattern, options=_options())
    except re2.error as exc:
        raise PatternError(f"{where}: not a valid RE2 pattern ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else exc
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


class PatternSet:
    """Patterns matched together in one pass; `first` names the lowest-numbered one that matched."""

    def __init__(self, patterns: list[str], field: str):
        self.field = field
        self.size = len(patterns)
        self._set = re2.Set.SearchSet(_options())
        for i, pattern in enumerate(patterns):
            try:
                self._set.Add(pattern)
            except re2.error as exc:
                raise PatternError(f"{field}[{i}]: not a valid RE2 pattern ({_reason(exc)})") from None
        self._set.Compile()

    def first(self, text: str) -> int | None:
        hits = self._set.Match(text)
        if not hits:
            norm = normalise(text)
            if norm is text or norm == text:
                return None
            hits = self._set.Match(norm)
        return min(hits) if hits else None


class PromptGuard:
    def __init__(self, config: dict[str, Any]):
        deny = config.get("deny_patterns") or []
        allow = config.get("allow_patterns") or []
        self.deny = PatternSet(deny, "deny_patterns") if deny else None
        self.allow = PatternSet(allow, "allow_patterns") if allow else None
        self.all_roles = bool(config.get("match_all_roles"))
        # Kong's name: "allow all conversation history" lets the history through unchecked (only the newest counts).
        self.latest_only = bool(config.get("allow_all_conversation_history"))

    def __bool__(self) -> bool:
        return self.deny is not None or self.allow is not None

    def check(self, body: dict[str, Any]) -> Blocked | None:
        for text in guarded_texts(body, all_roles=self.all_roles, latest_only=self.latest_only):
            if self.deny is not None:
                hit = self.deny.first(text)
                if hit is not None:
                    return Blocked(f"deny_patterns[{hit}]")
            if self.allow is not None and self.allow.first(text) is None:
                return Blocked("allow_patterns")
        return None

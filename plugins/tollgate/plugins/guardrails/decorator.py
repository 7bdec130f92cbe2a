"""Messages put around every chat prompt, as Kong's ai-prompt-decorator (``prompts.prepend`` / ``prompts.append``,
each message with its role, in the configured order)."""

from __future__ import annotations

from typing import Any


class Decorator:
    def __init__(self, config: dict[str, Any]):
        prompts = config.get("prompts") or {}
        self.prepend = [_message(m) for m in prompts.get("prepend") or []]
        self.append = [_message(m) for m in prompts.get("append") or []]

    def __bool__(self) -> bool:
        return bool(self.prepend or self.append)

    def apply(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The decorated chat request, or None for a request without ``messages`` (left as it is)."""
        messages = body.get("messages")
        if not isinstance(messages, list):
            return None
        return {**body, "messages": [*self.prepend, *messages, *self.append]}


def _message(entry: dict[str, Any]) -> dict[str, str]:
    return {"role": entry.get("role") or "system", "content": entry["content"]}

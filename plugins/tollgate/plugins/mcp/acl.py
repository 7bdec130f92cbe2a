"""Who may see and use which tool, prompt or resource (Kong's ai-mcp-proxy semantics).

Each scope (tools, prompts, resources) has a default ACL; an item with its own ACL uses that instead. An ACL lists
subjects to ``allow`` and to ``deny``; deny wins, and a non-empty allow list admits only its subjects. The subject
is the consumer Kong identified, named by ``consumer_identifier``. A caller Kong did not identify matches no
subject, so any allow list shuts it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_IDENTITY_FIELD = {"username": "username", "consumer_id": "id", "custom_id": "custom_id"}


@dataclass(frozen=True, slots=True)
class Rule:
    allow: frozenset[str]
    deny: frozenset[str]

    @classmethod
    def of(cls, config: dict[str, Any] | None) -> "Rule | None":
        if not config or not (config.get("allow") or config.get("deny")):
            return None
        return cls(frozenset(config.get("allow") or ()), frozenset(config.get("deny") or ()))

    def admits(self, subject: str | None) -> bool:
        if subject is not None and subject in self.deny:
            return False
        return not self.allow or (subject is not None and subject in self.allow)


class Acl:
    def __init__(self, defaults: dict[str, Rule], items: dict[tuple[str, str], Rule], consumer_identifier: str):
        self.defaults = defaults
        self.items = items
        self.field = _IDENTITY_FIELD[consumer_identifier]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Acl":
        defaults: dict[str, Rule] = {}
        for entry in config.get("default_acl") or []:
            rule = Rule.of(entry)
            if rule is not None:
                defaults[entry.get("scope") or "tools"] = rule
        items = {("tools", tool["name"]): rule for tool in config.get("tools") or []
                 if (rule := Rule.of(tool.get("acl"))) is not None}
        return cls(defaults, items, config.get("consumer_identifier") or "username")

    @property
    def active(self) -> bool:
        return bool(self.defaults or self.items)

    def subject(self, identity: dict[str, Any]) -> str | None:
        value = identity.get(self.field)
        return str(value) if value else None

    def allows(self, scope: str, name: str, identity: dict[str, Any]) -> bool:
        rule = self.items.get((scope, name)) or self.defaults.get(scope)
        return rule is None or rule.admits(self.subject(identity))

"""Who may see and use which tool, prompt or resource (Kong's ai-mcp-proxy semantics).

Each scope (tools, prompts, resources) has a default ACL; an item with its own ACL uses that instead. An ACL lists
subjects to ``allow`` and to ``deny``; deny wins, and a non-empty allow list admits only its subjects. The subjects
of a caller are the consumer Kong identified, named by ``consumer_identifier``, and, with
``include_consumer_groups``, the consumer's groups: when the consumer or any of its groups is listed, the entry
applies. A caller Kong did not identify matches no subject, so any allow list shuts it out.

Kong OSS keeps a consumer's groups as ACL groups (``consumers[].acls``): Kong's bundled ``acl`` plugin, on the same
route, admits the request and hands the groups on in ``X-Consumer-Groups``, replacing whatever the client sent.
Kong OSS 3.9 has no ``kong.client.get_consumer_groups`` (that PDK call is Kong Enterprise's), so that header is
where the groups come from: ``include_consumer_groups`` needs the ``acl`` plugin on the route, with its
``hide_groups_header`` off (hidden, the header is not set and the client's own stays in place).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

GROUPS_HEADER = "X-Consumer-Groups"
_IDENTITY_FIELD = {"username": "username", "consumer_id": "id", "custom_id": "custom_id"}


@dataclass(frozen=True, slots=True)
class Rule:
    allow: frozenset[str]
    deny: frozenset[str]
    field: str                 # the identity field consumer entries name
    groups: bool               # whether group names count as subjects

    @classmethod
    def of(cls, config: dict[str, Any] | None, owner: dict[str, Any]) -> "Rule | None":
        """The rule of one ACL entry; ``owner`` is the config that defines it (its identifier and groups)."""
        if not config or not (config.get("allow") or config.get("deny")):
            return None
        return cls(frozenset(config.get("allow") or ()), frozenset(config.get("deny") or ()),
                   _IDENTITY_FIELD[owner.get("consumer_identifier") or "username"],
                   bool(owner.get("include_consumer_groups")))

    def admits(self, identity: Mapping[str, Any]) -> bool:
        subjects = self.subjects(identity)
        if not self.deny.isdisjoint(subjects):
            return False
        return not self.allow or not self.allow.isdisjoint(subjects)

    def subjects(self, identity: Mapping[str, Any]) -> set[str]:
        value = identity.get(self.field)
        found = {str(value)} if value else set()
        if self.groups:
            found.update(identity.get("groups") or ())
        return found


class Acl:
    def __init__(self, defaults: dict[str, Rule], items: dict[tuple[str, str], Rule]):
        self.defaults = defaults
        self.items = items

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Acl":
        defaults: dict[str, Rule] = {}
        for entry in config.get("default_acl") or []:
            rule = Rule.of(entry, config)
            if rule is not None:
                defaults[entry.get("scope") or "tools"] = rule
        items = {("tools", tool["name"]): rule for tool in config.get("tools") or []
                 if (rule := Rule.of(tool.get("acl"), config)) is not None}
        return cls(defaults, items)

    def inheriting(self, source: "Acl", tools: Iterable[str]) -> "Acl":
        """This ACL, with ``tools`` governed by ``source``'s rules (a listener serving a conversion-only
        instance's tools keeps that instance's ACLs); a tool ``source`` leaves open falls to this ACL's default."""
        items = dict(self.items)
        for name in tools:
            rule = source.items.get(("tools", name)) or source.defaults.get("tools")
            if rule is not None:
                items[("tools", name)] = rule
        return Acl(self.defaults, items)

    @property
    def active(self) -> bool:
        return bool(self.defaults or self.items)

    def allows(self, scope: str, name: str, identity: Mapping[str, Any]) -> bool:
        rule = self.items.get((scope, name)) or self.defaults.get(scope)
        return rule is None or rule.admits(identity)


def groups_of(header: str | None) -> list[str]:
    """The group names of Kong's ``X-Consumer-Groups`` header (comma separated)."""
    return [g.strip() for g in (header or "").split(",") if g.strip()]

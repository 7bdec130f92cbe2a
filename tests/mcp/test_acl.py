"""Kong's ACL semantics: per-scope defaults, a tool's own ACL replaces the default, deny wins, allow lists admit
only their subjects, and the subject is the consumer field ``consumer_identifier`` names."""

from __future__ import annotations

from tollgate.plugins.mcp.acl import Acl

ALICE = {"id": "c-1", "username": "alice", "custom_id": "team-a"}
BOB = {"id": "c-2", "username": "bob"}
NOBODY: dict = {}


def acl(**config) -> Acl:
    return Acl.from_config({"consumer_identifier": "username", **config})


def test_no_acl_allows_everyone():
    assert acl().allows("tools", "x", NOBODY) and not acl().active


def test_default_deny_and_allow_lists():
    rules = acl(default_acl=[{"scope": "tools", "allow": ["alice", "bob"], "deny": ["bob"]}])
    assert rules.allows("tools", "x", ALICE)
    assert not rules.allows("tools", "x", BOB)                    # deny wins over allow
    assert not rules.allows("tools", "x", NOBODY)                 # an allow list shuts out the unidentified
    assert rules.allows("prompts", "x", NOBODY)                   # other scopes have their own default


def test_a_tools_own_acl_replaces_the_default():
    rules = acl(default_acl=[{"scope": "tools", "deny": ["alice"]}],
                tools=[{"name": "admin", "acl": {"allow": ["alice"]}}])
    assert rules.allows("tools", "admin", ALICE) and not rules.allows("tools", "admin", BOB)
    assert not rules.allows("tools", "other", ALICE) and rules.allows("tools", "other", BOB)


def test_consumer_identifier_picks_the_subject():
    by_id = Acl.from_config({"consumer_identifier": "consumer_id", "default_acl": [{"allow": ["c-2"]}]})
    assert by_id.allows("tools", "x", BOB) and not by_id.allows("tools", "x", ALICE)
    by_custom = Acl.from_config({"consumer_identifier": "custom_id", "default_acl": [{"deny": ["team-a"]}]})
    assert not by_custom.allows("tools", "x", ALICE) and by_custom.allows("tools", "x", BOB)

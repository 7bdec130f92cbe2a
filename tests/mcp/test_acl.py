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


def test_consumer_groups_count_only_with_include_consumer_groups():
    config = {"default_acl": [{"allow": ["admin"], "deny": ["suspended"]}]}
    admin = {**BOB, "groups": ["developer", "admin"]}
    suspended = {**ALICE, "groups": ["suspended"]}
    assert not acl(**config).allows("tools", "x", admin)               # groups ignored by default
    grouped = acl(include_consumer_groups=True, **config)
    assert grouped.allows("tools", "x", admin)                          # a group in the allow list admits
    assert not grouped.allows("tools", "x", suspended)                  # a group in the deny list refuses
    assert not grouped.allows("tools", "x", BOB)                        # no groups, not allowed by name


def test_deny_wins_across_consumer_and_groups():
    rules = acl(include_consumer_groups=True, default_acl=[{"allow": ["alice"], "deny": ["contractors"]}])
    assert rules.allows("tools", "x", ALICE)
    assert not rules.allows("tools", "x", {**ALICE, "groups": ["contractors"]})


def test_a_listener_inherits_the_acls_of_the_tools_it_serves():
    source = Acl.from_config({"consumer_identifier": "custom_id", "include_consumer_groups": True,
                              "default_acl": [{"allow": ["gold"]}],
                              "tools": [{"name": "weather", "acl": {"allow": ["team-a"]}}]})
    listener = acl(default_acl=[{"deny": ["bob"]}]).inheriting(source, ["weather", "orders", "open"])
    assert listener.allows("tools", "weather", ALICE) and not listener.allows("tools", "weather", BOB)
    assert listener.allows("tools", "orders", {**BOB, "groups": ["gold"]})   # the source's default, groups on
    assert not listener.allows("tools", "orders", ALICE)
    assert not listener.allows("tools", "mine", BOB) and listener.allows("tools", "mine", ALICE)  # its own default

"""Names on one endpoint: prefixes, routing a name to its server, and collisions refused at config load."""

from __future__ import annotations

import pytest

from tollgate.plugins.mcp.catalog import Catalog, CatalogError
from tollgate.plugins.mcp.schema import Schema
from tollgate.schema import validate

REST = {"base_url": "http://api.local"}
USER_TOOL = {"name": "get_user", "method": "GET", "path": "/users/{id}", "parameters": [{"name": "id", "in": "path"}]}


def catalog(**config) -> Catalog:
    return Catalog.from_config(validate(Schema, config))


def test_one_server_keeps_its_names_several_get_prefixes():
    alone = catalog(upstream_url="http://a/mcp")
    assert alone.upstreams[0].prefix == "" and alone.target("anything").name == "anything"
    both = catalog(servers=[{"name": "wx", "url": "http://a/mcp"}, {"name": "calc", "url": "http://b/mcp"}],
                   tools=[USER_TOOL], rest=REST)
    assert [u.prefix for u in both.upstreams] == ["wx_", "calc_"]
    assert (both.target("calc_add").upstream.name, both.target("calc_add").name) == ("calc", "add")
    assert both.target("get_user").rest is not None
    assert both.target("other_tool") is None and both.target("wx_") is None


@pytest.mark.parametrize("config,message", [
    ({"servers": [{"name": "a", "url": "u", "prefix": "x_"}, {"name": "b", "url": "u", "prefix": "x_y_"}]}, "overlap"),
    ({"servers": [{"name": "a", "url": "u"}, {"name": "a", "url": "v"}]}, "unique"),
    ({"servers": [{"name": "a", "url": "u", "prefix": ""}, {"name": "b", "url": "v"}]}, "prefix"),
    ({"servers": [{"name": "api", "url": "u"}], "tools": [{**USER_TOOL, "name": "api_user"}], "rest": REST},
     "collides"),
    ({"mode": "passthrough-listener", "servers": [{"name": "a", "url": "u"}, {"name": "b", "url": "v"}]},
     "exactly one"),
    ({"mode": "conversion-listener", "upstream_url": "u"}, "converted tools only"),
    ({"tools": [{"name": "t", "method": "GET"}], "rest": REST}, "both method and path"),
    ({}, "at least one"),
    ({"mode": "conversion-only", "tools": [USER_TOOL], "rest": REST}, "needs tags"),
    ({"mode": "conversion-only", "tags": ["t"], "upstream_url": "u"}, "converted tools only"),
    ({"mode": "conversion-listener", "server": {"tag": "t"}, "tools": [USER_TOOL], "rest": REST}, "server.tag"),
])
def test_collisions_and_impossible_modes_are_refused_at_load(config, message):
    with pytest.raises(CatalogError, match=message):
        catalog(**config)


def test_a_plugin_instance_with_colliding_names_does_not_start():
    from tollgate.plugins.mcp import Plugin
    with pytest.raises(CatalogError):
        Plugin(validate(Schema, {"servers": [{"name": "a", "url": "u", "prefix": "p"},
                                             {"name": "b", "url": "v", "prefix": "pq"}]}))


def test_a_listener_may_serve_only_tagged_tools():
    assert catalog(server={"tag": "shop"}).rest == {}
    inherited = catalog(tools=[USER_TOOL], rest=REST).rest[USER_TOOL["name"]]
    both = Catalog.from_config({"servers": [{"name": "wx", "url": "u"}], "server": {"tag": "shop"}}, [inherited])
    assert both.target(USER_TOOL["name"]).rest is inherited and both.upstreams[0].prefix == "wx_"


def test_routed_names_are_remembered_within_a_bound_that_never_locks_out_a_tool(monkeypatch):
    """One server with no prefix routes any name a client sends: names sent once fill the memory, which is then
    emptied rather than kept, so a tool called afterwards is still remembered."""
    import tollgate.plugins.mcp.catalog as module

    monkeypatch.setattr(module, "MAX_ROUTED", 8)
    alone = catalog(upstream_url="http://a/mcp")
    for i in range(20):
        alone.target(f"junk-{i}")
        assert len(alone._targets) <= 8
    first = alone.target("echo")
    assert alone.target("echo") is first and "echo" in alone._targets

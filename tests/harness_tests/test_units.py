"""Unit tests of the double's pieces: Lua value conversion, fix_mmap / fix_raw, cjson,
config parsing and schema defaults, plugin precedence and order, the router."""

from __future__ import annotations

import json

import msgpack
import pytest

from tests.harness import KongDouble
from tests.harness.config import ConfigError, parse_declarative, process_config
from tests.harness.luavalue import (
    NULL, Bin, JsonArray, LuaPackError, cjson_encode, lua_roundtrip, pack_message, to_wire,
)
from tests.harness.pdk import fix_mmap, get_response_type
from tests.harness.router import match_route, normalize_path, upstream_uri


def wire(value):
    return msgpack.unpackb(msgpack.packb(to_wire(value), use_bin_type=True), raw=False, strict_map_key=False)


# ------------------------------------------------------------------------------ Lua values


def test_empty_tables_come_back_as_arrays():
    assert lua_roundtrip({"a": 1, "empty_list": [], "empty_map": {}}) == {"a": 1, "empty_list": [], "empty_map": []}
    assert lua_roundtrip({}) == []
    assert lua_roundtrip({"nested": {"deeper": {}}}) == {"nested": {"deeper": []}}


def test_nil_values_vanish_and_holes_make_maps():
    assert lua_roundtrip({"a": None, "b": 1}) == {"b": 1}
    assert lua_roundtrip({"a": None}) == []
    assert lua_roundtrip([1, None, 3]) == {1: 1, 3: 3}
    assert lua_roundtrip([1, 2, None]) == [1, 2]


def test_numbers_and_strings():
    assert lua_roundtrip(2.0) == 2 and isinstance(lua_roundtrip(2.0), int)
    assert lua_roundtrip(2.5) == 2.5
    assert lua_roundtrip(b"bytes") == "bytes"  # every Lua string is packed as str
    assert lua_roundtrip({1: "a", 2: "b"}) == ["a", "b"]


def test_fix_mmap_and_fix_raw():
    assert wire(fix_mmap({"a": "1", "b": ["1", "2"], "flag": True})) == {"a": ["1"], "b": ["1", "2"], "flag": []}
    assert wire(fix_mmap({})) == {}  # mp_empty_map: the one empty table that stays a map
    assert wire(Bin(b"raw")) == b"raw"
    with pytest.raises(LuaPackError, match="attempt to get length of local 'str'"):
        pack_message([0, 1, "plugin.Step", [{"EventId": 0, "Data": Bin(None)}]])


def test_cjson():
    assert cjson_encode({"p": "/v1"}) == '{"p":"\\/v1"}'
    assert cjson_encode({}) == "{}"
    assert cjson_encode([]) == "{}"  # a Lua table without array_mt
    assert cjson_encode(JsonArray()) == "[]"
    assert cjson_encode(NULL) == "null"
    assert cjson_encode(1.795602871775612e18) == "1.795602871775612e+18"
    assert json.loads(cjson_encode({"a": [1, 2], "b": True, "c": "x\ny"})) == {"a": [1, 2], "b": True, "c": "x\ny"}


def test_error_format_follows_accept():
    assert get_response_type("*/*") == "application/json; charset=utf-8"
    assert get_response_type(None) == "application/json; charset=utf-8"
    assert get_response_type("text/html") == "text/html; charset=utf-8"
    assert get_response_type("text/plain;q=0.5, application/xml") == "application/xml; charset=utf-8"


# ------------------------------------------------------------------------------ config


def test_decK_parsing_and_entities():
    d = parse_declarative({
        "_format_version": "3.0",
        "services": [{"name": "s", "url": "https://api.example.com/base", "routes": [
            {"name": "r", "paths": ["/x"], "plugins": [{"name": "p", "config": {"a": 1}}]}]}],
        "consumers": [{"username": "u", "keyauth_credentials": [{"key": "k"}]}],
        "plugins": [{"name": "g"}, {"name": "c", "consumer": "u"}],
    })
    s = d.services[0]
    assert (s.protocol, s.host, s.port, s.path) == ("https", "api.example.com", 443, "/base")
    r = d.routes[0]
    assert r.strip_path is True and r.preserve_host is False and r.service is s
    e = r.entity()
    assert e["service"] == {"id": s.id} and e["paths"] == ["/x"] and "methods" not in e
    assert d.credential_by_key("k").consumer.username == "u"
    scopes = {p.name: p.scope for p in d.plugins}
    assert scopes == {"p": "route", "g": "global", "c": "consumer"}
    # ids are derived deterministically
    d2 = parse_declarative({"_format_version": "3.0", "services": [{"name": "s", "url": "https://api.example.com/base"}]})
    assert d2.services[0].id == s.id


def test_config_errors():
    with pytest.raises(ConfigError):
        parse_declarative({"services": [{"name": "s", "url": "http://x", "routes": [{"name": "r"}]}]})
    with pytest.raises(ConfigError):
        parse_declarative({"consumers": [{"tags": ["x"]}]})
    with pytest.raises(ConfigError, match="uniqueness"):
        parse_declarative({"plugins": [{"name": "a"}, {"name": "a"}]})


def test_schema_defaults_nulls_and_unknown_fields():
    fields = [{"a": {"type": "string", "default": "x"}}, {"b": {"type": "integer"}},
              {"r": {"type": "record", "fields": [{"c": {"type": "boolean", "default": True}}]}},
              {"l": {"type": "array", "elements": {"type": "string"}, "default": []}}]
    conf = process_config(fields, {}, "p.config")
    assert conf["a"] == "x" and conf["b"] is NULL and conf["r"] == {"c": True}
    assert cjson_encode(conf) == '{"a":"x","b":null,"r":{"c":true},"l":[]}'
    with pytest.raises(ConfigError, match="unknown field"):
        process_config(fields, {"zzz": 1}, "p.config")
    with pytest.raises(ConfigError, match="expected an integer"):
        process_config(fields, {"b": "nope"}, "p.config")
    with pytest.raises(ConfigError, match="required"):
        process_config([{"need": {"type": "string", "required": True}}], {}, "p.config")


def test_plugin_precedence_most_specific_wins():
    k = KongDouble()
    combos = {key: key for key in [
        ("R", "S", "C"), ("R", None, "C"), (None, "S", "C"), ("R", "S", None),
        (None, None, "C"), ("R", None, None), (None, "S", None), (None, None, None)]}
    order = []
    remaining = dict(combos)
    while remaining:
        hit = k._lookup(remaining, "R", "S", "C")
        order.append(hit)
        del remaining[hit]
    assert order == [("R", "S", "C"), ("R", None, "C"), (None, "S", "C"), ("R", "S", None),
                     (None, None, "C"), ("R", None, None), (None, "S", None), (None, None, None)]
    # without a consumer, consumer-scoped instances never apply
    assert k._lookup({(None, None, "C"): 1, (None, None, None): 2}, "R", "S", None) == 2
    assert k._lookup({("R", None, None): 1}, "OTHER", "S", None) is None


def test_config_json_carries_kong_fields():
    k = KongDouble(ws_id="0dc6f45b-8f8d-40d2-a504-473544ee190b")
    k.handlers = {"key-auth": k.bundled["key-auth"]}
    d = k.load_config({"_format_version": "3.0", "services": [{"name": "s", "url": "http://h:1", "routes": [
        {"id": "e4b88d1c-623f-5a40-b298-b23cfabd46de", "name": "r", "paths": ["/"],
         "plugins": [{"id": "2301a745-a2a3-5579-82cf-6b6041cc3b38", "name": "key-auth"}]}]}]})
    conf = d.plugins[0].conf
    text = cjson_encode(conf)
    parsed = json.loads(text)
    assert parsed["__key__"] == ("plugins:key-auth:e4b88d1c-623f-5a40-b298-b23cfabd46de::::"
                                 "0dc6f45b-8f8d-40d2-a504-473544ee190b")
    assert parsed["route_id"] == "e4b88d1c-623f-5a40-b298-b23cfabd46de" and "service_id" not in parsed
    assert parsed["__plugin_id"] == "2301a745-a2a3-5579-82cf-6b6041cc3b38"
    assert isinstance(parsed["__seq__"], int) and parsed["key_names"] == ["apikey"] and parsed["anonymous"] is None
    first_seq = parsed["__seq__"]
    d = k.load_config({"_format_version": "3.0", "services": [{"name": "s", "url": "http://h:1", "routes": [
        {"name": "r", "paths": ["/"], "plugins": [{"name": "key-auth"}]}]}]})
    assert d.plugins[0].conf["__seq__"] > first_seq  # a reload gives every plugin a new __seq__


def test_unknown_plugin_in_config_is_refused():
    k = KongDouble()
    k.handlers = {}
    with pytest.raises(ConfigError, match="not enabled"):
        k.load_config({"plugins": [{"name": "nope"}]})


# ------------------------------------------------------------------------------ router


def _routes(doc):
    return parse_declarative(doc).routes


def test_router_longest_prefix_methods_hosts():
    routes = _routes({"services": [{"name": "s", "url": "http://u", "routes": [
        {"name": "short", "paths": ["/v1"]},
        {"name": "long", "paths": ["/v1/chat"]},
        {"name": "post", "paths": ["/v1/chat"], "methods": ["POST"]},
        {"name": "host", "hosts": ["api.example.com"], "paths": ["/"]},
        {"name": "re", "paths": ["~/items/(?<id>\\d+)$"]},
    ]}]})
    assert match_route(routes, "GET", "/v1/models", "x", None).route.name == "short"
    assert match_route(routes, "GET", "/v1/chat/x", "x", None).route.name == "long"
    assert match_route(routes, "POST", "/v1/chat/x", "x", None).route.name == "post"
    assert match_route(routes, "GET", "/other", "api.example.com:8000", None).route.name == "host"
    m = match_route(routes, "GET", "/items/42", "x", None)
    assert m.route.name == "re" and m.uri_captures["named"] == {"id": "42"}
    assert match_route(routes, "GET", "/nothing", "x", None) is None


@pytest.mark.parametrize("service_path,route_path,strip,req_path,expected", [
    (None, "/v1", False, "/v1/chat", "/v1/chat"),
    (None, "/v1", True, "/v1/chat", "/chat"),
    (None, "/v1", True, "/v1", "/"),
    ("/base", "/v1", True, "/v1/chat", "/base/chat"),
    ("/base", "/v1", True, "/v1", "/base"),
    ("/base/", "/v1", True, "/v1/chat", "/base/chat"),
    ("/base", "/v1", False, "/v1/chat", "/base/v1/chat"),
    ("/base/", "/v1", False, "/v1/chat", "/base/v1/chat"),
])
def test_upstream_uri_v0(service_path, route_path, strip, req_path, expected):
    routes = _routes({"routes": [{"name": "r", "paths": [route_path], "strip_path": strip}]})
    m = match_route(routes, "GET", req_path, "x", None)
    assert upstream_uri(m, req_path, service_path) == expected


def test_normalize_path():
    assert normalize_path("/a/./b/../c//d") == "/a/c/d"
    assert normalize_path("/%7Euser/%2F") == "/~user/%2F"


# ---------------------------------------------------------------- kong.conf settings


def test_nginx_times_and_sizes():
    from tests.harness.kongconf import parse_size, parse_time

    assert parse_time("5s") == 5 and parse_time("500ms") == 0.5 and parse_time("1m30s") == 90
    assert parse_time("7") == 7  # nginx: no unit means seconds
    assert parse_size("10m") == 10 * 1024 * 1024 and parse_size("8k") == 8192
    for bad in ("5 s", "s", "5x", ""):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_kong_conf_socket_timeouts_reach_the_rpc_and_unset_ones_keep_the_default():
    from tests.harness import KongDouble
    from tests.harness.kongconf import SocketTimeouts

    double = KongDouble(kong_conf={"nginx_http_lua_socket_read_timeout": "3s",
                                   "nginx_http_client_body_buffer_size": "1m"}, rpc_timeout=9)
    assert double.socket_timeouts == SocketTimeouts(connect=9, send=9, read=3)
    assert double.client_body_buffer_size == 1024 * 1024
    assert KongDouble().socket_timeouts == SocketTimeouts(60, 60, 60)  # OpenResty's defaults

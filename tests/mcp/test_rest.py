"""Converted tools: the descriptor clients see, and how arguments become one HTTP request (path parameters as one
encoded segment each)."""

from __future__ import annotations

import pytest

from tollgate.plugins.mcp.jsonrpc import INVALID_PARAMS, JsonRpcError
from tollgate.plugins.mcp.rest import RestConfigError, RestTool

REST = {"base_url": "http://api.local/v1/", "headers": {"X-Key": "k"}}
ORDERS = {"name": "orders", "method": "GET", "path": "/users/{user}/orders/{order}",
          "parameters": [{"name": "user", "in": "path"}, {"name": "order", "in": "path", "schema": {"type": "integer"}},
                         {"name": "limit", "in": "query", "schema": {"type": "integer"}, "description": "at most"},
                         {"name": "X-Trace", "in": "header"}]}


def tool(config=ORDERS) -> RestTool:
    return RestTool.from_config(config, REST)


def test_descriptor_is_an_input_schema_of_the_parameters_and_body():
    described = tool().descriptor()
    assert described["inputSchema"] == {"type": "object", "required": ["user", "order"], "properties": {
        "user": {"type": "string"}, "order": {"type": "integer"},
        "limit": {"type": "integer", "description": "at most"}, "X-Trace": {"type": "string"}}}
    create = tool({"name": "create", "method": "POST", "path": "/users", "request_body": {
        "required": True, "content": {"application/json": {"schema": {"type": "object", "properties": {}}}}}})
    assert create.descriptor()["inputSchema"]["required"] == ["body"]


def test_arguments_fill_path_query_and_headers():
    url, query, headers, body = tool().build({"user": "ada lovelace", "order": 7, "limit": 2, "X-Trace": "t1"})
    assert str(url) == "http://api.local/v1/users/ada%20lovelace/orders/7"
    assert query == {"limit": "2"} and headers == {"X-Key": "k", "X-Trace": "t1"} and body is None


@pytest.mark.parametrize("value,segment", [
    ("../admin", "..%2Fadmin"), ("a/b", "a%2Fb"), ("%2e%2e%2f", "%252e%252e%252f"), ("..\\x", "..%5Cx"),
    ("?x=1#y", "%3Fx%3D1%23y"), ("...", "..."),
])
def test_a_path_parameter_is_one_segment_whatever_it_holds(value, segment):
    url, *_ = tool().build({"user": value, "order": 1})
    assert url.raw_path == f"/v1/users/{segment}/orders/1"


@pytest.mark.parametrize("value", ["..", ".", "", ["a"], {"a": 1}])
def test_dot_segments_and_non_scalars_are_invalid_params(value):
    with pytest.raises(JsonRpcError) as caught:
        tool().build({"user": value, "order": 1})
    assert caught.value.code == INVALID_PARAMS


def test_missing_required_and_bad_header_values_are_invalid_params():
    with pytest.raises(JsonRpcError, match="order"):
        tool().build({"user": "a"})
    with pytest.raises(JsonRpcError, match="header"):
        tool().build({"user": "a", "order": 1, "X-Trace": "a\r\nX-Evil: 1"})


def test_configs_that_cannot_work_are_refused():
    with pytest.raises(RestConfigError, match="placeholders"):
        RestTool.from_config({**ORDERS, "path": "/users/{user}"}, REST)
    with pytest.raises(RestConfigError, match="base_url"):
        RestTool.from_config(ORDERS, {})
    with pytest.raises(RestConfigError, match="start with"):
        RestTool.from_config({**ORDERS, "path": "users/{user}/{order}"}, REST)

"""Converted tools from an OpenAPI document: operations become tool configs, local references resolved."""

from __future__ import annotations

import json

import pytest

from tollgate.plugins.mcp.openapi import tools_from_openapi
from tollgate.plugins.mcp.rest import RestConfigError, RestTool

SPEC = {
    "openapi": "3.0.3",
    "paths": {
        "/users/{userId}": {
            "parameters": [{"$ref": "#/components/parameters/UserId"}],
            "get": {"operationId": "getUser", "summary": "One user",
                    "parameters": [{"name": "fields", "in": "query", "schema": {"type": "string"}},
                                   {"name": "session", "in": "cookie"}]},
            "put": {"operationId": "replaceUser", "requestBody": {"$ref": "#/components/requestBodies/User"}},
            "delete": {"summary": "no operationId: not a tool"},
        },
    },
    "components": {
        "parameters": {"UserId": {"name": "userId", "in": "path", "required": True, "schema": {"type": "integer"}}},
        "requestBodies": {"User": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/User"}}}}},
        "schemas": {"User": {"type": "object", "properties": {"name": {"type": "string"}}}},
    },
}


def test_operations_become_tools_with_resolved_parameters_and_bodies():
    tools = {t["name"]: t for t in tools_from_openapi(SPEC)}
    assert set(tools) == {"getUser", "replaceUser"}
    get = RestTool.from_config(tools["getUser"], {"base_url": "http://api"})
    assert get.descriptor()["inputSchema"] == {"type": "object", "required": ["userId"], "properties": {
        "userId": {"type": "integer"}, "fields": {"type": "string"}}}       # cookie parameters are not carried
    put = RestTool.from_config(tools["replaceUser"], {"base_url": "http://api"})
    assert put.descriptor()["inputSchema"]["properties"]["body"] == SPEC["components"]["schemas"]["User"]
    assert put.descriptor()["inputSchema"]["required"] == ["userId", "body"]


def test_yaml_or_json_text_and_a_chosen_subset():
    (only,) = tools_from_openapi(json.dumps(SPEC), ["replaceUser"])
    assert only["method"] == "PUT"
    with pytest.raises(RestConfigError, match="nope"):
        tools_from_openapi(SPEC, ["nope"])


@pytest.mark.parametrize("spec,message", [
    ({"openapi": "3.0.0"}, "no paths"),
    ("{not: [valid", "JSON or YAML"),
    ({"paths": {"/a": {"get": {"operationId": "a", "parameters": [{"$ref": "#/components/x"}]}}}}, "points nowhere"),
    ({"paths": {"/a": {"get": {"operationId": "a", "parameters": [{"$ref": "http://evil/x.json"}]}}}}, "local"),
    ({"paths": {"/a": {"$ref": "#/paths/~1a"}}}, "itself"),
])
def test_documents_that_cannot_work_are_refused(spec, message):
    with pytest.raises(RestConfigError, match=message):
        tools_from_openapi(spec)

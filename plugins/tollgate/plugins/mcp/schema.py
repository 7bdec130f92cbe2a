"""tollgate-mcp config; names follow Kong's ai-mcp-proxy (mode, tools, default_acl, consumer_identifier, logging).

Tollgate's additions: ``servers`` (upstream MCP servers behind one endpoint, as Kong's ``listener`` mode does with
routes), ``rest`` (where converted tools send their HTTP calls: Kong uses the route's Service, which here points at
the relay), ``limits`` (calls per tool and window; Kong has none) and the store fields every stateful plugin has.
"""

from __future__ import annotations

from ..common_schema import FAIL_OPEN, REDIS, STRATEGY

SUBJECTS = {"type": "array", "elements": {"type": "string"}, "default": []}
ACL = {"type": "record", "fields": [{"allow": SUBJECTS}, {"deny": SUBJECTS}]}

Schema = [
    {"mode": {"type": "string", "default": "listener",
              "one_of": ["passthrough-listener", "conversion-listener", "conversion-only", "listener"]}},
    # conversion-only: the tags listeners find its tools by (Kong reads the plugin entity's tags, which Kong does not
    # pass to an external plugin); listener: server.tag, the tag of the conversion-only tools it serves.
    {"tags": {"type": "array", "elements": {"type": "string"}, "default": []}},
    {"server": {"type": "record", "fields": [{"tag": {"type": "string"}}]}},
    {"upstream_url": {"type": "string"}},   # passthrough shorthand: one server, names unprefixed
    {"servers": {"type": "array", "default": [], "elements": {"type": "record", "fields": [
        {"name": {"type": "string", "required": True}},
        {"url": {"type": "string", "required": True}},
        {"prefix": {"type": "string"}},     # default: "<name>_" when several servers or converted tools share a route
        {"protocol": {"type": "string", "default": "auto",
                      "one_of": ["auto", "2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"]}},
        {"headers": {"type": "map", "keys": {"type": "string"}, "values": {"type": "string", "referenceable": True},
                     "default": {}}},
        {"timeout": {"type": "number", "gt": 0}},
    ]}}},
    {"tools": {"type": "array", "default": [], "elements": {"type": "record", "fields": [
        {"name": {"type": "string", "required": True}},
        {"description": {"type": "string"}},
        {"method": {"type": "string", "one_of": ["GET", "POST", "PUT", "PATCH", "DELETE"]}},
        {"path": {"type": "string"}},
        {"parameters": {"type": "array", "default": [], "elements": {"type": "record", "fields": [
            {"name": {"type": "string", "required": True}},
            {"in": {"type": "string", "required": True, "one_of": ["path", "query", "header"]}},
            {"required": {"type": "boolean", "default": False}},
            {"description": {"type": "string"}},
            {"schema": {"type": "json"}},
        ]}}},
        {"request_body": {"type": "json"}},
        {"annotations": {"type": "json"}},
        {"acl": ACL},
    ]}}},
    {"openapi": {"type": "record", "fields": [             # converted tools from an OpenAPI 3 document
        {"spec": {"type": "json"}},                       # the document (an object, or JSON / YAML text)
        {"operations": {"type": "array", "elements": {"type": "string"}, "default": []}},   # default: all
    ]}},
    {"rest": {"type": "record", "fields": [
        {"base_url": {"type": "string"}},
        {"headers": {"type": "map", "keys": {"type": "string"}, "values": {"type": "string", "referenceable": True},
                     "default": {}}},
    ]}},
    {"default_acl": {"type": "array", "default": [], "elements": {"type": "record", "fields": [
        {"scope": {"type": "string", "default": "tools", "one_of": ["tools", "prompts", "resources"]}},
        {"allow": SUBJECTS},
        {"deny": SUBJECTS},
    ]}}},
    {"consumer_identifier": {"type": "string", "default": "username",
                             "one_of": ["username", "consumer_id", "custom_id"]}},
    {"include_consumer_groups": {"type": "boolean", "default": False}},   # group names count as ACL subjects
    {"limits": {"type": "array", "default": [], "elements": {"type": "record", "fields": [
        {"tools": {"type": "array", "elements": {"type": "string"}, "default": ["*"]}},
        {"limit": {"type": "integer", "required": True, "gt": 0}},
        {"window_size": {"type": "string", "required": True}},
        {"window_type": {"type": "string", "default": "sliding", "one_of": ["sliding", "fixed"]}},
        {"per": {"type": "string", "default": "consumer", "one_of": ["consumer", "global"]}},
    ]}}},
    {"timeout": {"type": "number", "default": 30, "gt": 0}},
    {"session_ttl": {"type": "number", "default": 3600, "gt": 0}},
    {"max_request_body_size": {"type": "integer", "default": 1048576, "gt": 0}},
    {"passthrough_credentials": {"type": "boolean", "default": False}},
    # OAuth 2.1 resource-server mode (Kong's ai-mcp-oauth2): on when ``resource`` is set.
    {"oauth": {"type": "record", "fields": [
        {"resource": {"type": "string"}},                 # this endpoint's URL: the audience tokens must carry
        {"issuer": {"type": "string"}},
        {"jwks_url": {"type": "string"}},
        {"jwks": {"type": "json"}},                       # or the keys inline
        {"authorization_servers": {"type": "array", "elements": {"type": "string"}, "default": []}},
        {"scopes_required": {"type": "array", "elements": {"type": "string"}, "default": []}},
        {"consumer_claim": {"type": "string", "default": "sub"}},
        {"metadata_url": {"type": "string"}},             # default: derived from resource (RFC 9728)
    ]}},
    {"logging": {"type": "record", "fields": [
        {"log_statistics": {"type": "boolean", "default": True}},
        {"log_payloads": {"type": "boolean", "default": False}},
    ]}},
    STRATEGY,
    REDIS,
    FAIL_OPEN,
]

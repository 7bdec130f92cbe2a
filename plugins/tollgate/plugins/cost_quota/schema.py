"""tollgate-cost-quota config."""

from __future__ import annotations

from ..common_schema import FAIL_OPEN, REDIS, STRATEGY

Schema = [
    {"budgets": {"type": "array", "required": True, "len_min": 1, "elements": {"type": "record", "fields": [
        {"amount": {"type": "number", "required": True, "gt": 0}},
        {"currency": {"type": "string", "default": "USD"}},
        {"period": {"type": "string", "default": "month", "one_of": ["day", "week", "month", "total", "rolling"]}},
        {"rolling_seconds": {"type": "integer"}},
        {"scope": {"type": "string", "default": "consumer",
                   "one_of": ["consumer", "consumer-group", "credential", "route", "service", "header", "global"]}},
        {"header_name": {"type": "string"}},
    ]}}},
    {"timezone": {"type": "string", "default": "UTC"}},
    {"default_max_tokens": {"type": "integer", "default": 4096}},
    {"unknown_model": {"type": "string", "default": "deny", "one_of": ["deny", "default_price", "allow_unpriced"]}},
    {"prices": {"type": "map", "keys": {"type": "string"}, "values": {"type": "record", "fields": [
        {"input": {"type": "number", "required": True}},
        {"output": {"type": "number", "required": True}},
        {"cached_input": {"type": "number"}},
        {"reasoning": {"type": "number"}},
    ]}}},
    {"soft_limit_share": {"type": "number", "default": 0.8, "between": [0, 1]}},
    {"webhook_url": {"type": "string"}},
    {"hide_client_headers": {"type": "boolean", "default": False}},
    STRATEGY,
    REDIS,
    FAIL_OPEN,
]

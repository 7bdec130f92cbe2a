"""tollgate-cost-quota config.

Prices are USD per 1M tokens (the shipped table, ``prices`` overrides, the proxy's ``input_cost``/``output_cost``);
budget amounts are in their own currency (USD unless ``currency`` and ``exchange_rates`` say otherwise).
"""

from __future__ import annotations

from ..common_schema import FAIL_OPEN, REDIS, STRATEGY

PRICE_FIELDS = [
    {"input": {"type": "number", "required": True, "between": [0, 1000000]}},
    {"output": {"type": "number", "required": True, "between": [0, 1000000]}},
    {"cached_input": {"type": "number", "between": [0, 1000000]}},
    {"reasoning": {"type": "number", "between": [0, 1000000]}},
]

Schema = [
    {"budgets": {"type": "array", "required": True, "len_min": 1, "elements": {"type": "record", "fields": [
        {"name": {"type": "string"}},
        {"amount": {"type": "number", "required": True, "gt": 0}},
        {"currency": {"type": "string", "default": "USD"}},
        {"period": {"type": "string", "default": "month", "one_of": ["day", "week", "month", "total", "rolling"]}},
        {"rolling_seconds": {"type": "integer", "gt": 0}},
        {"timezone": {"type": "string"}},
        {"scope": {"type": "string", "default": "consumer",
                   "one_of": ["consumer", "consumer-group", "credential", "route", "service", "header", "global"]}},
        {"header_name": {"type": "string"}},
    ]}}},
    # Calendar periods (day, week from Monday, month) start at local midnight here (an IANA name).
    {"timezone": {"type": "string", "default": "UTC"}},
    # Instances with the same namespace share their budgets' spend (default: the plugin instance's id).
    {"namespace": {"type": "string"}},
    {"default_max_tokens": {"type": "integer", "default": 4096, "gt": 0}},
    {"unknown_model": {"type": "string", "default": "deny", "one_of": ["deny", "default_price", "allow_unpriced"]}},
    # For unknown_model default_price; input and output are then required (checked when the instance starts).
    {"default_price": {"type": "record", "fields": [
        {name: {**spec, "required": False}} for field in PRICE_FIELDS for name, spec in field.items()]}},
    {"prices": {"type": "map", "keys": {"type": "string"}, "values": {"type": "record", "fields": PRICE_FIELDS}}},
    {"exchange_rates": {"type": "map", "keys": {"type": "string"}, "values": {"type": "number", "gt": 0}}},
    {"soft_limit_share": {"type": "number", "default": 0.8, "between": [0, 1]}},
    {"webhook_url": {"type": "string"}},
    {"webhook_headers": {"type": "map", "keys": {"type": "string"},
                         "values": {"type": "string", "referenceable": True}}},
    {"webhook_timeout": {"type": "number", "default": 5, "gt": 0}},
    {"hide_client_headers": {"type": "boolean", "default": False}},
    STRATEGY,
    REDIS,
    FAIL_OPEN,
]

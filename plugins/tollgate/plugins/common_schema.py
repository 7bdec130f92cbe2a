"""Schema fields shared by the stateful plugins, so they read the same everywhere."""

from __future__ import annotations

STRATEGY = {"strategy": {"type": "string", "default": "local", "one_of": ["local", "redis"]}}

REDIS = {"redis": {"type": "record", "fields": [
    {"url": {"type": "string"}},
    {"timeout": {"type": "number", "default": 0.25, "gt": 0}},
]}}

FAIL_OPEN = {"fail_open": {"type": "boolean", "default": False}}

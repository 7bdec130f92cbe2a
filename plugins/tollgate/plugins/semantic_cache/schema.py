"""tollgate-semantic-cache config."""

from __future__ import annotations

from ..common_schema import FAIL_OPEN, REDIS, STRATEGY

Schema = [
    {"similarity_threshold": {"type": "number", "default": 0.92, "between": [0, 1]}},
    {"ttl": {"type": "integer", "default": 3600, "gt": 0}},
    {"exact_match": {"type": "boolean", "default": True}},
    {"cache_scope": {"type": "string", "default": "route", "one_of": ["route", "consumer", "global"]}},
    STRATEGY,
    REDIS,
    FAIL_OPEN,
]

"""tollgate-token-limit config; names follow Kong's ai-rate-limiting-advanced."""

from __future__ import annotations

from ..common_schema import FAIL_OPEN, REDIS, STRATEGY

Schema = [
    {"limits": {"type": "array", "required": True, "len_min": 1, "elements": {"type": "record", "fields": [
        {"limit": {"type": "integer", "required": True, "gt": 0}},
        {"window_size": {"type": "string", "required": True}},
        {"tokens_count_strategy": {"type": "string", "default": "total_tokens",
                                   "one_of": ["prompt_tokens", "completion_tokens", "total_tokens"]}},
        {"models": {"type": "array", "elements": {"type": "string"}}},
        {"providers": {"type": "array", "elements": {"type": "string"}}},
    ]}}},
    {"identifier": {"type": "string", "default": "consumer",
                    "one_of": ["consumer", "credential", "consumer-group", "ip", "header", "path", "service",
                               "route", "global"]}},
    {"header_name": {"type": "string"}},
    {"window_type": {"type": "string", "default": "sliding", "one_of": ["sliding", "fixed"]}},
    # Each request reserves its prompt plus an expected completion, settled to the exact usage after (expected.py):
    # the output cap with reserve_max_tokens (the limit then holds exactly), else the recent 95th percentile of the
    # route's and model's completions (never more than the cap), and this before the first answer.
    {"reserve_max_tokens": {"type": "boolean", "default": False}},
    {"default_completion_tokens": {"type": "integer", "default": 256, "between": [0, 1000000]}},
    {"hide_client_headers": {"type": "boolean", "default": False}},
    {"error_code": {"type": "integer", "default": 429}},
    {"error_message": {"type": "string", "default": "AI token rate limit exceeded"}},
    STRATEGY,
    REDIS,
    FAIL_OPEN,
]

"""tollgate-guardrails config."""

from __future__ import annotations

Schema = [
    {"allow_patterns": {"type": "array", "elements": {"type": "string"}}},
    {"deny_patterns": {"type": "array", "elements": {"type": "string"}}},
    {"pii": {"type": "record", "fields": [
        {"action": {"type": "string", "default": "none", "one_of": ["none", "redact", "restore", "block"]}},
        {"entities": {"type": "array", "elements": {"type": "string"}}},
    ]}},
    {"response_deny_patterns": {"type": "array", "elements": {"type": "string"}}},
]

"""tollgate-guardrails config.

Field names and meanings follow Kong's ai-prompt-template (``templates``, ``allow_untemplated_requests``),
ai-prompt-decorator (``prompts.prepend`` / ``prompts.append``), ai-prompt-guard (``allow_patterns``,
``deny_patterns``, ``allow_all_conversation_history``, ``match_all_roles``) and ai-sanitizer (``pii.mode`` is its
``sanitization_mode``, ``pii.restore`` its ``recover_redacted``, ``pii.custom_patterns`` the same records).
Patterns are RE2 (linear time): Kong checks them as regexes when it loads the config (``is_regex``), and the
plugin refuses, when its instance starts, any that RE2 cannot run (look-around, back-references).

``guards`` lists external guard services (and other whole-text guards), each with Kong's common guard fields
(``guarding_mode``, ``text_source``, ``response_buffer_size``, ``reveal_failure_reason``, ``fail_open``,
``timeout`` in ms) and one settings sub-record named like its ``type`` (guards/__init__.py ``KINDS``; each guard
module declares its own fields). What the schema language cannot say (the sub-record a type needs, a body template
that is not JSON) is refused when the instance starts.
"""

from __future__ import annotations

from ..common_schema import FAIL_OPEN
from .guards import KINDS
from .guards.base import MODES, TEXT_SOURCES

ROLES = ["system", "assistant", "user"]
ACTIONS = ["redact", "mask", "hash", "block"]
DEFAULT_ENTITIES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS"]
DEFAULT_PHONE_REGIONS = ["US", "GB", "DE", "FR", "IL", "IN", "CA", "BR"]   # Presidio's own default

_PATTERN = {"type": "string", "len_min": 1, "len_max": 500, "is_regex": True}
_MESSAGES = {"type": "array", "len_max": 15, "elements": {"type": "record", "fields": [
    {"role": {"type": "string", "default": "system", "one_of": ROLES}},
    {"content": {"type": "string", "required": True, "len_min": 1, "len_max": 100000}},
]}}

GUARD = {"type": "record", "fields": [
    {"name": {"type": "string", "required": True, "len_min": 1, "len_max": 64}},
    {"type": {"type": "string", "required": True, "one_of": list(KINDS)}},
    {"guarding_mode": {"type": "string", "default": "INPUT", "one_of": MODES}},
    {"text_source": {"type": "string", "default": TEXT_SOURCES[0], "one_of": TEXT_SOURCES}},
    {"response_buffer_size": {"type": "integer", "default": 100, "between": [1, 65536]}},
    {"reveal_failure_reason": {"type": "boolean", "default": False}},
    {"fail_open": {"type": "boolean", "default": False}},
    {"timeout": {"type": "number", "default": 10000, "gt": 0}},
    *[{kind: {"type": "record", "fields": cls.fields}} for kind, cls in KINDS.items()],
]}

Schema = [
    # ai-prompt-template
    {"templates": {"type": "array", "elements": {"type": "record", "fields": [
        {"name": {"type": "string", "required": True, "len_min": 1}},
        {"template": {"type": "string", "required": True, "len_min": 1}},
    ]}}},
    {"allow_untemplated_requests": {"type": "boolean", "default": True}},
    # ai-prompt-decorator
    {"prompts": {"type": "record", "fields": [{"prepend": _MESSAGES}, {"append": _MESSAGES}]}},
    # ai-prompt-guard
    {"allow_patterns": {"type": "array", "len_max": 10, "elements": _PATTERN}},
    {"deny_patterns": {"type": "array", "len_max": 10, "elements": _PATTERN}},
    {"allow_all_conversation_history": {"type": "boolean", "default": False}},
    {"match_all_roles": {"type": "boolean", "default": False}},
    # PII (Presidio)
    {"pii": {"type": "record", "fields": [
        {"enabled": {"type": "boolean", "default": False}},
        {"entities": {"type": "array", "elements": {"type": "string"}, "default": DEFAULT_ENTITIES}},
        {"action": {"type": "string", "default": "redact", "one_of": ACTIONS}},
        {"entity_actions": {"type": "map", "keys": {"type": "string"},
                            "values": {"type": "string", "one_of": ACTIONS}}},
        {"score_threshold": {"type": "number", "default": 0.4, "between": [0, 1]}},
        {"language": {"type": "string", "default": "en", "one_of": ["en"]}},
        {"custom_patterns": {"type": "array", "elements": {"type": "record", "fields": [
            {"name": {"type": "string", "required": True, "len_min": 1}},
            {"regex": {**_PATTERN, "required": True}},
            {"score": {"type": "number", "default": 0.5, "between": [0, 1]}},
        ]}}},
        {"mode": {"type": "string", "default": "INPUT", "one_of": ["INPUT", "OUTPUT", "BOTH"]}},
        {"restore": {"type": "boolean", "default": True}},
        {"stream_lookbehind": {"type": "integer", "default": 64, "between": [16, 4096]}},
        {"phone_regions": {"type": "array", "elements": {"type": "string"}, "default": DEFAULT_PHONE_REGIONS}},
    ]}},
    # external guard services (ai-custom-guardrail, ai-azure-content-safety, ai-aws-guardrails, ai-lakera-guard)
    {"guards": {"type": "array", "len_max": 16, "elements": GUARD}},
    # Tollgate's: the input guards run while the provider call does (cancelled on a block); the answer waits for them
    {"during_call": {"type": "boolean", "default": False}},
    FAIL_OPEN,
]

"""The credentials configured on any route of this process, kept so that no error, log line or relayed answer
repeats one.

A provider's error (or an answer the proxy cannot read), a REST API's error behind an MCP tool, or anything an
upstream MCP server sends, may echo the key it was called with; whichever route it came through, it is scrubbed of
every configured credential (provider auth, tollgate-mcp's upstream headers), longest first; errors and log lines
also of anything key-shaped.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

import orjson

REDACTED = "[redacted]"
_KEYLIKE = re.compile(r"\b(sk|pk|rk|AKIA|ASIA)[-_A-Za-z0-9]{12,}\b")
_SCHEMES = ("bearer", "basic", "token")
MIN_LENGTH = 4     # shorter values are not credentials, and would take common text apart

_secrets: list[str] = []
_json_forms: tuple[bytes, ...] = ()   # each secret as a JSON text can spell it: as is, or escaped


def credentials(values: Iterable[str]) -> list[str]:
    """The values worth scrubbing, and the token part of ``Bearer <token>`` (a server may echo the token alone)."""
    found: list[str] = []
    for value in values:
        if isinstance(value, str) and len(value) >= MIN_LENGTH:
            found.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.lower() in _SCHEMES and len(token) >= MIN_LENGTH:
                found.append(token)
    return found


def register(found: list[str]) -> None:
    global _secrets, _json_forms
    new = set(found) - set(_secrets)
    if new:
        _secrets = sorted(set(_secrets) | new, key=len, reverse=True)
        _json_forms = tuple(dict.fromkeys(form for secret in _secrets for form in (
            secret.encode(), orjson.dumps(secret)[1:-1], json.dumps(secret)[1:-1].encode())))


def _without_secrets(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact(text: str) -> str:
    """``text`` without any credential configured on any route of this process (or anything key-shaped)."""
    return _KEYLIKE.sub(REDACTED, _without_secrets(text))


def in_json(raw: bytes) -> bool:
    """Whether the JSON text ``raw`` spells a configured credential: one substring search per spelling, cheap
    enough to ask of every message, so that only the rare one that does is taken apart by `redact_json`."""
    for form in _json_forms:
        if form in raw:
            return True
    return False


def redact_json(value: Any) -> Any:
    """Decoded JSON ``value`` with every configured credential taken out of its strings (keys included)."""
    if isinstance(value, str):
        return _without_secrets(value)
    if isinstance(value, dict):
        return {_without_secrets(k): redact_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(item) for item in value]
    return value

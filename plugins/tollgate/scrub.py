"""The credentials configured on any route of this process, kept so that no error or log line repeats one.

A provider's error (or an answer the proxy cannot read), or a REST API's error behind an MCP tool, may echo the key
it was called with; whichever route it came through, it is scrubbed of every configured credential (provider auth,
tollgate-mcp's upstream headers), longest first, and of anything key-shaped.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"
_KEYLIKE = re.compile(r"\b(sk|pk|rk|AKIA|ASIA)[-_A-Za-z0-9]{12,}\b")

_secrets: list[str] = []


def register(found: list[str]) -> None:
    global _secrets
    new = set(found) - set(_secrets)
    if new:
        _secrets = sorted(set(_secrets) | new, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` without any credential configured on any route of this process (or anything key-shaped)."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _KEYLIKE.sub(REDACTED, text)

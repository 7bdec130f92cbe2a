"""How a plugin's decision in Kong's access phase reaches the relay, unforgeably.

In ``access`` each Tollgate plugin records what the relay needs (its instance and the
consumer Kong identified) here and adds the returned token to the upstream request in
one header. Tokens are 128-bit random, single use and short lived: the relay accepts a
request only with tokens this process issued, so a client cannot forge or replay them,
and a plugin whose call failed (Kong then proxies anyway) leaves a visible gap.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

HEADER = "x-tollgate-attachment"


class InvalidAttachment(Exception):
    """A token that this process did not issue, already used, or expired."""


@dataclass
class Attachment:
    plugin: str
    handler: Any                    # the plugin instance's handler object (holds its config)
    identity: dict[str, Any]
    issued_at: float = field(default_factory=time.monotonic)
    extra: dict[str, Any] = field(default_factory=dict)   # what else access learnt for the relay (uri captures)
    instance: Any = None            # the plugin-server instance that attached it (pluginserver/instances.py)


_TOKEN_BYTES = 16
_random_pool = b""
_random_at = 0
_random_lock = threading.Lock()


def _token() -> str:
    """128 random bits from the OS's CSPRNG, URL-safe; drawn 4 KiB at a time (one system call per 256 tokens)."""
    global _random_pool, _random_at
    with _random_lock:
        if _random_at + _TOKEN_BYTES > len(_random_pool):
            _random_pool, _random_at = secrets.token_bytes(4096), 0
        start = _random_at
        _random_at = start + _TOKEN_BYTES
        raw = _random_pool[start:_random_at]
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class AttachmentTable:
    def __init__(self, ttl: float = 300.0):
        self._ttl = ttl
        self._pending: dict[str, Attachment] = {}

    def issue(self, plugin: str, handler: Any, identity: dict[str, Any], extra: dict[str, Any] | None = None,
              instance: Any = None) -> str:
        token = _token()
        self._pending[token] = Attachment(plugin, handler, identity, extra=extra or {}, instance=instance)
        return token

    def claim(self, tokens: list[str]) -> list[Attachment]:
        """Take the attachments for ``tokens``; every token must be valid, and each works once."""
        claimed = []
        deadline = time.monotonic() - self._ttl
        invalid = False
        for token in tokens:
            attachment = self._pending.pop(token.strip(), None)
            if attachment is None or attachment.issued_at < deadline:
                invalid = True
            else:
                claimed.append(attachment)
        if invalid:
            raise InvalidAttachment("unknown, used or expired Tollgate attachment")
        return claimed

    def sweep(self) -> int:
        deadline = time.monotonic() - self._ttl
        stale = [t for t, a in self._pending.items() if a.issued_at < deadline]
        for token in stale:
            del self._pending[token]
        return len(stale)

    def __len__(self) -> int:
        return len(self._pending)

"""Structured JSON logs on stderr, with secrets scrubbed.

stdout belongs to the query command (Kong parses it), so nothing here ever writes there.
"""

from __future__ import annotations

import logging
import re
import sys

from typing import Any

import orjson

_SECRET_KEYS = re.compile(r"(authorization|api[-_]?key|x-api-key|secret|password|token|header_value|param_value)", re.I)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_KEYLIKE = re.compile(r"\b(sk|pk|rk|AKIA|ASIA)[-_A-Za-z0-9]{12,}\b")

REDACTED = "[redacted]"


def scrub(value: Any, _key: str = "") -> Any:
    """Return a copy of ``value`` with anything that looks like a credential replaced."""
    # Numbers are counts, not credentials: "prompt_tokens" or "time_to_first_token" must stay readable.
    if _key and _SECRET_KEYS.search(_key) and not isinstance(value, (bool, int, float)):
        return REDACTED if value not in (None, "", [], {}) else value
    if isinstance(value, dict):
        return {k: scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return _KEYLIKE.sub(REDACTED, _BEARER.sub(r"\1 " + REDACTED, value))
    return value


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(scrub(fields))
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger("tollgate")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"tollgate.{name}")


def event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``msg`` with structured fields (scrubbed by the formatter)."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": fields})



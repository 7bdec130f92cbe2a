"""Structured JSON logs on stderr, with secrets scrubbed.

stdout belongs to the query command (Kong parses it), so nothing here ever writes there.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
import time

from typing import Any

import orjson

_SECRET_KEYS = re.compile(r"(authorization|api[-_]?key|x-api-key|secret|password|token|header_value|param_value)", re.I)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_KEYLIKE = re.compile(r"\b(sk|pk|rk|AKIA|ASIA)[-_A-Za-z0-9]{12,}\b")

REDACTED = "[redacted]"


# Log lines repeat the same keys and many of the same short values (routes, models, providers) on every request:
# what the patterns make of them is remembered (bounded), so each line costs dictionary lookups, not regex scans.
_secret_key: dict[str, bool] = {}
_scrubbed: dict[str, str] = {}
_MEMO_LIMIT = 4096
_MEMO_TEXT = 256  # longer strings (messages, payloads) are scanned every time


def _is_secret_key(key: str) -> bool:
    found = _secret_key.get(key)
    if found is None:
        found = _SECRET_KEYS.search(key) is not None
        if len(_secret_key) < _MEMO_LIMIT:
            _secret_key[key] = found
    return found


# Every text either pattern can match contains one of these: text without any (request ids, most messages) is
# returned as it is after one scan, instead of two substitutions.
_MAY_HOLD_SECRET = re.compile(r"(?i:bearer|basic)|sk|pk|rk|AKIA|ASIA")


def _redact_text(value: str) -> str:
    if value.isascii():   # the same test as _MAY_HOLD_SECRET, a few times faster (ids, hex, most text)
        if not ("sk" in value or "pk" in value or "rk" in value or "AKIA" in value or "ASIA" in value):
            lower = value.lower()
            if "bearer" not in lower and "basic" not in lower:
                return value
    elif _MAY_HOLD_SECRET.search(value) is None:
        return value
    return _KEYLIKE.sub(REDACTED, _BEARER.sub(_bearer_redacted, value))


def _bearer_redacted(match: re.Match[str]) -> str:
    return match.group(1) + " " + REDACTED


def _scrub_text(value: str) -> str:
    if len(value) > _MEMO_TEXT:
        return _redact_text(value)
    found = _scrubbed.get(value)
    if found is None:
        found = _redact_text(value)
        if len(_scrubbed) >= _MEMO_LIMIT:
            _scrubbed.clear()
        _scrubbed[value] = found
    return found


def scrub(value: Any, _key: str = "") -> Any:
    """Return a copy of ``value`` with anything that looks like a credential replaced."""
    # Numbers are counts, not credentials: "prompt_tokens" or "time_to_first_token" must stay readable.
    if _key and _is_secret_key(_key) and not isinstance(value, (bool, int, float)):
        return REDACTED if value not in (None, "", [], {}) else value
    if isinstance(value, dict):
        return _scrub_dict(value)
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return _scrub_text(value)
    return value


def _scrub_dict(value: dict[Any, Any], out: dict[Any, Any] | None = None) -> dict[Any, Any]:
    """``scrub`` of a dict (into ``out`` when given), with the common leaves (numbers, None, short strings) inline."""
    if out is None:
        out = {}
    secret_keys, scrubbed = _secret_key, _scrubbed   # the memos, looked up inline (this runs per log line)
    for k, v in value.items():
        kind = type(v)
        if kind is int or kind is float or kind is bool or v is None:   # kept even under a secret-named key
            out[k] = v
            continue
        secret = secret_keys.get(k)
        if secret is None:
            secret = _is_secret_key(k if type(k) is str else str(k))
        if secret:
            out[k] = REDACTED if v not in ("", [], {}) else v
        elif kind is str:
            found = scrubbed.get(v)
            out[k] = found if found is not None else _scrub_text(v)
        elif kind is dict:
            out[k] = _scrub_dict(v)
        else:
            out[k] = scrub(v, k if type(k) is str else str(k))
    return out


def _line(created: float, level: str, name: str, msg: str, fields: dict[str, Any] | None,
          exc: str | None = None) -> str:
    """One JSON log line, every value scrubbed."""
    entry: dict[str, Any] = {"time": round(created, 6), "level": level, "logger": name, "msg": _scrub_text(msg)}
    if fields:
        _scrub_dict(fields, entry)
    if exc:
        entry["exc"] = _scrub_text(exc)
    return orjson.dumps(entry, default=str).decode()


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        exc = self.formatException(record.exc_info) if record.exc_info else None
        return _line(record.created, record.levelname.lower(), record.name, record.getMessage(),
                     getattr(record, "fields", None), exc)


class _TurnBufferedHandler(logging.StreamHandler):
    """Lines logged during one event-loop turn leave together, in one write at the end of the turn (one system call
    for a burst of requests instead of one per line); lines from other threads, or with no loop running, at once."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._loop: tuple[int, asyncio.AbstractEventLoop] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self.emit_line(line)

    def emit_line(self, line: str) -> None:
        """``line`` (formatted, with its terminator) joins the turn's batch, or goes out at once off the loop."""
        loop = self._running_loop()
        if loop is None:  # another thread, or no loop: at once, after what the loop's turn has logged so far
            pending, self._pending = self._pending, []
            self._write("".join(pending) + line if pending else line)
            return
        if not self._pending:
            loop.call_soon(self.flush)
        self._pending.append(line)

    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop running in this thread, if any (remembered: asking asyncio costs a system call per line)."""
        known = self._loop
        if known is not None and known[0] == threading.get_ident() and known[1].is_running():
            return known[1]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        self._loop = (threading.get_ident(), loop)
        return loop

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:  # a closed stderr must not break the request that logged
            pass

    def flush(self) -> None:
        self.acquire()
        try:
            pending, self._pending = self._pending, []
            if pending:
                self._write("".join(pending))
        finally:
            self.release()


def setup(level: str = "info") -> None:
    # The JSON lines carry no thread, process or process-name fields: skip looking them up for every record.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    global _direct
    handler = _TurnBufferedHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger("tollgate")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    _direct = (root, handler)


# The set-up's root logger and its handler: `event` writes straight to it (no LogRecord, no handler dispatch) while
# the logging tree is as `setup` left it; anything else added to it (a handler, a filter) gets the standard path.
_direct: tuple[logging.Logger, _TurnBufferedHandler] | None = None
_level_names: dict[int, str] = {}


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"tollgate.{name}")


def event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``msg`` with structured fields (scrubbed by the formatter)."""
    if not logger.isEnabledFor(level):
        return
    direct = _direct
    if direct is not None:
        root, handler = direct
        # Up to the root through loggers that pass records on untouched: "mcp.audit" reaches it via "tollgate.mcp"
        # (a parent's filters never see a child's records; its handlers and propagate do).
        node = logger
        while node is not root and node is not None and not node.handlers and node.propagate:
            node = node.parent
        if (node is root and not logger.filters and not root.filters and not handler.filters
                and level >= handler.level and len(root.handlers) == 1 and root.handlers[0] is handler):
            name = _level_names.get(level)
            if name is None:
                name = _level_names[level] = logging.getLevelName(level).lower()
            try:
                line = _line(time.time(), name, logger.name, msg, fields) + "\n"
            except Exception:  # as the standard path's handleError: a line that cannot be written is dropped
                return
            handler.acquire()   # as Handler.handle: lines from handler threads never interleave with a flush
            try:
                handler.emit_line(line)
            finally:
                handler.release()
            return
    # The record is made directly: Logger.log would walk the stack for a caller the JSON line never shows.
    logger.handle(logger.makeRecord(logger.name, level, "", 0, msg, (), None, extra={"fields": fields}))



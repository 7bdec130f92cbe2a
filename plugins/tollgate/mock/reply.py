"""What the mock answers: a Reply says *what* to send, each wire format decides *how* it looks on the wire."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(slots=True)
class ToolCall:
    """One function call the scripted assistant makes. ``arguments`` may be a JSON string or a dict/list."""

    name: str
    arguments: str | Mapping[str, Any] | Sequence[Any] = "{}"
    id: str | None = None

    @property
    def arguments_json(self) -> str:
        args = self.arguments
        if isinstance(args, str):
            return args
        return orjson.dumps(args).decode()

    @classmethod
    def coerce(cls, value: ToolCall | Mapping[str, Any]) -> ToolCall:
        """Accept a ToolCall, ``{"name", "arguments", "id"}`` or OpenAI's ``{"id", "function": {...}}`` shape."""
        if isinstance(value, ToolCall):
            return value
        fn = value.get("function")
        if isinstance(fn, Mapping):
            return cls(name=fn["name"], arguments=fn.get("arguments", "{}"), id=value.get("id"))
        return cls(name=value["name"], arguments=value.get("arguments", "{}"), id=value.get("id"))


@dataclass(slots=True, kw_only=True)
class Reply:
    """A scripted answer. Every field is optional; unset fields take the mock's defaults.

    Success content (rendered by the request's wire format):
      content           assistant text (default: the mock's ``reply_text``, else an echo of the last user message)
      size              pad/replace the text with exactly this many characters (huge bodies, e.g. 5_000_000)
      tool_calls        ToolCall objects (or dicts); streamed as an id/name delta then argument fragments
      finish_reason     wire value verbatim (default: "stop", "length" when max_tokens cut the text, "tool_calls")
      prompt_tokens, completion_tokens, cached_tokens   override the counted usage numbers
      usage             the wire usage object verbatim (replaces the computed one)
      model             model name to report (default: the request's model)
      embeddings, dims  explicit embedding vectors / vector size for embedding endpoints
    Raw escapes:
      body              whole response body: bytes/str sent verbatim, dict/list JSON-encoded (skips the format)
      events            whole stream: bytes sent verbatim, str/dict framed by the format (e.g. ``data: ...``)
      content_type      Content-Type for ``body``/``events``
    HTTP:
      status            HTTP status; >= 400 renders the format's error body
      error             error message (str) or fields merged into the format's error object (dict)
      headers           extra response headers
      retry_after       sets ``Retry-After`` (seconds)
    Timing and faults:
      latency           seconds to wait before sending the status line and headers (a client that closes the
                        connection meanwhile is recorded as ``disconnected`` and gets nothing)
      stream            force a streamed (True) or plain (False) answer whatever the request asked
      chunks            number of content chunks in a stream (default: one per word, at most 256)
      interval          seconds before each content chunk (the first one included), on a fixed schedule
      disconnect_after  close the connection after this many content chunks (no finish/usage/[DONE] after);
                        on a non-streamed answer: 0 = close without any response, N > 0 = close after half the body
      error_after       after this many content chunks, send the format's in-stream error event and end the stream
      malformed         send broken JSON (truncated body) / a broken stream (invalid JSON in an event)
      gzip              gzip the body (``Content-Encoding: gzip``; streams are flushed per event)
    """

    status: int = 200
    content: str | None = None
    size: int | None = None
    tool_calls: Sequence[ToolCall | Mapping[str, Any]] | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    usage: Mapping[str, Any] | None = None
    model: str | None = None
    embeddings: Sequence[Sequence[float]] | None = None
    dims: int | None = None

    body: bytes | str | Mapping[str, Any] | Sequence[Any] | None = None
    events: Sequence[bytes | str | Mapping[str, Any]] | None = None
    content_type: str | None = None

    error: str | Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None
    retry_after: float | str | None = None

    latency: float = 0.0
    stream: bool | None = None
    chunks: int | None = None
    interval: float = 0.0
    disconnect_after: int | None = None
    error_after: int | None = None
    malformed: bool = False
    gzip: bool = False

    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form knobs for format-specific behaviour (each format documents the keys it reads)."""

    @property
    def is_error(self) -> bool:
        return self.status >= 400

    def replace(self, **changes: Any) -> Reply:
        return dataclasses.replace(self, **changes)

    @classmethod
    def fail(cls, status: int, message: str | None = None, **kwargs: Any) -> Reply:
        """Shortcut for an error reply: ``Reply.fail(429, retry_after=2)``."""
        return cls(status=status, error=message, **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reply:
        """Build a Reply from plain JSON-able data (used by the admin API); unknown keys raise."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown Reply fields: {sorted(unknown)}")
        kwargs = dict(data)
        if kwargs.get("tool_calls") is not None:
            kwargs["tool_calls"] = [ToolCall.coerce(tc) for tc in kwargs["tool_calls"]]
        return cls(**kwargs)

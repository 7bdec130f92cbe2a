"""Wire formats of the mock LLM: the contract between the server core and one provider's wire format.

The core (``tollgate.mock.server``) owns routing, scripting, recording, timing and faults. A format owns what the bytes
look like: it lists its endpoints (method + path suffix or regex) and renders, for a given ``Call``, a JSON body, a
stream as frames, an error body and an in-stream error event.

Adding a format (e.g. Anthropic Messages):

1. create ``tollgate/mock/formats/anthropic.py`` with a ``Format`` subclass (``name = "anthropic"``) whose
   ``endpoints()`` returns ``Endpoint(...)`` objects, e.g. ``Endpoint(self, "POST", "/messages", "messages", render=...,
   render_stream=...)``; override ``error_body``/``stream_error`` (and ``frame``/``malform_stream`` when the stream is
   not ``data: <json>`` SSE, e.g. AWS event-stream), and end the module with ``FORMAT = register(AnthropicFormat())``;
2. add ``"anthropic"`` to ``BUILTIN`` below.

Renderers get a ``Call`` and use ``call.answer(...)`` for the resolved text / tool calls / usage, so the Reply fields
(content, size, tool_calls, token overrides, chunks...) behave the same in every format. Path matching is on the path
*suffix* (any prefix is accepted); the most specific endpoint (longest suffix/pattern, or explicit ``priority``) wins.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from ..reply import Reply, ToolCall
from ..text import count_tokens, filler, filler_tokens, split_text, truncate_tokens

if TYPE_CHECKING:
    from ..server import MockLLM, RecordedRequest

#: format modules shipped with Tollgate, imported on first use (each registers itself)
BUILTIN: tuple[str, ...] = ("openai", "anthropic", "gemini", "bedrock", "azure", "mistral", "cohere", "cohere_v1")

#: text used when the mock has no reply_text and there is nothing to echo
FALLBACK_TEXT = "Hello from the Tollgate mock LLM."


class MockError(Exception):
    """Raised by a validator/renderer to answer with the format's error body instead (e.g. 400 on a bad request)."""

    def __init__(self, status: int, message: str | None = None, **fields: Any) -> None:
        super().__init__(message or str(status))
        self.status = status
        self.fields: dict[str, Any] = dict(fields)
        if message is not None:
            self.fields["message"] = message


class Frames(NamedTuple):
    """A stream as already-framed byte events.

    ``head`` is written with the response headers (e.g. OpenAI's role chunk), each ``body`` frame is one content
    chunk (paced by ``Reply.interval``, counted by ``disconnect_after``/``error_after``, timestamped in
    ``RecordedRequest.chunk_times``), ``tail`` follows the last body frame at once (finish, usage, ``[DONE]``).
    """

    head: list[bytes]
    body: list[bytes]
    tail: list[bytes]


class Answer(NamedTuple):
    """The resolved content of a successful reply, format-neutral."""

    text: str | None
    tool_calls: list[ToolCall]
    finish: str  # generic: "stop" | "length" | "tool_calls"; formats map it (Reply.finish_reason overrides)
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _body_stream(path: str, body: Any) -> bool:
    return isinstance(body, dict) and body.get("stream") is True


def _body_model(path: str, body: Any) -> str | None:
    if isinstance(body, dict):
        model = body.get("model")
        if isinstance(model, str):
            return model
    return None


class Endpoint:
    """One route of a format. ``suffix`` matches ``path.endswith(suffix)``; ``pattern`` is ``re.search`` on the path.

    render(call) -> bytes                JSON body of a success
    render_stream(call) -> Frames        the stream (None: this endpoint never streams)
    validate(call) -> None               raise MockError on a request the real API would reject
    is_stream(path, body) -> bool        whether the request asks for a stream (default: ``"stream": true``)
    model_of(path, body) -> str | None   the requested model (default: body ``model``)
    """

    __slots__ = ("format", "method", "suffix", "pattern", "name", "render", "render_stream", "validate",
                 "is_stream", "model_of", "priority")

    def __init__(
        self,
        format: Format,
        method: str,
        suffix: str | None,
        name: str,
        *,
        render: Callable[[Call], bytes],
        render_stream: Callable[[Call], Frames] | None = None,
        validate: Callable[[Call], None] | None = None,
        pattern: str | re.Pattern[str] | None = None,
        is_stream: Callable[[str, Any], bool] = _body_stream,
        model_of: Callable[[str, Any], str | None] = _body_model,
        priority: int | None = None,
    ) -> None:
        if (suffix is None) == (pattern is None):
            raise ValueError("an Endpoint needs exactly one of suffix / pattern")
        self.format = format
        self.method = method.upper()
        self.suffix = suffix
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        self.name = f"{format.name}.{name}"
        self.render = render
        self.render_stream = render_stream
        self.validate = validate
        self.is_stream = is_stream
        self.model_of = model_of
        self.priority = priority if priority is not None else len(suffix or self.pattern.pattern)  # type: ignore

    def matches(self, path: str) -> bool:
        if self.suffix is not None:
            return path.endswith(self.suffix)
        return self.pattern.search(path) is not None  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"<Endpoint {self.name} {self.method} {self.suffix or self.pattern.pattern}>"  # type: ignore


class Format:
    """Base class of a wire format; subclasses set ``name`` and implement ``endpoints``/``error_body``."""

    name: str = ""
    json_content_type = "application/json"
    stream_content_type = "text/event-stream"

    def endpoints(self) -> list[Endpoint]:
        raise NotImplementedError

    def error_body(self, call: Call, status: int, error: str | Mapping[str, Any] | None) -> bytes:
        """Body of an HTTP error answer. ``error``: Reply.error / MockError fields (message str or fields dict)."""
        raise NotImplementedError

    def stream_error(self, call: Call, error: str | Mapping[str, Any] | None) -> bytes:
        """An error event sent inside an already started stream (Reply.error_after)."""
        return self.frame(orjson.loads(self.error_body(call, 500, error)))

    def frame(self, event: str | Mapping[str, Any] | bytes) -> bytes:
        """Frame one event of a raw ``Reply.events`` stream (default: SSE ``data:`` line)."""
        if isinstance(event, bytes):
            return event
        data = event.encode() if isinstance(event, str) else orjson.dumps(event)
        return b"data: " + data + b"\n\n"

    def headers(self, call: Call) -> dict[str, str]:
        """Extra headers on every answer of this format (e.g. a request id)."""
        return {}

    def malform(self, body: bytes) -> bytes:
        """A broken version of a JSON body (default: cut in half)."""
        return body[: max(1, len(body) // 2)]

    def malform_stream(self, frames: Frames) -> Frames:
        """A broken version of a stream (default: the first content event carries truncated JSON)."""
        head, body, tail = list(frames.head), list(frames.body), list(frames.tail)
        target = body if body else head if head else tail
        if target:
            frame = target[0].rstrip(b"\n")
            target[0] = frame[: max(7, len(frame) // 2)] + b"\n\n"
        return Frames(head, body, tail)


class Call:
    """Everything a renderer needs about one request/answer."""

    __slots__ = ("mock", "request", "reply", "endpoint", "body", "model", "stream", "seq", "created", "_answer")

    def __init__(self, mock: MockLLM, request: RecordedRequest, reply: Reply, endpoint: Endpoint | None,
                 body: Any, model: str | None, stream: bool, seq: int) -> None:
        self.mock = mock
        self.request = request
        self.reply = reply
        self.endpoint = endpoint
        self.body = body if isinstance(body, dict) else {}
        self.model = reply.model or model or mock.default_model
        self.stream = stream
        self.seq = seq
        self.created = int(time.time())
        self._answer: Answer | None = None

    def answer(self, *, echo: str = "", prompt_tokens: int = 0, max_tokens: int | None = None) -> Answer:
        """Resolve the Reply against the request: text, tool calls, finish, usage (computed once per call).

        ``echo``: the text to echo by default (the last user message); ``prompt_tokens``: the counted prompt;
        ``max_tokens``: the request's output cap (cuts the text, finish "length"), ignored if the Reply fixes
        ``finish_reason`` or ``completion_tokens``.
        """
        if self._answer is not None:
            return self._answer
        reply = self.reply
        if reply.size is not None:
            text: str | None = filler(reply.size)
        elif reply.content is not None:
            text = reply.content
        elif reply.tool_calls:
            text = None
        elif self.mock.reply_text is not None:
            text = self.mock.reply_text
        else:
            text = echo or FALLBACK_TEXT
        finish = "stop"
        if text and max_tokens is not None and reply.finish_reason is None and reply.completion_tokens is None:
            text, cut = truncate_tokens(text, max_tokens)
            if cut:
                finish = "length"
        tool_calls: list[ToolCall] = []
        for i, tc in enumerate(reply.tool_calls or ()):
            tc = ToolCall.coerce(tc)
            if tc.id is None:
                tc = ToolCall(tc.name, tc.arguments, f"call_mock{self.seq}x{i}")
            tool_calls.append(tc)
        if tool_calls and finish == "stop":
            finish = "tool_calls"
        count = self.mock.count_tokens
        if reply.completion_tokens is not None:
            completion = reply.completion_tokens
        elif reply.size is not None and finish != "length" and not tool_calls and count is count_tokens:
            completion = filler_tokens(reply.size)
        else:
            completion = count(text) if text else 0
            for tc in tool_calls:
                completion += count(tc.name) + count(tc.arguments_json)
        self._answer = Answer(
            text=text,
            tool_calls=tool_calls,
            finish=finish,
            prompt_tokens=reply.prompt_tokens if reply.prompt_tokens is not None else prompt_tokens,
            completion_tokens=completion,
            cached_tokens=reply.cached_tokens or 0,
        )
        return self._answer

    def finish_reason(self, mapping: Mapping[str, str] | None = None) -> str:
        """The wire finish reason: Reply.finish_reason verbatim, else the generic one through ``mapping``."""
        if self.reply.finish_reason is not None:
            return self.reply.finish_reason
        finish = self._answer.finish if self._answer is not None else "stop"
        return mapping.get(finish, finish) if mapping else finish

    def pieces(self, text: str | None) -> list[str]:
        """The content chunks of a stream (Reply.chunks, else one word per chunk)."""
        return split_text(text or "", self.reply.chunks)

    def count(self, text: str) -> int:
        return self.mock.count_tokens(text)


_REGISTRY: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Register a format instance under ``fmt.name`` (called at the end of each format module)."""
    if not fmt.name:
        raise ValueError("a Format needs a name")
    _REGISTRY[fmt.name] = fmt
    return fmt


def load(names: tuple[str, ...] | list[str] | None = None) -> list[Format]:
    """The formats to serve: ``names`` (default: every builtin), importing their modules on first use."""
    wanted = tuple(names) if names is not None else BUILTIN
    out = []
    for name in wanted:
        if name not in _REGISTRY:
            importlib.import_module(f"{__name__}.{name}")
        out.append(_REGISTRY[name])
    return out


__all__ = ["Answer", "BUILTIN", "Call", "Endpoint", "Format", "Frames", "MockError", "load",
           "register"]

"""The driver interface and the types drivers exchange with the relay."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

CHAT = "llm/v1/chat"
COMPLETIONS = "llm/v1/completions"
EMBEDDINGS = "llm/v1/embeddings"
PRESERVE = "preserve"


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0          # prompt tokens served from the provider's prompt cache
    reasoning_tokens: int = 0       # completion tokens spent on reasoning
    estimated: bool = False         # True when counted by us, not reported by the provider

    def as_openai(self) -> dict[str, Any]:
        usage: dict[str, Any] = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                                 "total_tokens": self.total_tokens or self.prompt_tokens + self.completion_tokens}
        if self.cached_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        if self.estimated:
            usage["estimated"] = True
        return usage


def token_count(value: Any) -> int | None:
    """A token count as a provider reports it: a non-negative integer (JSON numbers such as ``12.0`` too), else
    None. Anything else (a string, a negative number, a bool) means the usage cannot be trusted: the caller then
    reports no usage and the proxy charges its own estimate rather than a zero."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def token_counts(data: Any, *names: str) -> list[int] | None:
    """The counts ``names`` of a usage object: an absent or null one is 0, a present one of the wrong type makes the
    whole usage unreadable (None), and so does a usage in which none of ``names`` is present."""
    if not isinstance(data, dict):
        return None
    counts = []
    present = False
    for name in names:
        value = data.get(name)
        if value is None:
            counts.append(0)
            continue
        present = True
        count = value if type(value) is int and value >= 0 else token_count(value)   # (the common case inline)
        if count is None:
            return None
        counts.append(count)
    return counts if present else None


@dataclass
class Target:
    """Where and how to call one model: the resolved ``model`` and ``auth`` of a config."""

    provider: str
    model: str | None
    options: dict[str, Any] = field(default_factory=dict)
    auth: dict[str, Any] = field(default_factory=dict)


@dataclass
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


class ProviderError(Exception):
    """The provider refused or failed; carries what an OpenAI client should see."""

    def __init__(self, status: int, message: str, type_: str = "api_error", code: str | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.retry_after = retry_after


class UnreadableAnswer(ProviderError):
    """An answer or stream frame whose shape a driver cannot read. Always a 502 ``upstream_error`` whose ``code``
    names the cause (``upstream_invalid_json``, ``upstream_invalid_frame`` (a binary frame that fails its checks),
    ``upstream_unexpected_shape``, ``upstream_empty_answer``, ``upstream_incomplete_stream``,
    ``upstream_unreadable``): never an empty success. Drivers raise it without knowing their name; the proxy adds
    the provider (``named``) before anyone sees it."""

    def __init__(self, code: str, detail: str, provider: str | None = None):
        super().__init__(502, detail, "upstream_error", code)
        self.detail = detail
        self.provider = provider

    def named(self, provider: str) -> "UnreadableAnswer":
        if self.provider is None:
            self.provider = provider
            self.message = f"{provider} answered in a form Tollgate cannot read: {self.detail}"
            self.args = (self.message,)
        return self


def not_json(what: str = "body") -> UnreadableAnswer:
    return UnreadableAnswer("upstream_invalid_json", f"the {what} is not JSON")


def unexpected(detail: str) -> UnreadableAnswer:
    return UnreadableAnswer("upstream_unexpected_shape", detail)


def json_object(raw: bytes | str, what: str = "answer") -> dict[str, Any]:
    """``raw`` parsed as the JSON object a provider's answer (or stream frame) must be, else unreadable."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise not_json(what) from None
    if not isinstance(data, dict):
        raise unexpected(f"the {what} is not a JSON object")
    return data


class StreamDecoder(Protocol):
    """Turns a provider's stream bytes into OpenAI ``chat.completion.chunk`` dicts as they arrive."""

    usage: Usage | None

    def feed(self, data: bytes) -> list[dict[str, Any]]: ...

    def close(self) -> list[dict[str, Any]]: ...


class UsageReader(Protocol):
    """Reads usage from a provider's native stream as its bytes pass (never changes or holds them back)."""

    usage: Usage | None

    def feed(self, data: bytes) -> list[dict[str, Any]]: ...

    def close(self) -> list[dict[str, Any]]: ...


class Driver(Protocol):
    """What every driver provides. Optional, for ``route_type: preserve`` (the provider's native format passes
    through untouched and usage is still metered), a driver also has these three (helpers in ``native.py``):

    ``native_request(method, path, query, headers, body, target) -> UpstreamRequest``
        The client's native request for ``target``: ``path`` and ``query`` raw, as Kong forwarded them (relative to
        the route when it strips its path), unless ``options.upstream_url``/``upstream_path`` decide
        (``native.native_url``); ``headers`` already reduced to what may be forwarded (``native.forwarded_headers``);
        ``body`` unchanged; the configured ``auth`` applied (SigV4 for Bedrock). Raises ProviderError as
        ``build_request`` does.
    ``native_usage(body, headers=None) -> Usage | None``
        Pure: the usage a complete native answer reports (its JSON body; Bedrock also reads its token-count headers),
        None when it reports none.
    ``native_stream_usage(target) -> UsageReader``
        Usage from native stream frames (SSE, AWS event-stream) as they pass: the driver's own stream decoder fed the
        bytes only to observe them (``native.StreamUsage``).

    A driver without them refuses ``preserve`` routes (400 ``unsupported_route``).
    """

    name: str

    def build_request(self, route_type: str, body: dict[str, Any], target: Target, stream: bool) -> UpstreamRequest: ...

    def parse_response(self, route_type: str, body: bytes, target: Target) -> tuple[dict[str, Any], Usage | None]: ...

    def parse_error(self, status: int, headers: Any, body: bytes) -> ProviderError: ...

    def stream_decoder(self, route_type: str, target: Target) -> StreamDecoder: ...


class ChunkWriter:
    """Writes OpenAI stream chunks for one answer: ``chat.completion.chunk`` for chat, ``text_completion`` for the
    completions route, all with the same id, model and creation time."""

    __slots__ = ("id", "model", "created", "completions")

    def __init__(self, route_type: str, model: str, created: int, id_: str = "") -> None:
        self.id = id_
        self.model = model
        self.created = created
        self.completions = route_type == COMPLETIONS

    def chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": "text_completion" if self.completions else "chat.completion.chunk",
                "created": self.created, "model": self.model, "choices": choices}

    def choice(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        """A one-choice chunk: the delta for chat, its ``content`` as ``text`` for completions."""
        if self.completions:
            return self.chunk([{"index": 0, "text": delta.get("content") or "", "logprobs": None,
                                "finish_reason": finish}])
        return self.chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

    def usage(self, usage: Usage) -> dict[str, Any]:
        """The closing chunk of an ``include_usage`` stream: no choices, the usage."""
        return {**self.chunk([]), "usage": usage.as_openai()}

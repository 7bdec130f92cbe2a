"""OpenAI: the wire format every other driver translates to, so this one mostly passes through."""

from __future__ import annotations

from typing import Any

import orjson

from . import native
from .base import (CHAT, COMPLETIONS, EMBEDDINGS, ProviderError, Target, UpstreamRequest, Usage, json_object,
                   token_count, token_counts)
from .framing import SSEDecoder
from .http import JSONDriver

DEFAULT_BASE = "https://api.openai.com/v1"
ORIGIN = "https://api.openai.com"
PATHS = {CHAT: "/chat/completions", COMPLETIONS: "/completions", EMBEDDINGS: "/embeddings"}

# Config options that become request fields when the client did not set them.
_OPTION_FIELDS = ("max_tokens", "temperature", "top_p")


def usage_from(data: Any) -> Usage | None:
    """OpenAI's usage object as Tollgate's Usage (cached and reasoning tokens included); None when it is missing
    or cannot be read (counts that are not non-negative integers)."""
    counts = token_counts(data, "prompt_tokens", "completion_tokens", "total_tokens")
    if counts is None:
        return None
    prompt, completion, total = counts
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total or prompt + completion,
                 cached_tokens=_detail(data, "prompt_tokens_details", "cached_tokens"),
                 reasoning_tokens=_detail(data, "completion_tokens_details", "reasoning_tokens"))


def _detail(data: dict[str, Any], group: str, name: str) -> int:
    """A breakdown count (cached, reasoning): 0 when absent or unreadable (the totals above are what is charged)."""
    details = data.get(group)
    return (token_count(details.get(name)) or 0) if isinstance(details, dict) else 0


def usage_as_sent(raw: dict[str, Any], usage: Usage, route_type: str = CHAT) -> dict[str, Any]:
    """The provider's usage object as the client gets it: as the provider sent it (its extra breakdowns included)
    when every count in it is an integer, else what is charged (``usage``), so a client never reads a broken count."""
    embeddings = route_type == EMBEDDINGS
    required = ("prompt_tokens", "total_tokens") if embeddings else ("prompt_tokens", "completion_tokens",
                                                                      "total_tokens")
    if all(key in raw for key in required) and _whole_counts(raw):
        return raw
    if embeddings:
        return {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens}
    return usage.as_openai()


def _whole_counts(raw: dict[str, Any]) -> bool:
    """Every count in a usage object (and in its breakdowns) is a non-negative integer or null."""
    for value in raw.values():
        if type(value) is int:
            if value < 0:
                return False
        elif type(value) is dict:
            for count in value.values():
                if count is not None and (type(count) is not int or count < 0):
                    return False
        elif value is not None:
            return False
    return True


def native_usage_of(data: Any) -> Usage | None:
    """Usage in a native OpenAI answer or stream event: ``usage`` of chat, completions and embeddings
    (``prompt_tokens``...), or of the Responses API (``input_tokens``/``output_tokens``, also inside a
    ``response.completed`` event's ``response``)."""
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if not isinstance(usage, dict) and isinstance(data.get("response"), dict):
        usage = data["response"].get("usage")
    if not isinstance(usage, dict):
        return None
    if "prompt_tokens" not in usage and "input_tokens" in usage:
        counts = token_counts(usage, "input_tokens", "output_tokens", "total_tokens")
        if counts is None:
            return None
        prompt, completion, total = counts
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total or prompt + completion,
                     cached_tokens=_detail(usage, "input_tokens_details", "cached_tokens"),
                     reasoning_tokens=_detail(usage, "output_tokens_details", "reasoning_tokens"))
    return usage_from(usage)


def error_from(status: int, headers: Any, body: bytes) -> ProviderError:
    """An OpenAI-style error body (also used by the many OpenAI-compatible servers)."""
    message, type_, code = f"upstream answered {status}", "api_error", None
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    if isinstance(error, dict):
        message = str(error.get("message") or message)
        type_ = str(error.get("type") or type_)
        code = error.get("code")
    elif isinstance(error, str):
        message = error
    return ProviderError(status, message, type_, code if code is None else str(code), retry_after_of(headers))


def retry_after_of(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class OpenAIStreamDecoder:
    """OpenAI's SSE is already the target format: parse it to learn usage, pass chunks on."""

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self._chunks(self._sse.feed(data))

    def close(self) -> list[dict[str, Any]]:
        return self._chunks(self._sse.close())

    def _chunks(self, events: list) -> list[dict[str, Any]]:
        chunks = []
        for event in events:
            if event.raw == b"[DONE]":
                continue
            chunk = json_object(event.data, "stream frame")
            if chunk.get("error"):
                error = chunk["error"]
                raise ProviderError(502, str(error.get("message", error) if isinstance(error, dict) else error))
            if chunk.get("usage") is not None:
                self.usage = usage_from(chunk["usage"])
                if self.usage is not None:
                    chunk["usage"] = usage_as_sent(chunk["usage"], self.usage)
                else:                        # unreadable: dropped, the proxy's estimate takes its place
                    del chunk["usage"]
                    if not chunk.get("choices"):
                        continue
            chunks.append(chunk)
        return chunks


class OpenAIDriver(JSONDriver):
    name = "openai"
    default_base = DEFAULT_BASE
    paths = PATHS

    def payload(self, route_type: str, body: dict[str, Any], target: Target, stream: bool
                ) -> tuple[dict[str, Any], bool]:
        payload = dict(body)
        if target.model:
            payload["model"] = target.model
        if route_type in (CHAT, COMPLETIONS):
            for option in _OPTION_FIELDS:
                if target.options.get(option) is not None and option not in payload:
                    payload[option] = target.options[option]
            if stream:
                payload["stream"] = True
                payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
        return payload, stream

    def parse_response(self, route_type: str, body: bytes, target: Target) -> tuple[dict[str, Any], Usage | None]:
        data = json_object(body)
        if data.get("error"):   # some OpenAI-compatible servers answer 200 with an error body
            raise error_from(502, None, body)
        usage = usage_from(data.get("usage"))
        if usage is None:
            data.pop("usage", None)  # missing or unreadable: the proxy's estimate takes its place
        else:
            data["usage"] = usage_as_sent(data["usage"], usage, route_type)
        return data, usage

    def parse_error(self, status: int, headers: Any, body: bytes) -> ProviderError:
        return error_from(status, headers, body)

    def stream_decoder(self, route_type: str, target: Target) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder()

    # -- preserve: the client's own OpenAI-format request, passed through (see base.Driver) ----------------------

    native_origin: str | None = ORIGIN

    def native_url(self, path: str, query: str, target: Target) -> str:
        return native.native_url(self.native_origin, path, query, target.options or {}, target.auth)

    def native_request(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes,
                       target: Target) -> UpstreamRequest:
        headers = dict(headers)
        url, body = native.apply_auth(self.native_url(path, query, target), headers, body, target.auth or {})
        return UpstreamRequest(method, url, headers, body)

    def native_usage(self, body: bytes, headers: Any = None) -> Usage | None:
        return native_usage_of(native.json_of(body))

    def native_stream_usage(self, target: Target) -> native.StreamUsage:
        return native.StreamUsage(self.stream_decoder(CHAT, target), native_usage_of)


driver = OpenAIDriver()

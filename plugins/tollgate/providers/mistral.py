"""Mistral AI (``https://api.mistral.ai/v1``): OpenAI-shaped, so the OpenAI driver's pieces are reused, with these
differences taken care of.

Request (OpenAI chat -> Mistral ``/v1/chat/completions``): Mistral refuses any field it does not know (422 "Extra
inputs are not permitted"), so only its documented fields are sent and OpenAI's names are translated:
``max_completion_tokens`` -> ``max_tokens``, ``seed`` -> ``random_seed``, ``tool_choice: "required"`` -> ``"any"``
(``auto``/``none``/``{"type": "function", ...}`` as they are), ``developer`` messages -> ``system``; messages keep
only the keys of their role (``name`` goes, except on tool messages). Mistral wants tool call ids of exactly 9
characters ``[a-zA-Z0-9]``: other ids (e.g. OpenAI's ``call_...``) are replaced by a stable 9-character digest, the
same in the assistant ``tool_calls`` and the ``tool`` messages that answer them. Mistral's own ``safe_prompt`` and
``random_seed`` are passed on when the client sends them. ``model.options`` max_tokens / temperature / top_p are
defaults (Mistral has no top_k). No ``stream_options``: Mistral puts usage in the last stream chunk by itself.

Completions route: Mistral has no ``/v1/completions``; the ``prompt`` (a string, or a list holding one string) is
sent as one user message and the answer comes back as a ``text_completion`` (chunks too). Embeddings:
``/v1/embeddings`` (``input``, ``encoding_format``, ``dimensions`` -> ``output_dimension``), answered in OpenAI's list
format already.

Answer: finish_reason ``model_length`` -> ``length`` (``stop``/``length``/``tool_calls`` as they are); ``error``
means the generation failed and is raised as a 502, in a stream too. Tool calls get ``type: "function"`` and string
``arguments``; content given as chunks is joined (``thinking`` chunks are not shown). Usage: ``prompt_tokens``,
``completion_tokens``, ``total_tokens``, cached tokens from ``prompt_tokens_details.cached_tokens`` (else
``num_cached_tokens``). In a stream the last chunk carries both the finish reason and usage: it is split into the
finish chunk and a ``choices: []`` usage chunk, OpenAI's include_usage shape.

Errors: ``{"object": "error", "message": str | {"detail": [...]}, "type", "param", "code"}``, a bare ``{"detail":
[...]}`` (validation) or ``{"message": ...}`` (gateway: 401, 429); the message is kept (validation details joined as
``loc: msg``) and the type follows the status (429 -> ``rate_limit_exceeded``).
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import orjson

from . import native
from .base import CHAT, COMPLETIONS, EMBEDDINGS, ProviderError, Target, Usage, token_count
from .openai import OpenAIDriver, OpenAIStreamDecoder, retry_after_of, usage_from

DEFAULT_BASE = "https://api.mistral.ai/v1"
PATHS = {CHAT: "/chat/completions", COMPLETIONS: "/chat/completions", EMBEDDINGS: "/embeddings"}

# Documented top-level fields of Mistral's chat completion request (anything else is refused with a 422).
CHAT_FIELDS = frozenset({
    "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed", "metadata",
    "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n", "prediction",
    "parallel_tool_calls", "reasoning_effort", "prompt_mode", "guardrails", "prompt_cache_key", "safe_prompt",
})
EMBEDDING_FIELDS = frozenset({"model", "input", "metadata", "output_dimension", "output_dtype", "encoding_format"})
MESSAGE_FIELDS = {
    "system": ("role", "content"),
    "user": ("role", "content"),
    "assistant": ("role", "content", "tool_calls", "prefix"),
    "tool": ("role", "content", "tool_call_id", "name"),
}
_OPTION_FIELDS = ("max_tokens", "temperature", "top_p")
_TOOL_CALL_ID = re.compile(r"^[A-Za-z0-9]{9}$")
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

FINISH_REASONS = {"stop": "stop", "length": "length", "model_length": "length", "tool_calls": "tool_calls",
                  "content_filter": "content_filter"}
_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
                 429: "rate_limit_exceeded", 504: "timeout"}


def _bad_request(message: str, code: str | None = None) -> ProviderError:
    return ProviderError(400, message, "invalid_request_error", code)


def tool_call_id(value: Any) -> Any:
    """A tool call id as Mistral accepts it: 9 characters [a-zA-Z0-9]; others map to a stable digest of themselves."""
    if not isinstance(value, str) or _TOOL_CALL_ID.match(value):
        return value
    number = int.from_bytes(hashlib.sha256(value.encode()).digest()[:8], "big")
    out = []
    for _ in range(9):
        number, digit = divmod(number, 62)
        out.append(_ALPHABET[digit])
    return "".join(out)


def _message(message: Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise _bad_request("each message must be an object")
    role = message.get("role")
    if role == "developer":
        role = "system"
    keys = MESSAGE_FIELDS.get(role)  # type: ignore[arg-type]
    if keys is None:
        raise _bad_request(f"message role '{role}' is not supported by Mistral")
    out = {key: message[key] for key in keys if key in message}
    out["role"] = role
    if role == "assistant" and message.get("tool_calls"):
        calls = []
        for call in message["tool_calls"]:
            if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
                raise _bad_request("assistant tool_calls need a function")
            function = call["function"]
            calls.append({"id": tool_call_id(call.get("id")), "type": "function",
                          "function": {"name": function.get("name"), "arguments": function.get("arguments") or "{}"}})
        out["tool_calls"] = calls
    if role == "tool":
        if "tool_call_id" in out:
            out["tool_call_id"] = tool_call_id(out["tool_call_id"])
        out.setdefault("content", "")
    if role in ("system", "user") and out.get("content") is None:
        out["content"] = ""
    return out


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise _bad_request("Mistral takes one text prompt (a string, or a list holding one string)", "invalid_prompt")
    return prompt


def chat_payload(route_type: str, body: dict[str, Any], target: Target, stream: bool) -> dict[str, Any]:
    """The Mistral chat request body for an OpenAI chat or completions request."""
    model = target.model or body.get("model")
    if not model:
        raise _bad_request("the request must name a model", "model_required")
    payload = {key: value for key, value in body.items() if key in CHAT_FIELDS and value is not None}
    payload["model"] = model
    if route_type == COMPLETIONS:
        payload["messages"] = [{"role": "user", "content": _prompt_text(body.get("prompt"))}]
        for key in ("tools", "tool_choice", "parallel_tool_calls", "response_format"):
            payload.pop(key, None)
    else:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _bad_request("'messages' must be a non-empty array", "missing_required_parameter")
        payload["messages"] = [_message(message) for message in messages]
    if body.get("max_completion_tokens") is not None:
        payload.setdefault("max_tokens", body["max_completion_tokens"])
    if body.get("seed") is not None:
        payload.setdefault("random_seed", body["seed"])
    if payload.get("tool_choice") == "required":
        payload["tool_choice"] = "any"
    for option in _OPTION_FIELDS:
        if target.options.get(option) is not None and option not in payload:
            payload[option] = target.options[option]
    if stream:
        payload["stream"] = True
    else:
        payload.pop("stream", None)
    return payload


def embeddings_payload(body: dict[str, Any], target: Target) -> dict[str, Any]:
    model = target.model or body.get("model")
    if not model:
        raise _bad_request("the request must name a model", "model_required")
    payload = {key: value for key, value in body.items() if key in EMBEDDING_FIELDS and value is not None}
    payload["model"] = model
    if body.get("dimensions") is not None:
        payload.setdefault("output_dimension", body["dimensions"])
    return payload


def mistral_usage(data: Any) -> Usage | None:
    usage = usage_from(data)
    if usage is not None and not usage.cached_tokens:
        details = data.get("prompt_token_details") or {}
        cached = data.get("num_cached_tokens") or (details.get("cached_tokens") if isinstance(details, dict) else 0)
        usage.cached_tokens = token_count(cached) or 0
    return usage


def finish_reason_of(value: Any) -> str | None:
    if value is None:
        return None
    if value == "error":
        raise ProviderError(502, "Mistral reported an error while generating the answer", "api_error",
                            "upstream_generation_error")
    return FINISH_REASONS.get(value, "stop")


def _text(content: Any) -> Any:
    """Content given as chunks -> the joined text (``thinking`` and other non-text chunks are not shown)."""
    if not isinstance(content, list):
        return content
    return "".join(part.get("text") or "" for part in content if isinstance(part, dict) and part.get("type") == "text")


class _ToolIndexes:
    """Stream state: Mistral's tool call index -> OpenAI's ``index`` (a call that brings an id is a new call and takes
    the next index, whatever Mistral numbered it; a fragment without an id continues the call of its index)."""

    def __init__(self) -> None:
        self.count = 0
        self.of: dict[Any, int] = {}

    def index(self, call: dict[str, Any], new: bool) -> int:
        key = call.get("index")
        if new or key not in self.of:
            self.of[key] = self.count
            self.count += 1
        return self.of[key]


def _tool_calls(calls: Any, indexes: _ToolIndexes | None = None) -> list[dict[str, Any]]:
    """Mistral tool calls in OpenAI's shape (``indexes``: in a stream)."""
    out = []
    for call in calls or ():
        if not isinstance(call, dict):
            continue
        function = dict(call.get("function") or {})
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            function["arguments"] = orjson.dumps(arguments).decode()
        entry: dict[str, Any] = {}
        has_id = call.get("id") not in (None, "", "null")
        if indexes is not None:
            entry["index"] = indexes.index(call, has_id)
        if has_id:
            entry["id"] = call["id"]
            entry["type"] = "function"
        entry["function"] = function
        out.append(entry)
    return out


class MistralStreamDecoder(OpenAIStreamDecoder):
    """Mistral's SSE is OpenAI's chunk format; finish reasons, tool calls and the last (usage) chunk are adjusted."""

    def __init__(self, route_type: str) -> None:
        super().__init__()
        self._completions = route_type == COMPLETIONS
        self._tool_indexes = _ToolIndexes()

    def _chunks(self, events: list) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for chunk in super()._chunks(events):
            usage = chunk.pop("usage", None)
            if usage:
                self.usage = mistral_usage(usage)
            choices = [self._choice(choice) for choice in chunk.get("choices") or () if isinstance(choice, dict)]
            if self._completions:
                chunk["object"] = "text_completion"
                choices = [c for c in choices if c["text"] or c["finish_reason"]]
            if choices:
                out.append({**chunk, "choices": choices})
            if usage and self.usage is not None:
                out.append({key: chunk[key] for key in ("id", "object", "created", "model") if key in chunk}
                           | {"choices": [], "usage": self.usage.as_openai()})
        return out

    def _choice(self, choice: dict[str, Any]) -> dict[str, Any]:
        finish = finish_reason_of(choice.get("finish_reason"))
        delta = dict(choice.get("delta") or {})
        if self._completions:
            return {"index": choice.get("index", 0), "text": _text(delta.get("content")) or "", "logprobs": None,
                    "finish_reason": finish}
        if "content" in delta:
            delta["content"] = _text(delta["content"])
        if delta.get("tool_calls"):
            delta["tool_calls"] = _tool_calls(delta["tool_calls"], self._tool_indexes)
        return {**choice, "delta": delta, "finish_reason": finish}


class MistralDriver(OpenAIDriver):
    name = "mistral"
    default_base = DEFAULT_BASE
    paths = PATHS

    def payload(self, route_type: str, body: dict[str, Any], target: Target, stream: bool
                ) -> tuple[dict[str, Any], bool]:
        if route_type == EMBEDDINGS:
            return embeddings_payload(body, target), False
        return chat_payload(route_type, body, target, stream), stream

    def parse_response(self, route_type: str, body: bytes, target: Target) -> tuple[dict[str, Any], Usage | None]:
        data, _ = super().parse_response(route_type, body, target)
        usage = mistral_usage(data.get("usage"))
        if route_type == EMBEDDINGS:
            return data, usage
        choices = []
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            message = dict(choice.get("message") or {})
            finish = finish_reason_of(choice.get("finish_reason")) or "stop"
            text = _text(message.get("content"))
            if route_type == COMPLETIONS:
                choices.append({"index": choice.get("index", 0), "text": text or "", "logprobs": None,
                                "finish_reason": finish})
                continue
            out: dict[str, Any] = {"role": message.get("role") or "assistant", "content": text}
            calls = _tool_calls(message.get("tool_calls"))
            if calls:
                out["tool_calls"] = calls
            choices.append({"index": choice.get("index", 0), "message": out, "logprobs": None,
                            "finish_reason": finish})
        result: dict[str, Any] = {
            "id": data.get("id") or "", "object": "text_completion" if route_type == COMPLETIONS else "chat.completion",
            "created": data.get("created") or int(time.time()), "model": data.get("model") or target.model or "",
            "choices": choices,
        }
        if usage is not None:
            result["usage"] = usage.as_openai()
        return result, usage

    def parse_error(self, status: int, headers: Any, body: bytes) -> ProviderError:
        message, code = _error_message(body) or (f"upstream answered {status}", None)
        type_ = _STATUS_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        if status == 429 and code is None:
            code = "rate_limit_exceeded"
        return ProviderError(status, message, type_, code, retry_after_of(headers))

    def stream_decoder(self, route_type: str, target: Target) -> MistralStreamDecoder:
        return MistralStreamDecoder(route_type)

    # -- preserve: the client's own Mistral request on api.mistral.ai (see base.Driver) --------------------------

    native_origin = "https://api.mistral.ai"

    def native_usage(self, body: bytes, headers: Any = None) -> Usage | None:
        data = native.json_of(body)
        return mistral_usage(data.get("usage")) if isinstance(data, dict) else None


def _error_message(body: bytes) -> tuple[str, str | None] | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    code = data.get("code")
    code = str(code) if code not in (None, "") else None
    error = data.get("error")
    if isinstance(error, dict):  # OpenAI-style envelope, seen on some endpoints
        return _error_message(orjson.dumps(error)) if error.get("message") else None
    message = data.get("message", data.get("detail"))
    if isinstance(message, dict):
        message = message.get("detail", message.get("message", message))
    if isinstance(message, list):
        parts = []
        for item in message:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc") or ())
                text = str(item.get("msg") or "")
                parts.append(f"{where}: {text}" if where else text)
            else:
                parts.append(str(item))
        message = "; ".join(parts)
    if not message:
        return None
    return str(message), code


driver = MistralDriver()

__all__ = ["MistralDriver", "MistralStreamDecoder", "chat_payload", "driver", "embeddings_payload",
           "finish_reason_of", "mistral_usage", "tool_call_id"]

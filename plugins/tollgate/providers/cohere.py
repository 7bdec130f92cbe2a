"""Cohere Chat API v2 (``POST https://api.cohere.com/v2/chat``) and Embed v2 (``/v2/embed``), spoken to OpenAI clients.

Targets configured for Cohere's v1 API (``model.options.cohere.api_version: v1``, or an ``upstream_url`` whose path
is under ``/v1``, as Kong's own ai-proxy configs are) speak it instead: see ``cohere_v1.py``.

Request (OpenAI chat -> Cohere v2): messages keep their roles (``developer`` -> ``system``); content is a string or
parts: ``text`` -> ``{"type": "text"}``, ``image_url`` -> ``{"type": "image_url", "image_url": {"url", "detail"?}}``
(data: and http(s) URLs, as Cohere takes both). An assistant message's ``tool_calls`` pass as they are and its text
becomes ``tool_plan`` (Cohere's place for the text that comes with tool calls); ``tool`` messages keep
``tool_call_id`` and content (text parts -> text blocks). ``tools`` -> ``{type: function, function: {name,
description, parameters}}`` (``strict`` on any tool -> ``strict_tools``); ``tool_choice`` ``required`` ->
``REQUIRED``, ``none`` -> ``NONE``, ``auto`` -> left out, a named function -> ``REQUIRED`` with only that tool
offered. ``max_completion_tokens``/``max_tokens`` -> ``max_tokens``, ``temperature``, ``top_p`` -> ``p``, ``top_k``
-> ``k`` (request, else ``model.options``), ``stop`` -> ``stop_sequences``, ``seed``, ``frequency_penalty``,
``presence_penalty``, ``response_format`` (``json_object``; ``json_schema`` -> ``json_object`` with its schema).
``n`` > 1 is refused (400); ``logprobs``, ``user`` and other OpenAI-only fields are not sent.

Completions route: the ``prompt`` (a string, or a list holding one string) is sent as one user message and the
answer comes back as a ``text_completion``. Embeddings: ``input`` -> ``texts``, ``input_type`` ``search_document``
(a request's own ``input_type`` wins), ``embedding_types`` ``["float"]`` (``["base64"]`` for ``encoding_format:
base64``), ``dimensions`` -> ``output_dimension``; answered as OpenAI's ``list``.

Answer: text items are joined into ``content`` (``thinking`` items are not shown); with tool calls and no text, the
``tool_plan`` is the content. ``finish_reason``: COMPLETE / STOP_SEQUENCE -> stop, MAX_TOKENS -> length, TOOL_CALL ->
tool_calls; ERROR (and TIMEOUT) mean the generation failed and are raised (502 / 504), in a stream too. Usage:
``usage.tokens`` (what the model processed) when present, else ``usage.billed_units``; ``usage.cached_tokens`` ->
cached tokens. Cohere answers carry no model name: the configured (or requested) one is reported.

Stream: SSE events ``message-start``, ``content-start|delta|end``, ``tool-plan-delta`` (-> content),
``tool-call-start|delta|end``, ``citation-*``, ``message-end`` (finish reason, usage, error), each translated to
``chat.completion.chunk`` dicts the moment it is decoded.

Errors: ``{"id"?, "message"}`` with the HTTP status; the message is kept, the type follows the status (429 ->
``rate_limit_exceeded``), Retry-After is honoured.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from . import native
from .base import (CHAT, COMPLETIONS, EMBEDDINGS, ChunkWriter, ProviderError, Target, UpstreamRequest, Usage,
                   json_object, token_count, token_counts, unexpected)
from .framing import SSEDecoder
from .http import JSONDriver
from .openai import retry_after_of

DEFAULT_BASE = "https://api.cohere.com"
PATHS = {CHAT: "/v2/chat", COMPLETIONS: "/v2/chat", EMBEDDINGS: "/v2/embed"}

FINISH_REASONS = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls"}
_FAILED = {"ERROR": (502, "api_error", "upstream_generation_error"), "TIMEOUT": (504, "timeout", "upstream_timeout")}
_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
                 429: "rate_limit_exceeded", 498: "authentication_error", 504: "timeout"}
# OpenAI request fields Cohere takes under the same name
_SAME_NAME = ("seed", "frequency_penalty", "presence_penalty")


def _bad_request(message: str, code: str | None = None) -> ProviderError:
    return ProviderError(400, message, "invalid_request_error", code)


def finish_reason_of(value: Any, error: Any = None) -> str | None:
    """Cohere's ``finish_reason`` as OpenAI's; a failed generation raises (an unknown reason reads as "stop")."""
    if value is None:
        return None
    if value in _FAILED:
        status, type_, code = _FAILED[value]
        raise ProviderError(status, str(error or f"Cohere ended the generation with {value}"), type_, code)
    return FINISH_REASONS.get(value, "stop")


def usage_of(data: Any) -> Usage | None:
    """Cohere's usage (or embed ``meta``): ``tokens`` when present, else ``billed_units``."""
    if not isinstance(data, dict):
        return None
    counts = token_counts(data.get("tokens"), "input_tokens", "output_tokens")
    if counts is None or not isinstance(data["tokens"].get("input_tokens"), (int, float)):
        counts = token_counts(data.get("billed_units"), "input_tokens", "output_tokens")
    if counts is None:
        return None
    prompt, completion = counts
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 cached_tokens=token_count(data.get("cached_tokens")) or 0)


# ---------------------------------------------------------------------------------------------------------- request


def _text_of(content: Any, role: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _bad_request(f"{role} message content must be a string or a list of parts")
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type", "text") in ("text", "refusal"):
            texts.append(str(part.get("text", part.get("refusal")) or ""))
        else:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise _bad_request(f"{role} message content part type '{kind}' is not supported by Cohere")
    return "".join(texts)


def _user_content(content: Any) -> Any:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _bad_request("user message content must be a string or a list of parts")
    parts = []
    for part in content:
        if isinstance(part, str):
            part = {"type": "text", "text": part}
        if not isinstance(part, dict):
            raise _bad_request("user message content parts must be objects")
        kind = part.get("type", "text")
        if kind == "text":
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url.startswith(("data:", "http://", "https://")):
                raise _bad_request("image_url must be an http(s) URL or a data URL")
            entry: dict[str, Any] = {"url": url}
            if isinstance(image, dict) and image.get("detail"):
                entry["detail"] = image["detail"]
            parts.append({"type": "image_url", "image_url": entry})
        else:
            raise _bad_request(f"content part type '{kind}' is not supported by Cohere")
    return parts


def _tool_call(call: Any) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not function.get("name"):
        raise _bad_request("assistant tool_calls need a function with a name")
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
    return {"id": call.get("id") or "", "type": "function",
            "function": {"name": function["name"], "arguments": arguments}}


def _message(message: Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise _bad_request("each message must be an object")
    role = message.get("role")
    content = message.get("content")
    if role in ("system", "developer"):
        return {"role": "system", "content": _text_of(content, "system")}
    if role == "user":
        return {"role": "user", "content": _user_content(content)}
    if role == "assistant":
        out: dict[str, Any] = {"role": "assistant"}
        text = _text_of(content, "assistant")
        if message.get("tool_calls"):
            out["tool_calls"] = [_tool_call(call) for call in message["tool_calls"]]
            if text:
                out["tool_plan"] = text
        else:
            out["content"] = text
        return out
    if role == "tool":
        if not message.get("tool_call_id"):
            raise _bad_request("tool messages need a tool_call_id")
        if isinstance(content, list):
            content = [{"type": "text", "text": _text_of([part], "tool")} for part in content]
        elif not isinstance(content, str):
            content = orjson.dumps(content).decode() if content is not None else ""
        return {"role": "tool", "tool_call_id": message["tool_call_id"], "content": content}
    raise _bad_request(f"message role '{role}' is not supported by Cohere")


def _tools(tools: Any) -> tuple[list[dict[str, Any]], bool]:
    if not isinstance(tools, list):
        raise _bad_request("'tools' must be an array")
    out, strict = [], False
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(function, dict):
            raise _bad_request("only function tools are supported")
        if not function.get("name"):
            raise _bad_request("each function tool needs a name")
        entry: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            entry["description"] = function["description"]
        entry["parameters"] = function.get("parameters") or {"type": "object", "properties": {}}
        strict = strict or function.get("strict") is True
        out.append({"type": "function", "function": entry})
    return out, strict


def _apply_tool_choice(payload: dict[str, Any], choice: Any) -> None:
    if choice is None or choice == "auto":
        return
    if choice == "none":
        payload["tool_choice"] = "NONE"
    elif choice == "required":
        payload["tool_choice"] = "REQUIRED"
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        name = choice["function"]["name"]
        chosen = [tool for tool in payload.get("tools") or () if tool["function"]["name"] == name]
        if not chosen:
            raise _bad_request(f"tool_choice names the function '{name}', which is not among the tools")
        payload["tools"] = chosen  # Cohere cannot force one tool by name: offer only it, and require a call
        payload["tool_choice"] = "REQUIRED"
    else:
        raise _bad_request("tool_choice must be 'auto', 'none', 'required' or {'type': 'function', ...}")


def _response_format(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict) or value.get("type") in (None, "text"):
        return None
    if value["type"] == "json_object":
        return {"type": "json_object"}
    if value["type"] == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema")
        return {"type": "json_object", "json_schema": schema} if schema else {"type": "json_object"}
    raise _bad_request(f"response_format type '{value['type']}' is not supported by Cohere")


def _first(body: dict[str, Any], options: dict[str, Any], *names: str, option: str) -> Any:
    for name in names:
        if body.get(name) is not None:
            return body[name]
    return options.get(option)


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise _bad_request("Cohere takes one text prompt (a string, or a list holding one string)", "invalid_prompt")
    return prompt


def chat_payload(route_type: str, body: dict[str, Any], target: Target, stream: bool) -> dict[str, Any]:
    """The Cohere v2 chat request body for an OpenAI chat or completions request."""
    options = target.options or {}
    model = target.model or body.get("model")
    if not model:
        raise _bad_request("the request must name a model", "model_required")
    if isinstance(body.get("n"), int) and body["n"] > 1:
        raise _bad_request("Cohere returns one choice per request; n > 1 is not supported", "unsupported_parameter")
    payload: dict[str, Any] = {"model": model}
    if route_type == COMPLETIONS:
        payload["messages"] = [{"role": "user", "content": _prompt_text(body.get("prompt"))}]
    else:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _bad_request("'messages' must be a non-empty array", "missing_required_parameter")
        payload["messages"] = [_message(message) for message in messages]
        if body.get("tools"):
            payload["tools"], strict = _tools(body["tools"])
            if strict:
                payload["strict_tools"] = True
            _apply_tool_choice(payload, body.get("tool_choice"))
        response_format = _response_format(body.get("response_format"))
        if response_format:
            payload["response_format"] = response_format
    for names, option, field in ((("max_completion_tokens", "max_tokens"), "max_tokens", "max_tokens"),
                                 (("temperature",), "temperature", "temperature"),
                                 (("top_p",), "top_p", "p"), (("top_k",), "top_k", "k")):
        value = _first(body, options, *names, option=option)
        if value is not None:
            payload[field] = value
    stop = body.get("stop")
    if stop:
        payload["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    for name in _SAME_NAME:
        if body.get(name) is not None:
            payload[name] = body[name]
    if stream:
        payload["stream"] = True
    return payload


def embed_payload(body: dict[str, Any], target: Target) -> dict[str, Any]:
    model = target.model or body.get("model")
    if not model:
        raise _bad_request("the request must name a model", "model_required")
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(text, str) for text in texts):
        raise _bad_request("Cohere embeds text: 'input' must be a string or an array of strings", "invalid_input")
    kind = "base64" if body.get("encoding_format") == "base64" else "float"
    payload: dict[str, Any] = {"model": model, "texts": texts,
                               "input_type": body.get("input_type") or "search_document", "embedding_types": [kind]}
    if body.get("dimensions") is not None:
        payload["output_dimension"] = body["dimensions"]
    return payload


# ---------------------------------------------------------------------------------------------------------- answers


def _parts(message: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    content = message.get("content")
    texts = [item["text"] for item in content if isinstance(item, dict) and item.get("type") == "text"
             and isinstance(item.get("text"), str)] if isinstance(content, list) else []
    calls = [_tool_call(call) for call in message.get("tool_calls") or () if isinstance(call, dict)]
    if texts:
        text: str | None = "".join(texts)
    elif message.get("tool_plan"):
        text = message["tool_plan"]
    else:
        text = None if calls else ""
    return text, calls


def _embeddings(data: dict[str, Any], target: Target) -> tuple[dict[str, Any], Usage | None]:
    vectors = data.get("embeddings")
    if isinstance(vectors, dict):
        vectors = vectors.get("float", vectors.get("base64"))
    if not isinstance(vectors, list):
        raise unexpected("the embeddings answer has no float or base64 embeddings")
    usage = usage_of(data.get("meta"))
    out: dict[str, Any] = {"object": "list", "model": target.model or "",
                           "data": [{"object": "embedding", "index": i, "embedding": vector}
                                    for i, vector in enumerate(vectors)]}
    if usage is not None:   # else the proxy adds its estimate, marked as such (never a zero)
        usage = Usage(prompt_tokens=usage.prompt_tokens, total_tokens=usage.prompt_tokens)
        out["usage"] = {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens}
    return out, usage


class CohereStreamDecoder:
    """Cohere v2's SSE events -> OpenAI chunks, one event at a time (nothing is held back but a partial frame)."""

    def __init__(self, route_type: str, target: Target) -> None:
        self._sse = SSEDecoder()
        self._out = ChunkWriter(route_type, target.model or "", int(time.time()))
        self._completions = self._out.completions
        self._tools: dict[Any, int] = {}  # Cohere tool call index -> OpenAI tool call index
        self._finished = False
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self._translate(self._sse.feed(data))

    def close(self) -> list[dict[str, Any]]:
        return self._translate(self._sse.close())

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return self._out.choice(delta, finish)

    def _translate(self, events: list) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        for event in events:
            if event.raw == b"[DONE]":
                continue
            data = json_object(event.data, "stream frame")
            kind = data.get("type") or event.event
            handler = getattr(self, "_on_" + kind.replace("-", "_"), None) if isinstance(kind, str) else None
            if handler is not None:
                chunks.extend(handler(data))
        return chunks

    @staticmethod
    def _message(data: dict[str, Any]) -> dict[str, Any]:
        delta = data.get("delta")
        message = delta.get("message") if isinstance(delta, dict) else None
        return message if isinstance(message, dict) else {}

    def _on_message_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        self._out.id = str(data.get("id") or self._out.id)
        return [] if self._completions else [self._chunk({"role": "assistant", "content": ""})]

    def _on_content_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        content = self._message(data).get("content")
        text = content.get("text") if isinstance(content, dict) and content.get("type", "text") == "text" else None
        return [self._chunk({"content": text})] if text else []

    def _on_content_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        content = self._message(data).get("content")
        text = content.get("text") if isinstance(content, dict) else None  # "thinking" deltas are not shown
        return [self._chunk({"content": text})] if text else []

    def _on_tool_plan_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        plan = self._message(data).get("tool_plan")
        return [self._chunk({"content": plan})] if plan and not self._completions else []

    def _on_tool_call_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        call = self._message(data).get("tool_calls")
        if not isinstance(call, dict) or self._completions:
            return []
        index = self._tools[data.get("index")] = len(self._tools)
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        return [self._chunk({"tool_calls": [{"index": index, "id": call.get("id") or "", "type": "function",
                                             "function": {"name": function.get("name") or "",
                                                          "arguments": function.get("arguments") or ""}}]})]

    def _on_tool_call_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        call = self._message(data).get("tool_calls")
        function = call.get("function") if isinstance(call, dict) else None
        fragment = function.get("arguments") if isinstance(function, dict) else None
        index = self._tools.get(data.get("index"), len(self._tools) - 1)
        if not fragment or index < 0:
            return []
        return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})]

    def _on_message_end(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        if delta.get("error") and delta.get("finish_reason") not in _FAILED:
            raise ProviderError(502, str(delta["error"]), "api_error", "upstream_generation_error")
        finish = finish_reason_of(delta.get("finish_reason"), delta.get("error")) or "stop"
        self.usage = usage_of(delta.get("usage")) or self.usage
        if self._finished:
            return []
        self._finished = True
        chunks = [self._chunk({}, finish)]
        if self.usage is not None:
            chunks.append(self._out.usage(self.usage))
        return chunks


class CohereDriver(JSONDriver):
    name = "cohere"
    default_base = DEFAULT_BASE
    paths = PATHS

    def url(self, route_type: str, target: Target, body: dict[str, Any] | None = None) -> str:
        options = target.options or {}
        if options.get("upstream_url") or not cohere_v1.speaks_v1(target):
            return super().url(route_type, target, body)
        return self.default_base + (options.get("upstream_path")
                                    or cohere_v1.PATHS["embed" if route_type == EMBEDDINGS else "chat"])

    def payload(self, route_type: str, body: dict[str, Any], target: Target, stream: bool
                ) -> tuple[dict[str, Any], bool]:
        if route_type == EMBEDDINGS:
            payload = embed_payload(body, target)
            if cohere_v1.speaks_v1(target):
                payload.pop("output_dimension", None)   # v1's embed does not take it
            return payload, False
        payload = chat_payload(route_type, body, target, stream)
        if cohere_v1.speaks_v1(target):
            payload.pop("messages")
            payload.pop("tools", None)
            payload.pop("strict_tools", None)
            payload.pop("tool_choice", None)
            if "json_schema" in payload.get("response_format", {}):
                payload["response_format"]["schema"] = payload["response_format"].pop("json_schema")  # v1's name
            payload.update(cohere_v1.chat_fields(route_type, body))
        return payload, stream

    def parse_response(self, route_type: str, body: bytes, target: Target) -> tuple[dict[str, Any], Usage | None]:
        if route_type != EMBEDDINGS and cohere_v1.speaks_v1(target):
            return cohere_v1.parse_chat(route_type, body, target)
        data = json_object(body)
        if route_type == EMBEDDINGS:
            return _embeddings(data, target)
        if not isinstance(data.get("message"), dict):
            raise unexpected("the chat answer has no message")
        message = data["message"]
        finish = finish_reason_of(data.get("finish_reason"), data.get("error_message")) or "stop"
        usage = usage_of(data.get("usage"))
        text, calls = _parts(message)
        common = {"id": str(data.get("id") or ""), "created": int(time.time()), "model": target.model or ""}
        if route_type == COMPLETIONS:
            out: dict[str, Any] = {**common, "object": "text_completion",
                                   "choices": [{"index": 0, "text": text or "", "logprobs": None,
                                                "finish_reason": finish}]}
        else:
            reply: dict[str, Any] = {"role": "assistant", "content": text}
            if calls:
                reply["tool_calls"] = calls
            out = {**common, "object": "chat.completion",
                   "choices": [{"index": 0, "message": reply, "logprobs": None, "finish_reason": finish}]}
        if usage is not None:
            out["usage"] = usage.as_openai()
        return out, usage

    def parse_error(self, status: int, headers: Any, body: bytes) -> ProviderError:
        message = f"upstream answered {status}"
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            found = data.get("message")
            if found is None and isinstance(data.get("error"), dict):
                found = data["error"].get("message")
            if found is None and isinstance(data.get("error"), str):
                found = data["error"]
            if found:
                message = str(found)
        type_ = _STATUS_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        code = "rate_limit_exceeded" if status == 429 else None
        return ProviderError(status, message, type_, code, retry_after_of(headers))

    def stream_decoder(self, route_type: str, target: Target) -> Any:
        if cohere_v1.speaks_v1(target):
            return cohere_v1.CohereV1StreamDecoder(route_type, target)
        return CohereStreamDecoder(route_type, target)

    # -- preserve: the client's own Cohere v2 request (see base.Driver) --------------------------------------------

    def native_request(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes,
                       target: Target) -> UpstreamRequest:
        headers = dict(headers)
        url = native.native_url(self.default_base, path, query, target.options or {}, target.auth)
        url, body = native.apply_auth(url, headers, body, target.auth or {})
        return UpstreamRequest(method, url, headers, body)

    def native_usage(self, body: bytes, headers: Any = None) -> Usage | None:
        """Chat's ``usage``, or Embed's ``meta`` (its billed input tokens)."""
        data = native.json_of(body)
        if not isinstance(data, dict):
            return None
        return usage_of(data.get("usage")) or usage_of(data.get("meta"))

    def native_stream_usage(self, target: Target) -> native.StreamUsage:
        return native.StreamUsage(CohereStreamDecoder(CHAT, target))


from . import cohere_v1  # noqa: E402 - v1 reads its answers with the helpers above

driver = CohereDriver()

__all__ = ["CohereDriver", "CohereStreamDecoder", "chat_payload", "driver", "embed_payload", "finish_reason_of",
           "usage_of"]

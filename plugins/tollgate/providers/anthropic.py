"""Anthropic Messages API (``POST /v1/messages``), spoken to OpenAI clients.

Request (OpenAI chat -> Anthropic):

* ``system`` / ``developer`` messages are hoisted into the top-level ``system`` (Anthropic has no system role; several
  become text blocks in order, wherever they stood in the conversation);
* ``user`` content parts: ``text`` -> text block, ``image_url`` -> image block (``data:`` URLs as a ``base64`` source,
  ``http(s)`` URLs as a ``url`` source), ``file`` with a ``data:application/pdf`` ``file_data`` -> document block;
* ``assistant`` ``tool_calls`` -> ``tool_use`` blocks; ``tool`` messages -> ``tool_result`` blocks in a user turn
  (consecutive turns of one role are merged, so parallel tool results share one user turn, first);
* ``tools`` -> ``{name, description, input_schema}``; ``tool_choice`` auto/none/required/{function} ->
  ``{"type": auto|none|any|tool}``; ``parallel_tool_calls: false`` -> ``disable_parallel_tool_use``;
* ``max_completion_tokens`` / ``max_tokens`` (else ``model.options.max_tokens``, else 4096: Anthropic requires it),
  ``temperature``, ``top_p``, ``top_k`` (request, else options), ``stop`` -> ``stop_sequences``, ``user`` ->
  ``metadata.user_id``. Unsupported: ``n`` > 1 (400); ``response_format``, ``logprobs``, ``seed``, penalties are
  not sent.

Completions route (``llm/v1/completions``): the ``prompt`` (a string, or a list holding one string) becomes a single
user message; the answer comes back as a ``text_completion``. Embeddings: Anthropic has none (400).

Answer (Anthropic -> OpenAI): text blocks are joined into ``content``, ``tool_use`` blocks become ``tool_calls``
(``input`` re-encoded as the JSON ``arguments`` string), ``thinking`` blocks are not shown (their tokens are counted in
``completion_tokens_details.reasoning_tokens``). Usage: ``prompt_tokens`` = ``input_tokens`` +
``cache_read_input_tokens`` + ``cache_creation_input_tokens`` (Anthropic's ``input_tokens`` counts only the uncached
part), ``cached_tokens`` = ``cache_read_input_tokens``, ``completion_tokens`` = ``output_tokens``,
``reasoning_tokens`` = ``output_tokens_details.thinking_tokens``.

Stream: SSE events ``message_start``, ``content_block_start|delta|stop`` (``text_delta``, ``input_json_delta``),
``message_delta`` (stop reason, cumulative usage), ``message_stop``, ``ping`` and ``error``, each translated to
``chat.completion.chunk`` dicts the moment it is decoded.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from . import native
from .base import (CHAT, COMPLETIONS, EMBEDDINGS, ChunkWriter, ProviderError, Target, UpstreamRequest, Usage,
                   json_object, token_count, token_counts, unexpected)
from .framing import SSEDecoder
from .http import apply_auth
from .openai import error_from

DEFAULT_URL = "https://api.anthropic.com/v1/messages"
DEFAULT_BASE = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error type -> (OpenAI error type, HTTP status used when only the type is known, i.e. in a stream)
ERROR_TYPES: dict[str, tuple[str, int]] = {
    "invalid_request_error": ("invalid_request_error", 400),
    "authentication_error": ("authentication_error", 401),
    "billing_error": ("insufficient_quota", 402),
    "permission_error": ("permission_error", 403),
    "not_found_error": ("not_found_error", 404),
    "request_too_large": ("invalid_request_error", 413),
    "rate_limit_error": ("rate_limit_exceeded", 429),
    "api_error": ("api_error", 500),
    "timeout_error": ("timeout", 504),
    "overloaded_error": ("api_error", 529),
}
_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "insufficient_quota",
                 403: "permission_error", 404: "not_found_error", 413: "invalid_request_error",
                 429: "rate_limit_exceeded", 504: "timeout"}

_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def finish_reason_of(stop_reason: Any) -> str | None:
    """Anthropic's ``stop_reason`` as an OpenAI ``finish_reason`` (an unknown one reads as "stop")."""
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, "stop")


def usage_of(data: Any) -> Usage | None:
    """Anthropic's usage object as Tollgate's Usage (cache reads and writes are prompt tokens)."""
    counts = token_counts(data, "input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                          "output_tokens")
    if counts is None:
        return None
    uncached, cache_read, cache_write, output = counts
    details = data.get("output_tokens_details")
    thinking = token_count(details.get("thinking_tokens")) if isinstance(details, dict) else None
    prompt = uncached + cache_read + cache_write
    return Usage(prompt_tokens=prompt, completion_tokens=output, total_tokens=prompt + output,
                 cached_tokens=cache_read, reasoning_tokens=thinking or 0)


def _bad_request(message: str, code: str | None = None) -> ProviderError:
    return ProviderError(400, message, "invalid_request_error", code)


# ---------------------------------------------------------------------------------------------------------- request


def _data_url(url: str) -> tuple[str, str] | None:
    """``data:<media type>;base64,<data>`` -> (media type, data); None for any other URL."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        raise _bad_request("image and file data URLs must be base64 encoded (data:<type>;base64,...)")
    return head[: -len(";base64")].split(";")[0].strip().lower(), data


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise _bad_request("an image_url part needs a url")
    inline = _data_url(url)
    if inline is None:
        if not url.startswith(("http://", "https://")):
            raise _bad_request("image_url must be an http(s) URL or a base64 data URL")
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = inline
    if media_type not in _IMAGE_TYPES:
        raise _bad_request(f"image type {media_type or '(none)'} is not supported by Anthropic "
                           f"(supported: {', '.join(_IMAGE_TYPES)})")
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _file_block(part: dict[str, Any]) -> dict[str, Any]:
    file = part.get("file") or {}
    inline = _data_url(file.get("file_data") or "") if isinstance(file, dict) else None
    if inline is None or inline[0] != "application/pdf":
        raise _bad_request("only PDF files sent inline (file.file_data as a base64 data URL) are supported")
    return {"type": "document", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}


def _blocks(content: Any, role: str) -> list[dict[str, Any]]:
    """An OpenAI message ``content`` as Anthropic content blocks (empty text is dropped: Anthropic refuses it)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad_request(f"{role} message content must be a string or a list of parts")
    blocks = []
    for part in content:
        if isinstance(part, str):
            kind, part = "text", {"text": part}
        elif isinstance(part, dict):
            kind = part.get("type", "text")
        else:
            raise _bad_request(f"{role} message content parts must be objects")
        if kind in ("text", "refusal"):
            text = part.get("text", part.get("refusal"))
            if isinstance(text, str) and text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(_image_block(part))
        elif kind == "file":
            blocks.append(_file_block(part))
        else:
            raise _bad_request(f"content part type '{kind}' is not supported by Anthropic")
    return blocks


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content
                         if isinstance(p, str) or (isinstance(p, dict) and p.get("type", "text") == "text"))
    return ""


def _tool_use(call: Any) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not function.get("name"):
        raise _bad_request("assistant tool_calls need a function with a name")
    arguments = function.get("arguments") or "{}"
    try:
        arguments = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        raise _bad_request(f"tool call '{function['name']}' has arguments that are not JSON") from None
    if not isinstance(arguments, dict):
        raise _bad_request(f"tool call '{function['name']}' arguments must be a JSON object")
    return {"type": "tool_use", "id": call.get("id") or "", "name": function["name"], "input": arguments}


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    tool_use_id = message.get("tool_call_id")
    if not tool_use_id:
        raise _bad_request("tool messages need a tool_call_id")
    content = message.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id}
    if isinstance(content, list):
        block["content"] = _blocks(content, "tool")
    elif content not in (None, ""):
        block["content"] = str(content)
    return block


def _conversation(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenAI ``messages`` -> (Anthropic ``system`` text blocks, Anthropic ``messages``)."""
    if not isinstance(messages, list) or not messages:
        raise _bad_request("'messages' must be a non-empty array", "missing_required_parameter")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in messages:
        if not isinstance(message, dict):
            raise _bad_request("each message must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text_of(message.get("content"))
            if text:
                system.append({"type": "text", "text": text})
        elif role == "user":
            add("user", _blocks(message.get("content"), "user"))
        elif role == "assistant":
            blocks = _blocks(message.get("content"), "assistant")
            blocks += [_tool_use(call) for call in message.get("tool_calls") or ()]
            add("assistant", blocks)
        elif role == "tool":
            add("user", [_tool_result(message)])
        else:
            raise _bad_request(f"message role '{role}' is not supported by Anthropic")
    if not turns:
        raise _bad_request("the conversation needs at least one user message", "missing_required_parameter")
    # A turn made of one plain text block is sent in the documented short form ("content": "...").
    for turn in turns:
        content = turn["content"]
        if len(content) == 1 and content[0]["type"] == "text":
            turn["content"] = content[0]["text"]
    return system, turns


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad_request("'tools' must be an array")
    out = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(function, dict):
            raise _bad_request("only function tools are supported")
        if not function.get("name"):
            raise _bad_request("each function tool needs a name")
        entry: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            entry["description"] = function["description"]
        entry["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
        out.append(entry)
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None:
        result = None
    elif choice in ("auto", "none"):
        result = {"type": choice}
    elif choice == "required":
        result = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        result = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise _bad_request("tool_choice must be 'auto', 'none', 'required' or {'type': 'function', ...}")
    if parallel is False:
        if result is None:
            result = {"type": "auto"}
        if result["type"] != "none":
            result["disable_parallel_tool_use"] = True
    return result


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _bad_request("Anthropic takes one text prompt (a string, or a list holding one string)", "invalid_prompt")
    if not prompt:
        raise _bad_request("the prompt is empty", "invalid_prompt")
    return prompt


def _first(body: dict[str, Any], options: dict[str, Any], *names: str) -> Any:
    """The first of ``names`` the request sets, else the config option named like the last one."""
    for name in names:
        if body.get(name) is not None:
            return body[name]
    return options.get(names[-1])


def messages_payload(route_type: str, body: dict[str, Any], target: Target, stream: bool) -> dict[str, Any]:
    """The Anthropic Messages request body for an OpenAI chat or completions request."""
    options = target.options or {}
    model = target.model or body.get("model")
    if not model:
        raise _bad_request("the request must name a model", "model_required")
    if route_type == CHAT:
        system, turns = _conversation(body.get("messages"))
    else:
        system, turns = [], [{"role": "user", "content": _prompt_text(body.get("prompt"))}]
    if isinstance(body.get("n"), int) and body["n"] > 1:
        raise _bad_request("Anthropic returns one choice per request; n > 1 is not supported", "unsupported_parameter")
    payload: dict[str, Any] = {"model": model}
    if system:
        payload["system"] = system[0]["text"] if len(system) == 1 else system
    payload["messages"] = turns
    max_tokens = _first(body, options, "max_completion_tokens", "max_tokens")
    payload["max_tokens"] = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    for name in ("temperature", "top_p", "top_k"):
        value = _first(body, options, name)
        if value is not None:
            payload[name] = value
    stop = body.get("stop")
    if stop:
        payload["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if route_type == CHAT:
        if body.get("tools"):
            payload["tools"] = _tools(body["tools"])
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None and payload.get("tools"):
            payload["tool_choice"] = choice
    if isinstance(body.get("user"), str) and body["user"]:
        payload["metadata"] = {"user_id": body["user"]}
    if stream:
        payload["stream"] = True
    return payload


# ---------------------------------------------------------------------------------------------------------- answers


def _message_parts(data: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in data.get("content") or ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"),
                                       "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    text = "".join(texts) if texts else (None if calls else "")
    return text, calls


class AnthropicStreamDecoder:
    """Anthropic's SSE events -> OpenAI chunks, one event at a time (nothing is held back but a partial frame)."""

    def __init__(self, route_type: str, target: Target) -> None:
        self._sse = SSEDecoder()
        self._out = ChunkWriter(route_type, target.model or "", int(time.time()), "msg")
        self._completions = self._out.completions
        self._start_usage: dict[str, Any] = {}
        self._tools: dict[int, dict[str, Any]] = {}  # Anthropic block index -> {index, sent, input}
        self._finished = False
        self._usage_sent = False
        self._error: ProviderError | None = None
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._raise_pending()
        return self._translate(self._sse.feed(data))

    def close(self) -> list[dict[str, Any]]:
        self._raise_pending()
        chunks = self._translate(self._sse.close())
        self._raise_pending()
        if self._finished and not self._usage_sent and self.usage is not None:
            chunks.append(self._usage_chunk())
        return chunks

    # --------------------------------------------------------------------------------------------------- chunks
    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return self._out.choice(delta, finish)

    def _usage_chunk(self) -> dict[str, Any]:
        self._usage_sent = True
        return self._out.usage(self.usage)  # type: ignore[arg-type]

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def _translate(self, events: list) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        try:
            self._translate_into(chunks, events)
        except ProviderError as exc:
            if not chunks:
                raise
            # The chunks decoded before the error in the same read go out first; the error is raised next call.
            self._error = exc
        return chunks

    def _translate_into(self, chunks: list[dict[str, Any]], events: list) -> None:
        for event in events:
            if event.event == "ping":
                continue
            data = json_object(event.data, "stream frame")
            kind = data.get("type") or event.event
            handler = getattr(self, "_on_" + kind, None) if isinstance(kind, str) else None
            if handler is not None:
                chunks.extend(handler(data))

    # --------------------------------------------------------------------------------------------------- events
    def _on_message_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        message = data.get("message") or {}
        self._out.id = message.get("id") or self._out.id
        self._out.model = message.get("model") or self._out.model
        self._start_usage = dict(message.get("usage") or {})
        if self._completions:
            return []
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_content_block_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        block = data.get("content_block") or {}
        if block.get("type") == "text":
            return [self._chunk({"content": block["text"]})] if block.get("text") else []
        if block.get("type") != "tool_use" or self._completions:
            return []
        tool = {"index": len(self._tools), "sent": False, "input": block.get("input")}
        self._tools[data.get("index", -1)] = tool
        return [self._chunk({"tool_calls": [{"index": tool["index"], "id": block.get("id"), "type": "function",
                                             "function": {"name": block.get("name"), "arguments": ""}}]})]

    def _on_content_block_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        delta = data.get("delta") or {}
        if delta.get("type") == "text_delta":
            text = delta.get("text") or ""
            return [self._chunk({"content": text})] if text else []
        if delta.get("type") == "input_json_delta":
            tool = self._tools.get(data.get("index", -1))
            fragment = delta.get("partial_json") or ""
            if tool is None or not fragment:
                return []
            tool["sent"] = True
            return [self._chunk({"tool_calls": [{"index": tool["index"], "function": {"arguments": fragment}}]})]
        return []  # thinking, signature and citation deltas have no OpenAI chat equivalent

    def _on_content_block_stop(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        tool = self._tools.get(data.get("index", -1))
        if tool is None or tool["sent"]:
            return []
        # No argument fragments arrived: send the block's own input so the client gets valid JSON arguments.
        tool["sent"] = True
        arguments = orjson.dumps(tool["input"] if isinstance(tool["input"], dict) else {}).decode()
        return [self._chunk({"tool_calls": [{"index": tool["index"], "function": {"arguments": arguments}}]})]

    def _on_message_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        delta = data.get("delta") or {}
        usage = data.get("usage")
        if isinstance(usage, dict):
            # message_delta counts are cumulative: they replace message_start's, absent ones keep it.
            merged = {**self._start_usage, **{k: v for k, v in usage.items() if v is not None}}
            self.usage = usage_of(merged)
        elif self._start_usage:
            self.usage = usage_of(self._start_usage)
        finish = finish_reason_of(delta.get("stop_reason"))
        if finish is None or self._finished:
            return []
        self._finished = True
        return [self._chunk({}, finish)]

    def _on_message_stop(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        if self.usage is None and self._start_usage:
            self.usage = usage_of(self._start_usage)
        if self.usage is None or self._usage_sent:
            return []
        return [self._usage_chunk()]

    def _on_error(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        kind = str(error.get("type") or "api_error")
        openai_type, status = ERROR_TYPES.get(kind, ("api_error", 502))
        raise ProviderError(status, str(error.get("message") or kind), openai_type, kind)


class AnthropicDriver:
    name = "anthropic"

    def url(self, route_type: str, target: Target) -> str:
        options = target.options or {}
        if options.get("upstream_url"):
            return options["upstream_url"]
        if options.get("upstream_path"):
            return DEFAULT_BASE + options["upstream_path"]
        return DEFAULT_URL

    def build_request(self, route_type: str, body: dict[str, Any], target: Target, stream: bool) -> UpstreamRequest:
        if route_type not in (CHAT, COMPLETIONS):
            what = "embeddings" if route_type == EMBEDDINGS else f"route type {route_type}"
            raise ProviderError(400, f"anthropic does not serve {what}", "invalid_request_error", "unsupported_route")
        payload = messages_payload(route_type, body, target, stream)
        headers = {"Content-Type": "application/json",
                   "Accept": "text/event-stream" if stream else "application/json",
                   "anthropic-version": str((target.options or {}).get("anthropic_version") or DEFAULT_VERSION)}
        url = apply_auth(self.url(route_type, target), headers, payload, target.auth or {})
        return UpstreamRequest("POST", url, headers, orjson.dumps(payload))

    def parse_response(self, route_type: str, body: bytes, target: Target) -> tuple[dict[str, Any], Usage | None]:
        data = json_object(body)
        if data.get("type") == "error":
            kind, _ = _error_kind(body)
            raise self.parse_error(ERROR_TYPES.get(kind or "", ("", 502))[1], None, body)
        if not isinstance(data.get("content"), list):
            raise unexpected("the answer has no content list")
        usage = usage_of(data.get("usage"))
        text, calls = _message_parts(data)
        finish = finish_reason_of(data.get("stop_reason")) or "stop"
        common = {"id": data.get("id") or "msg", "created": int(time.time()),
                  "model": data.get("model") or target.model or ""}
        if route_type == COMPLETIONS:
            out = {**common, "object": "text_completion",
                   "choices": [{"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}]}
        else:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if calls:
                message["tool_calls"] = calls
            out = {**common, "object": "chat.completion",
                   "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}]}
        if usage is not None:
            out["usage"] = usage.as_openai()
        return out, usage

    def parse_error(self, status: int, headers: Any, body: bytes) -> ProviderError:
        # Anthropic's body is {"type": "error", "error": {"type", "message", "details"?}, "request_id"}: the generic
        # parser reads error.message and the Retry-After header; the type is then put in OpenAI's words.
        parsed = error_from(status, headers, body)
        kind, detail = _error_kind(body)
        mapped = ERROR_TYPES.get(kind or "")
        if status == 429:
            openai_type = "rate_limit_exceeded"
        elif mapped:
            openai_type = mapped[0]
        else:
            openai_type = _STATUS_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        code = detail or ("rate_limit_exceeded" if status == 429 else kind)
        retry = parsed.retry_after
        if retry is None and headers is not None:
            retry = _retry_after_ms(headers)
        return ProviderError(status, parsed.message, openai_type, code, retry)

    def stream_decoder(self, route_type: str, target: Target) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(route_type, target)

    # -- preserve: the client's own Messages API request (see base.Driver) -----------------------------------------

    def native_request(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes,
                       target: Target) -> UpstreamRequest:
        options = target.options or {}
        headers = dict(headers)
        if not any(name.lower() == "anthropic-version" for name in headers):
            # The client's own anthropic-version wins (its body is written for it); the config's is the default.
            headers["anthropic-version"] = str(options.get("anthropic_version") or DEFAULT_VERSION)
        url = native.native_url(DEFAULT_BASE, path, query, options, target.auth)
        url, body = native.apply_auth(url, headers, body, target.auth or {})
        return UpstreamRequest(method, url, headers, body)

    def native_usage(self, body: bytes, headers: Any = None) -> Usage | None:
        """A Message's ``usage`` (count_tokens answers and other bodies carry none)."""
        data = native.json_of(body)
        return usage_of(data.get("usage")) if isinstance(data, dict) else None

    def native_stream_usage(self, target: Target) -> native.StreamUsage:
        return native.StreamUsage(AnthropicStreamDecoder(CHAT, target))


def _error_kind(body: bytes) -> tuple[str | None, str | None]:
    """(``error.type``, ``error.details.error_code``) of an Anthropic error body; the second tells e.g. a spend
    limit (``enforced_spend_limit_reached``, not worth retrying) from a rate limit, both 429 ``rate_limit_error``."""
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None, None
    if not isinstance(error, dict):
        return None, None
    details = error.get("details")
    code = details.get("error_code") if isinstance(details, dict) else None
    kind = error.get("type")
    return (str(kind) if kind else None), (str(code) if code else None)


def _retry_after_ms(headers: Any) -> float | None:
    value = headers.get("retry-after-ms")
    try:
        return float(value) / 1000 if value is not None else None
    except ValueError:
        return None


driver = AnthropicDriver()

__all__ = ["AnthropicDriver", "AnthropicStreamDecoder", "driver", "finish_reason_of", "messages_payload", "usage_of"]

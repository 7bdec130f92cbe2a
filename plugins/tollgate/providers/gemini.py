"""Google Gemini: the Generative Language API (``generativelanguage.googleapis.com``) and Vertex AI.

Both flavours share one wire format (``GenerateContentRequest`` / ``GenerateContentResponse``); they differ
in the URL and the credentials:

- Generative Language API (the default): ``https://generativelanguage.googleapis.com/v1beta/models/{model}:{op}``,
  an API key from ``auth`` (Kong: ``param_name=key``/``param_location=query``, or the ``x-goog-api-key`` header).
  ``options.gemini.api_endpoint`` alone replaces the host.
- Vertex AI, when ``options.gemini.project_id`` is set (with ``location_id``):
  ``https://{api_endpoint or {location}-aiplatform.googleapis.com}/v1/projects/{project}/locations/{location}``
  ``/publishers/google/models/{model}:{op}``, a bearer token from ``auth`` (``Authorization: Bearer ...``).
- ``options.upstream_url`` overrides both: a full method URL (``.../models/x:generateContent``; its ``:method`` is
  replaced by the one each request needs) or a base URL (``/models/{model}:{op}`` is appended; ``/v1beta`` too
  when the URL has no path).

Operations: chat and completions use ``:generateContent``, or ``:streamGenerateContent?alt=sse`` when streaming
(each SSE ``data:`` is one GenerateContentResponse); embeddings use ``:embedContent`` for one input and
``:batchEmbedContents`` for a list.

Gemini gives function calls no ids, so the driver derives stable ones (the same response always yields the same
ids). A function call's ``thoughtSignature`` (Gemini 2.5+/3 thinking models require it back in the next turn) is
carried inside the id, after ``_ts_``, and restored when the client sends the call back.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_to_bytes, urlencode, urlsplit, urlunsplit

import orjson

from . import native
from .base import (CHAT, COMPLETIONS, EMBEDDINGS, ChunkWriter, ProviderError, Target, UnreadableAnswer, UpstreamRequest,
                   Usage, not_json, token_counts, unexpected)
from .framing import JSONArrayDecoder, JSONArrayError, SSEDecoder, SSEvent
from .http import apply_auth
from .openai import retry_after_of

GENERATIVE_LANGUAGE_HOST = "https://generativelanguage.googleapis.com"
GENERATIVE_LANGUAGE_VERSION = "/v1beta"
VERTEX_VERSION = "/v1"

GENERATE = "generateContent"
STREAM = "streamGenerateContent"
EMBED = "embedContent"
BATCH_EMBED = "batchEmbedContents"
_OPERATIONS = (GENERATE, STREAM, EMBED, BATCH_EMBED, "countTokens", "predict")

# Gemini finishReason -> OpenAI finish_reason (anything else, e.g. OTHER or LANGUAGE, ends as "stop").
_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}

# HTTP status -> OpenAI error type.
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 409: "invalid_request_error", 413: "invalid_request_error",
                429: "rate_limit_exceeded", 499: "api_error", 500: "api_error", 502: "api_error",
                503: "api_error", 504: "timeout"}

# google.rpc.Code names -> HTTP status, for errors that arrive inside a stream.
_RPC_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "UNAUTHENTICATED": 401,
               "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "ABORTED": 409,
               "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "INTERNAL": 500, "UNKNOWN": 500, "DATA_LOSS": 500,
               "UNIMPLEMENTED": 501, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}

_SIGNATURE_MARK = "_ts_"
_SECRET_PATTERNS = (re.compile(r"AIza[0-9A-Za-z_\-]{20,}"), re.compile(r"(?i)([?&](?:key|access_token)=)[^&\s\"']+"))


def _bad_request(message: str, code: str | None = None) -> ProviderError:
    return ProviderError(400, message, "invalid_request_error", code)


# --------------------------------------------------------------------------------------------------- usage


_USAGE_TOTALS = ("promptTokenCount", "candidatesTokenCount", "totalTokenCount")


def usage_from(meta: Any) -> Usage | None:
    """Gemini's ``usageMetadata`` as Tollgate's Usage; completion tokens include the thinking tokens."""
    if not _counts_reported(meta):
        return None  # e.g. Vertex's early stream frames carry only {"trafficType": ...}
    counts = token_counts(meta, *_USAGE_TOTALS, "thoughtsTokenCount", "cachedContentTokenCount")
    if counts is None:
        return None
    prompt, candidates, total, thoughts, cached = counts
    completion = candidates + thoughts
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total or prompt + completion,
                 cached_tokens=cached, reasoning_tokens=thoughts)


def _counts_reported(meta: Any) -> bool:
    """Whether ``meta`` claims token counts (Vertex's early frames carry only ``trafficType``)."""
    return isinstance(meta, dict) and any(key in meta for key in _USAGE_TOTALS)


def finish_reason(reason: str | None, called: bool) -> str:
    mapped = _FINISH.get(reason or "STOP", "stop")
    return "tool_calls" if called and mapped == "stop" else mapped


# --------------------------------------------------------------------------------------------------- errors


def _redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
    return text


def _duration(value: Any) -> float | None:
    """A google.protobuf.Duration in JSON (``"37s"``, ``"1.5s"``) in seconds."""
    if isinstance(value, str) and value.endswith("s"):
        try:
            return float(value[:-1])
        except ValueError:
            return None
    if isinstance(value, dict):  # {"seconds": 37, "nanos": 0}
        try:
            return float(value.get("seconds") or 0) + float(value.get("nanos") or 0) / 1e9
        except (TypeError, ValueError):
            return None
    return None


def _retry_delay(details: Any) -> float | None:
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            return _duration(detail.get("retryDelay"))
    return None


def error_from(status: int, error: Any, retry_after: float | None = None) -> ProviderError:
    """Gemini's ``{"code", "message", "status", "details"}`` error object as an OpenAI-style ProviderError."""
    message, rpc_status = f"upstream answered {status}", None
    if isinstance(error, dict):
        message = str(error.get("message") or message)
        rpc_status = error.get("status")
        if retry_after is None:
            retry_after = _retry_delay(error.get("details"))
    elif isinstance(error, str) and error:
        message = error
    code = str(rpc_status).lower() if rpc_status else None
    type_ = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return ProviderError(status, _redact(message), type_, code, retry_after)


def _stream_error(error: Any) -> ProviderError:
    status = 502
    if isinstance(error, dict):
        code = error.get("code")
        if isinstance(code, int) and 400 <= code <= 599:
            status = code
        elif error.get("status") in _RPC_STATUS:
            status = _RPC_STATUS[error["status"]]
    return error_from(status, error)


# --------------------------------------------------------------------------------------------------- request


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content
                       if isinstance(part, dict) and part.get("type") in ("text", "input_text", None)
                       and isinstance(part.get("text"), str))
    return "" if content is None else str(content)


def _data_url(url: str) -> tuple[str, str] | None:
    """(mime type, base64 data) of a ``data:`` URL."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep:
        raise _bad_request("malformed data: URL in a content part", "invalid_image_url")
    params = head.split(";")
    mime = params[0] or "text/plain"
    if "base64" in params[1:]:
        return mime, data.strip()
    return mime, base64.b64encode(unquote_to_bytes(data)).decode("ascii")


def _file_part(url: str, default_mime: str) -> dict[str, Any]:
    inline = _data_url(url)
    if inline is not None:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    if not url:
        raise _bad_request("a content part has no URL", "invalid_image_url")
    mime = mimetypes.guess_type(urlsplit(url).path)[0] or default_mime
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _user_parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        return [{"text": str(content)}]
    parts: list[dict[str, Any]] = []
    for item in content:
        if isinstance(item, str):
            if item:
                parts.append({"text": item})
            continue
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind in ("text", "input_text"):
            if item.get("text"):
                parts.append({"text": item["text"]})
        elif kind == "image_url":
            image = item.get("image_url")
            url = image.get("url", "") if isinstance(image, dict) else str(image or "")
            parts.append(_file_part(url, "image/jpeg"))
        elif kind == "input_audio":
            audio = item.get("input_audio") or {}
            fmt = str(audio.get("format") or "wav")
            parts.append({"inlineData": {"mimeType": f"audio/{fmt}", "data": audio.get("data", "")}})
        elif kind == "file":
            file = item.get("file") or {}
            if file.get("file_data"):
                data = str(file["file_data"])
                inline = _data_url(data)
                if inline is None:
                    mime = mimetypes.guess_type(str(file.get("filename") or ""))[0] or "application/pdf"
                    inline = (mime, data)
                parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
            else:
                raise _bad_request("file parts need file_data: gemini cannot read OpenAI file ids",
                                   "unsupported_content")
        elif kind == "refusal":
            continue
        else:
            raise _bad_request(f"content part type '{kind}' is not supported by gemini", "unsupported_content")
    return parts


def _signature_of(call_id: Any, call: dict[str, Any]) -> str | None:
    extra = call.get("extra_content")
    if isinstance(extra, dict) and isinstance(extra.get("google"), dict):
        signature = extra["google"].get("thought_signature")
        if signature:
            return str(signature)
    if isinstance(call_id, str) and call_id.startswith("call_") and _SIGNATURE_MARK in call_id:
        return call_id.split(_SIGNATURE_MARK, 1)[1] or None
    return None


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if raw in (None, ""):
        return {}
    try:
        value = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        raise _bad_request("tool call arguments must be a JSON object", "invalid_tool_call") from None
    if not isinstance(value, dict):
        raise _bad_request("tool call arguments must be a JSON object", "invalid_tool_call")
    return value


def _assistant_parts(message: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    text = _content_text(message.get("content"))
    if text:
        parts.append({"text": text})
    calls = list(message.get("tool_calls") or ())
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        calls.append({"id": None, "type": "function", "function": legacy})
    for call in calls:
        if not isinstance(call, dict):
            continue
        function = call.get("function") or {}
        name = function.get("name")
        if not name:
            raise _bad_request("an assistant tool call has no function name", "invalid_tool_call")
        if call.get("id"):
            names[str(call["id"])] = name
        part: dict[str, Any] = {"functionCall": {"name": name, "args": _arguments(function.get("arguments"))}}
        signature = _signature_of(call.get("id"), call)
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _tool_result(message: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    name = names.get(str(call_id)) if call_id is not None else None
    name = name or message.get("name")
    if not name:
        raise _bad_request(f"tool message '{call_id}' answers no tool call of an earlier assistant message",
                           "invalid_tool_message")
    content = message.get("content")
    text = _content_text(content)
    try:
        value = orjson.loads(text) if text else ""
    except orjson.JSONDecodeError:
        value = text
    response = value if isinstance(value, dict) else {"output": value}
    return {"functionResponse": {"name": name, "response": response}}


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)  # Gemini wants turns to alternate; merge same-role neighbours
    else:
        contents.append({"role": role, "parts": parts})


def messages_to_contents(messages: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """OpenAI ``messages`` as Gemini ``contents`` and ``systemInstruction``."""
    if not isinstance(messages, list) or not messages:
        raise _bad_request("'messages' must be a non-empty array", "invalid_messages")
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name, for the tool messages that answer them
    for message in messages:
        if not isinstance(message, dict):
            raise _bad_request("each message must be an object", "invalid_messages")
        role = message.get("role")
        if role in ("system", "developer"):
            text = _content_text(message.get("content"))
            if text:
                system.append({"text": text})
        elif role == "user":
            _append(contents, "user", _user_parts(message.get("content")))
        elif role == "assistant":
            _append(contents, "model", _assistant_parts(message, names))
        elif role in ("tool", "function"):
            _append(contents, "user", [_tool_result(message, names)])
        else:
            raise _bad_request(f"unknown message role '{role}'", "invalid_messages")
    if not contents:
        raise _bad_request("the request has no user or assistant content for gemini", "invalid_messages")
    return contents, ({"parts": system} if system else None)


def _tools(tools: Any) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    declarations = []
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        if tool.get("type", "function") != "function":
            raise _bad_request(f"tool type '{tool.get('type')}' is not supported by gemini", "unsupported_tool")
        function = tool.get("function") or {}
        if not function.get("name"):
            raise _bad_request("a function tool has no name", "invalid_tool")
        declaration: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            declaration["description"] = function["description"]
        if function.get("parameters"):
            # Gemini's own Schema is an OpenAPI subset; parametersJsonSchema takes the JSON Schema as is.
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}] if declarations else None


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}.get(choice)
        if mode is None:
            raise _bad_request(f"tool_choice '{choice}' is not supported", "invalid_tool_choice")
        return {"functionCallingConfig": {"mode": mode}}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if name:
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    raise _bad_request("tool_choice must be 'auto', 'none', 'required' or name a function", "invalid_tool_choice")


def _generation_config(body: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    def pick(*keys: str) -> Any:
        for key in keys:
            if body.get(key) is not None:
                return body[key]
        return None

    config: dict[str, Any] = {}
    fields = (("maxOutputTokens", pick("max_completion_tokens", "max_tokens"), "max_tokens"),
              ("temperature", pick("temperature"), "temperature"),
              ("topP", pick("top_p"), "top_p"),
              ("topK", pick("top_k"), "top_k"))
    for name, value, option in fields:
        if value is None:
            value = options.get(option)
        if value is not None:
            config[name] = value
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    for name, key in (("candidateCount", "n"), ("presencePenalty", "presence_penalty"),
                      ("frequencyPenalty", "frequency_penalty"), ("seed", "seed")):
        if body.get(key) is not None:
            config[name] = body[key]
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "json_object":
            config["responseMimeType"] = "application/json"
        elif kind == "json_schema":
            config["responseMimeType"] = "application/json"
            schema = (response_format.get("json_schema") or {}).get("schema")
            if schema:
                config["responseJsonSchema"] = schema
    return config


def _model_name(body: dict[str, Any], target: Target) -> str:
    model = target.model or body.get("model")
    if not model or not isinstance(model, str):
        raise _bad_request("the request must name a model", "model_required")
    return model[len("models/"):] if model.startswith("models/") else model


def _https(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if "://" in endpoint else "https://" + endpoint


def _with_operation(upstream: str, model: str, operation: str) -> str:
    parts = urlsplit(upstream)
    path = parts.path
    head, _, last = path.rpartition("/")
    if ":" in last and last.rsplit(":", 1)[1] in _OPERATIONS:
        path = f"{head}/{last.rsplit(':', 1)[0]}:{operation}"
    elif last and head.endswith("/models"):  # .../models/{model} without a method
        path = f"{head}/{last}:{operation}"
    else:
        base = path.rstrip("/") or GENERATIVE_LANGUAGE_VERSION
        if not base.endswith("/models"):
            base += "/models"
        path = f"{base}/{quote(model, safe='-._~@')}:{operation}"
    return urlunsplit(parts._replace(path=path))


def _set_alt(url: str, stream: bool) -> str:
    """``alt=sse`` on stream requests only (an upstream_url may carry one from a streaming example)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "alt"]
    if stream:
        query.append(("alt", "sse"))
    return urlunsplit(parts._replace(query=urlencode(query)))


# --------------------------------------------------------------------------------------------------- response


def _call_id(response_id: str | None, candidate: int, position: int, call: dict[str, Any],
             signature: str | None) -> str:
    seed = orjson.dumps([response_id or "", candidate, position, call.get("name"), call.get("args") or {}],
                        option=orjson.OPT_SORT_KEYS)
    call_id = "call_" + hashlib.sha256(seed).hexdigest()[:24]
    return call_id + _SIGNATURE_MARK + signature if signature else call_id


def _read_parts(candidate: dict[str, Any], index: int, response_id: str | None,
                first_call: int = 0) -> tuple[str, list[dict[str, Any]]]:
    """The answer text (thought summaries left out) and the OpenAI tool calls of one candidate's parts."""
    content = candidate.get("content") if isinstance(candidate.get("content"), dict) else {}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in content.get("parts") or ():
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str) and not part.get("thought"):
            texts.append(part["text"])
        call = part.get("functionCall")
        if isinstance(call, dict) and call.get("name"):
            position = first_call + len(calls)
            calls.append({"id": _call_id(response_id, index, position, call, part.get("thoughtSignature")),
                          "type": "function",
                          "function": {"name": call["name"],
                                       "arguments": orjson.dumps(call.get("args") or {}).decode()}})
    return "".join(texts), calls


def _blocked(data: dict[str, Any]) -> bool:
    feedback = data.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


# --------------------------------------------------------------------------------------------------- stream


class _Candidate:
    __slots__ = ("started", "calls", "finish")

    def __init__(self) -> None:
        self.started = False
        self.calls = 0
        self.finish: str | None = None


class GeminiStreamDecoder:
    """``streamGenerateContent`` frames as OpenAI chunks, emitted as each frame arrives: SSE (``alt=sse``, what the
    driver asks for) or, when a server does not honour it, the one JSON array Gemini otherwise sends, read element by
    element as its bytes arrive (which form it is, the first byte says).

    Older models repeat ``finishReason`` on every frame, so the finish chunk is sent when the stream ends,
    followed by the usage chunk (the last frame's ``usageMetadata``).
    """

    def __init__(self, route_type: str, model: str | None) -> None:
        self._framing: SSEDecoder | JSONArrayDecoder | None = None   # chosen by the stream's first byte
        self._completions = route_type == COMPLETIONS
        self._out = ChunkWriter(route_type, model or "gemini", int(time.time()))
        self._response_id: str | None = None
        self._candidates: dict[int, _Candidate] = {}
        self._blocked = False
        self._error: ProviderError | None = None  # met after chunks that must reach the client first
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        if self._framing is None:
            head = data.lstrip()
            if not head:
                return []
            self._framing = JSONArrayDecoder() if head[:1] == b"[" else SSEDecoder()
        return self._frames(self._payloads(self._framing.feed, data))

    def close(self) -> list[dict[str, Any]]:
        chunks = self._frames(self._payloads(self._framing.close)) if self._framing is not None else []
        if self._error is not None:
            raise self._error
        if not self._candidates and self._blocked:
            self._candidates[0] = _Candidate()
            self._candidates[0].finish = "PROHIBITED_CONTENT"
        for index in sorted(self._candidates):
            state = self._candidates[index]
            if state.finish is None:
                continue
            reason = finish_reason(state.finish, state.calls > 0)
            if self._completions:
                chunks.append(self._chunk([{"text": "", "index": index, "logprobs": None, "finish_reason": reason}]))
            else:
                delta = {} if state.started else {"role": "assistant", "content": None}
                chunks.append(self._chunk([{"index": index, "delta": delta, "logprobs": None,
                                            "finish_reason": reason}]))
        if self.usage is not None:
            chunk = self._chunk([])
            chunk["usage"] = self.usage.as_openai()
            chunks.append(chunk)
        return chunks

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        if not self._out.id:  # named after Gemini's responseId, which the first frames may lack
            self._out.id = ("cmpl-" if self._completions else "chatcmpl-") + (self._response_id or uuid.uuid4().hex)
        return self._out.chunk(choices)

    @staticmethod
    def _payloads(step: Any, *data: bytes) -> list[str | bytes]:
        """The JSON texts of the frames ``step`` completes: SSE ``data:`` fields, or JSON array elements."""
        try:
            frames = step(*data)
        except JSONArrayError as exc:
            raise UnreadableAnswer("upstream_incomplete_stream" if "closed" in str(exc) else
                                   "upstream_unexpected_shape", str(exc)) from None
        return [frame.data if isinstance(frame, SSEvent) else frame for frame in frames]

    def _frames(self, payloads: list[str | bytes]) -> list[dict[str, Any]]:
        if self._error is not None:
            raise self._error
        chunks: list[dict[str, Any]] = []
        for payload in payloads:
            try:
                frame = orjson.loads(payload)
                if isinstance(frame, list):  # an SSE frame holding a one-element array
                    frame = frame[0] if frame and isinstance(frame[0], dict) else {}
                if not isinstance(frame, dict):
                    raise unexpected("a stream frame is not a JSON object")
                if frame.get("error"):
                    raise _stream_error(frame["error"])
            except (orjson.JSONDecodeError, ProviderError) as exc:
                error = exc if isinstance(exc, ProviderError) else not_json("stream frame")
                if not chunks:
                    raise error from None
                self._error = error  # hand over what came before it; raise on the next call
                break
            chunks.extend(self._frame(frame))
        return chunks

    def _frame(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        if self._response_id is None and isinstance(frame.get("responseId"), str):
            self._response_id = frame["responseId"]
        if isinstance(frame.get("modelVersion"), str) and frame["modelVersion"]:
            self._out.model = frame["modelVersion"]
        if "usageMetadata" in frame:   # the last frame that reports usage decides (unreadable there: none)
            usage = usage_from(frame["usageMetadata"])
            if usage is not None or _counts_reported(frame["usageMetadata"]):
                self.usage = usage
        if _blocked(frame):
            self._blocked = True
        chunks = []
        for position, candidate in enumerate(frame.get("candidates") or ()):
            if not isinstance(candidate, dict):
                continue
            index = candidate.get("index", position)
            state = self._candidates.setdefault(index, _Candidate())
            if candidate.get("finishReason"):
                state.finish = candidate["finishReason"]
            text, calls = _read_parts(candidate, index, self._response_id, state.calls)
            if self._completions:
                if text:
                    chunks.append(self._chunk([{"text": text, "index": index, "logprobs": None,
                                                "finish_reason": None}]))
                    state.started = True
                continue
            if not text and not calls:
                continue
            delta: dict[str, Any] = {} if state.started else {"role": "assistant"}
            if text:
                delta["content"] = text
            if calls:
                delta["tool_calls"] = [{"index": state.calls + i, **call} for i, call in enumerate(calls)]
                state.calls += len(calls)
            state.started = True
            chunks.append(self._chunk([{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}]))
        return chunks


# --------------------------------------------------------------------------------------------------- driver


class GeminiDriver:
    name = "gemini"

    # ---------------------------------------------------------------- request
    def url(self, target: Target, model: str, operation: str) -> str:
        options = target.options
        if options.get("upstream_url"):
            return _with_operation(options["upstream_url"], model, operation)
        gemini = options.get("gemini") or {}
        project, location, endpoint = gemini.get("project_id"), gemini.get("location_id"), gemini.get("api_endpoint")
        if project:
            if not location:
                raise ProviderError(500, "gemini on Vertex AI needs model.options.gemini.location_id",
                                    "server_error", "misconfigured")
            host = endpoint or ("aiplatform.googleapis.com" if location == "global"
                                else f"{location}-aiplatform.googleapis.com")
            return (f"{_https(host)}{VERTEX_VERSION}/projects/{quote(project, safe='')}/locations/"
                    f"{quote(location, safe='')}/publishers/google/models/{quote(model, safe='-._~@')}:{operation}")
        base = _https(endpoint) if endpoint else GENERATIVE_LANGUAGE_HOST
        if not urlsplit(base).path.strip("/"):
            base += GENERATIVE_LANGUAGE_VERSION
        return f"{base}/models/{quote(model, safe='-._~@')}:{operation}"

    @staticmethod
    def vertex(target: Target) -> bool:
        return bool((target.options.get("gemini") or {}).get("project_id"))

    def build_request(self, route_type: str, body: dict[str, Any], target: Target, stream: bool) -> UpstreamRequest:
        model = _model_name(body, target)
        if route_type == CHAT:
            payload = self._generate_payload(body, target)
        elif route_type == COMPLETIONS:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise _bad_request("gemini completions take one text prompt", "unsupported_prompt")
            payload = self._generate_payload({**body, "messages": [{"role": "user", "content": prompt}]}, target)
        elif route_type == EMBEDDINGS:
            payload, operation = self._embed_payload(body, target, model)
            stream = False
        else:
            raise _bad_request(f"gemini cannot serve route type '{route_type}'", "unsupported_route_type")
        if route_type != EMBEDDINGS:
            operation = STREAM if stream else GENERATE
        url = _set_alt(self.url(target, model, operation), stream)
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
        auth = target.auth or {}
        self._check_auth(auth)
        url = apply_auth(url, headers, payload, auth)
        return UpstreamRequest("POST", url, headers, orjson.dumps(payload))

    @staticmethod
    def _check_auth(auth: dict[str, Any]) -> None:
        if auth.get("gcp_use_service_account") and not (auth.get("header_name") or auth.get("param_name")):
            raise ProviderError(500, "gemini: auth.gcp_use_service_account needs an access token; configure "
                                     "auth.header_name/header_value (Authorization: Bearer ...)",
                                "server_error", "misconfigured")

    def _generate_payload(self, body: dict[str, Any], target: Target) -> dict[str, Any]:
        contents, system = messages_to_contents(body.get("messages"))
        payload: dict[str, Any] = {"contents": contents}
        if system:
            payload["systemInstruction"] = system
        tools = body.get("tools")
        if not tools and body.get("functions"):  # the legacy OpenAI ``functions`` field
            tools = [{"type": "function", "function": function} for function in body["functions"]]
        tools = _tools(tools)
        if tools:
            payload["tools"] = tools
            config = _tool_config(body.get("tool_choice"))
            if config:
                payload["toolConfig"] = config
        generation = _generation_config(body, target.options)
        if generation:
            payload["generationConfig"] = generation
        return payload

    def _embed_payload(self, body: dict[str, Any], target: Target, model: str) -> tuple[dict[str, Any], str]:
        raw = body.get("input")
        if isinstance(raw, str):
            texts, single = [raw], True
        elif isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
            texts, single = raw, False
        else:
            raise _bad_request("gemini embeddings take a string or a list of strings as 'input'", "unsupported_input")

        def request(text: str) -> dict[str, Any]:
            item: dict[str, Any] = {"content": {"parts": [{"text": text}]}}
            if not self.vertex(target):
                item = {"model": f"models/{model}", **item}
            if body.get("dimensions") is not None:
                item["outputDimensionality"] = body["dimensions"]
            return item

        if single:
            return request(texts[0]), EMBED
        return {"requests": [request(text) for text in texts]}, BATCH_EMBED

    # ---------------------------------------------------------------- response
    def parse_response(self, route_type: str, body: bytes, target: Target) -> tuple[dict[str, Any], Usage | None]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise not_json() from None
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        if not isinstance(data, dict):
            raise unexpected("the answer is not a JSON object")
        if data.get("error"):
            raise _stream_error(data["error"])
        if route_type == EMBEDDINGS:
            return self._embeddings(data, target)
        if route_type not in (CHAT, COMPLETIONS):
            raise _bad_request(f"gemini cannot serve route type '{route_type}'", "unsupported_route_type")
        usage = usage_from(data.get("usageMetadata"))
        response_id = data.get("responseId") if isinstance(data.get("responseId"), str) else None
        model = data.get("modelVersion") or target.model or "gemini"
        completions = route_type == COMPLETIONS
        choices = []
        for position, candidate in enumerate(data.get("candidates") or ()):
            if not isinstance(candidate, dict):
                continue
            index = candidate.get("index", position)
            text, calls = _read_parts(candidate, index, response_id)
            reason = finish_reason(candidate.get("finishReason"), bool(calls))
            if completions:
                choices.append({"text": text, "index": index, "logprobs": None, "finish_reason": reason})
                continue
            message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
            if calls:
                message["tool_calls"] = calls
            choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": reason})
        if not choices:  # the prompt itself was blocked: promptFeedback.blockReason, no candidates
            if not _blocked(data):
                raise UnreadableAnswer("upstream_empty_answer", "the answer has no candidates")
            reason = "content_filter"
            choices = [{"text": "", "index": 0, "logprobs": None, "finish_reason": reason} if completions else
                       {"index": 0, "message": {"role": "assistant", "content": None}, "logprobs": None,
                        "finish_reason": reason}]
        answer = {"id": ("cmpl-" if completions else "chatcmpl-") + (response_id or uuid.uuid4().hex),
                  "object": "text_completion" if completions else "chat.completion",
                  "created": int(time.time()), "model": model, "choices": choices}
        if usage is not None:
            answer["usage"] = usage.as_openai()
        return answer, usage

    @staticmethod
    def _embeddings(data: dict[str, Any], target: Target) -> tuple[dict[str, Any], Usage | None]:
        if isinstance(data.get("embeddings"), list):
            vectors = data["embeddings"]
        elif isinstance(data.get("embedding"), dict):
            vectors = [data["embedding"]]
        else:
            raise unexpected("the embeddings answer has no 'embedding' or 'embeddings'")
        items = [{"object": "embedding", "index": i, "embedding": (vector or {}).get("values") or []}
                 for i, vector in enumerate(vectors)]
        usage = usage_from(data.get("usageMetadata"))  # Vertex reports it; the Generative Language API does not
        answer: dict[str, Any] = {"object": "list", "data": items, "model": target.model or "gemini"}
        if usage is not None:   # else the proxy adds its estimate, marked as such (never a zero)
            answer["usage"] = {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens}
        return answer, usage

    def parse_error(self, status: int, headers: Any, body: bytes) -> ProviderError:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, list) and data:  # streamGenerateContent without alt=sse wraps errors in an array
            data = data[0]
        error = data.get("error") if isinstance(data, dict) else None
        if error is None and body and data is None:
            error = body[:500].decode("utf-8", "replace").strip()
        return error_from(status, error, retry_after_of(headers))

    def stream_decoder(self, route_type: str, target: Target) -> GeminiStreamDecoder:
        if route_type not in (CHAT, COMPLETIONS):
            raise _bad_request(f"gemini cannot stream route type '{route_type}'", "unsupported_route_type")
        return GeminiStreamDecoder(route_type, target.model)

    # -- preserve: the client's own generateContent (etc.) request, on the Generative Language API or Vertex --------

    def native_origin(self, target: Target) -> str:
        gemini = (target.options or {}).get("gemini") or {}
        project, location, endpoint = gemini.get("project_id"), gemini.get("location_id"), gemini.get("api_endpoint")
        if project:
            if not location:
                raise ProviderError(500, "gemini on Vertex AI needs model.options.gemini.location_id",
                                    "server_error", "misconfigured")
            return _https(endpoint or ("aiplatform.googleapis.com" if location == "global"
                                       else f"{location}-aiplatform.googleapis.com"))
        return _https(endpoint) if endpoint else GENERATIVE_LANGUAGE_HOST

    def native_request(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes,
                       target: Target) -> UpstreamRequest:
        auth = target.auth or {}
        self._check_auth(auth)
        options = target.options or {}
        origin = None if options.get("upstream_url") else self.native_origin(target)
        headers = dict(headers)
        url, body = native.apply_auth(native.native_url(origin, path, query, options, auth), headers, body, auth)
        return UpstreamRequest(method, url, headers, body)

    def native_usage(self, body: bytes, headers: Any = None) -> Usage | None:
        """``usageMetadata`` of a GenerateContentResponse (of the last element that has one when the answer is
        the JSON array of a ``streamGenerateContent`` called without ``alt=sse``)."""
        data = native.json_of(body)
        items = data if isinstance(data, list) else [data]
        for item in reversed(items):
            usage = usage_from(item.get("usageMetadata")) if isinstance(item, dict) else None
            if usage is not None:
                return usage
        return None

    def native_stream_usage(self, target: Target) -> native.StreamUsage:
        return native.StreamUsage(GeminiStreamDecoder(CHAT, target.model))


driver = GeminiDriver()

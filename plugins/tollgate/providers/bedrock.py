"""Amazon Bedrock: the Converse API for chat (and completions), InvokeModel for embeddings.

Requests
    chat         ``POST /model/{modelId}/converse`` (``/converse-stream`` when streaming); the model id is
                 URL-encoded (``/`` of an ARN becomes ``%2F``; ``:`` stays, as on AWS's own examples, so that
                 the path the HTTP client sends is byte for byte the path that was signed).
    completions  the same Converse call, the prompt as one user message; answered as ``text_completion``.
    embeddings   ``POST /model/{modelId}/invoke`` with the model's native body: Amazon Titan text embeddings
                 (``amazon.titan-embed-*``: ``{"inputText"}``, one input per call, ``dimensions`` passed on)
                 and Cohere Embed (``cohere.embed-*``: ``{"texts", "input_type"}``, ``input_type`` defaulting to
                 ``search_document``). Other model families are refused with a 400. Titan reports its tokens
                 (``inputTextTokenCount``); Cohere's body carries no count, so its usage is None. Vectors are
                 answered as float arrays whatever ``encoding_format`` says (the openai SDK accepts both).

Where
    ``https://bedrock-runtime.{region}.amazonaws.com``, the region from ``model.options.bedrock.aws_region``,
    else ``AWS_REGION`` / ``AWS_DEFAULT_REGION``. ``model.options.upstream_url`` replaces it: a URL without a
    ``/model/`` path is a base (a VPC endpoint, a mock) and gets ``/model/{id}/{operation}`` appended; a URL
    with one is used as it is, except that ``/converse`` and ``/converse-stream`` follow the request's ``stream``.

Auth, first that applies
    1. Kong's generic ``auth.header_*`` / ``auth.param_*`` (e.g. ``Authorization: Bearer <Bedrock API key>``);
    2. SigV4 (botocore's signer, service ``bedrock``) with ``auth.aws_access_key_id`` /
       ``auth.aws_secret_access_key`` (+ ``aws_session_token`` if present);
    3. ``AWS_BEARER_TOKEN_BEDROCK`` from the environment (Bedrock API key);
    4. SigV4 with ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``;
    5. none: allowed only with an ``upstream_url`` (e.g. a signing proxy), refused otherwise.
    ``options.bedrock.aws_assume_role_arn`` needs a call to STS, which a pure driver cannot make: refused.
    ``preserve`` routes sign the client's own Converse/ConverseStream/InvokeModel request the same way (the path the
    client sent, or ``upstream_url``); usage comes from InvokeModel's ``X-Amzn-Bedrock-*-Token-Count`` headers, the
    Converse body, or ConverseStream's ``metadata`` event.
    Signing reads the driver's clock (``BedrockDriver(clock=...)``), so a fixed clock makes requests reproducible.

Translation (OpenAI -> Converse)
    system/developer messages -> ``system[{text}]``; user text -> ``{text}``; ``image_url`` data URLs ->
    ``{image{format, source{bytes}}}`` (png, jpeg, gif, webp) and ``s3://`` URLs -> ``source{s3Location}``;
    http(s) image URLs are refused (Converse does not fetch them); assistant ``tool_calls`` -> ``{toolUse}``;
    ``tool`` messages -> ``{toolResult{toolUseId, content[{json}]}}`` when the content is a JSON object, else
    ``content[{text}]``; consecutive messages of one role are merged (Converse wants user/assistant turns to
    alternate, and all results of one assistant turn in one user message). ``max_completion_tokens`` /
    ``max_tokens``, ``temperature``, ``top_p``, ``stop`` -> ``inferenceConfig``; ``top_k`` goes to
    ``additionalModelRequestFields`` for Anthropic models only (each family names it differently). ``tools`` ->
    ``toolConfig.tools[{toolSpec}]``; ``tool_choice`` required -> ``{any}``, a named function -> ``{tool}``,
    auto -> left out (the default; only some models accept an explicit ``auto``), none -> no ``toolConfig``
    unless the conversation already holds tool blocks (Converse then requires it; it has no "none").
    ``n`` > 1 is refused (Converse returns one message).

Answers
    ``stopReason``: end_turn / stop_sequence -> stop, max_tokens / model_context_window_exceeded -> length,
    tool_use -> tool_calls, guardrail_intervened / content_filtered -> content_filter, anything else -> stop.
    Usage: ``inputTokens`` counts only the uncached prompt, so prompt_tokens = inputTokens +
    cacheReadInputTokens + cacheWriteInputTokens (cached_tokens = cacheReadInputTokens), completion_tokens =
    outputTokens, total_tokens = Bedrock's ``totalTokens``. Reasoning text (``reasoningContent``) is passed on as
    ``reasoning_content``. ConverseStream is AWS event-stream binary framing, decoded frame by frame
    (``providers/eventstream.py``); usage comes from its ``metadata`` event, and an exception frame raises
    ProviderError with the status AWS documents for it.
"""

from __future__ import annotations

import datetime
import os
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import orjson
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from . import native
from .anthropic import usage_of as anthropic_usage
from .base import (CHAT, COMPLETIONS, EMBEDDINGS, ChunkWriter, ProviderError, Target, UnreadableAnswer,
                   UpstreamRequest, Usage, json_object, token_count, token_counts, unexpected)
from .eventstream import EventMessage, EventStreamDecoder, EventStreamError
from .http import apply_auth
from .openai import retry_after_of

SERVICE = "bedrock"
DEFAULT_HOST = "https://bedrock-runtime.{region}.amazonaws.com"

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}
_EXTENSIONS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "gif": "gif", "webp": "webp"}

# AWS error (``x-amzn-ErrorType`` / ``:exception-type``) -> (HTTP status AWS documents, OpenAI error type)
AWS_ERRORS: dict[str, tuple[int, str]] = {
    "ValidationException": (400, "invalid_request_error"),
    "ServiceQuotaExceededException": (400, "insufficient_quota"),
    "AccessDeniedException": (403, "permission_error"),
    "UnrecognizedClientException": (403, "authentication_error"),
    "InvalidSignatureException": (403, "authentication_error"),
    "MissingAuthenticationTokenException": (403, "authentication_error"),
    "ExpiredTokenException": (403, "authentication_error"),
    "ResourceNotFoundException": (404, "not_found_error"),
    "ModelTimeoutException": (408, "timeout"),
    "ModelErrorException": (424, "api_error"),
    "ModelStreamErrorException": (424, "api_error"),
    "ThrottlingException": (429, "rate_limit_exceeded"),
    "ModelNotReadyException": (429, "rate_limit_exceeded"),
    "InternalServerException": (500, "api_error"),
    "ServiceUnavailableException": (503, "api_error"),
}
_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 408: "timeout", 429: "rate_limit_exceeded", 504: "timeout"}


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


# ---------------------------------------------------------------------------------------------------- usage

def usage_from(data: Any) -> Usage | None:
    """Bedrock's ``TokenUsage`` as Tollgate's Usage (see the module docstring for the cache arithmetic)."""
    counts = token_counts(data, "inputTokens", "cacheReadInputTokens", "cacheWriteInputTokens", "outputTokens",
                          "totalTokens")
    if counts is None:
        return None
    uncached, cache_read, cache_write, completion, total = counts
    prompt = uncached + cache_read + cache_write
    return Usage(prompt_tokens=prompt, completion_tokens=completion,
                 total_tokens=total if data.get("totalTokens") is not None else prompt + completion,
                 cached_tokens=cache_read)


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(str(stop_reason), "stop")


# ---------------------------------------------------------------------------------------------------- requests

def _bad(message: str, param: str | None = None) -> ProviderError:
    return ProviderError(400, message, "invalid_request_error", param and f"invalid_{param}")


def _misconfigured(message: str) -> ProviderError:
    return ProviderError(500, message, "server_error", "misconfigured")


def _texts(content: Any, role: str) -> list[str]:
    """The text parts of a message content (a string or text parts), empty ones dropped."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content] if content else []
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                text = part
            elif isinstance(part, dict) and part.get("type", "text") in ("text", "refusal"):
                text = part.get("text", part.get("refusal"))
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise _bad(f"Bedrock does not take '{kind}' parts in {role} messages", "content")
            if not isinstance(text, str):
                raise _bad(f"a text part of a {role} message has no text", "content")
            if text:
                texts.append(text)
        return texts
    raise _bad(f"the content of a {role} message must be a string or an array of parts", "content")


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise _bad("an image_url part has no url", "image_url")
    if url.startswith("data:"):
        head, sep, data = url.partition(",")
        mime, _, encoding = head[5:].partition(";")
        if not sep or encoding.lower() != "base64":
            raise _bad("image data URLs must be base64 (data:image/png;base64,...)", "image_url")
        image_format = IMAGE_FORMATS.get(mime.strip().lower())
        if image_format is None:
            raise _bad(f"Bedrock takes png, jpeg, gif and webp images, not {mime or 'an untyped image'}",
                       "image_url")
        return {"image": {"format": image_format, "source": {"bytes": "".join(data.split())}}}
    if url.startswith("s3://"):
        extension = url.rsplit(".", 1)[-1].lower() if "." in url.rsplit("/", 1)[-1] else ""
        image_format = _EXTENSIONS.get(extension)
        if image_format is None:
            raise _bad("an s3:// image URL must end in .png, .jpg, .jpeg, .gif or .webp", "image_url")
        return {"image": {"format": image_format, "source": {"s3Location": {"uri": url}}}}
    raise _bad("Bedrock's Converse API takes images inline (data: URLs) or from S3 (s3:// URLs), not from "
               "http URLs", "image_url")


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list):
        blocks: list[dict[str, Any]] = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "image_url":
                blocks.append(_image_block(part))
            else:
                blocks.extend({"text": text} for text in _texts([part], "user"))
        return blocks
    return [{"text": text} for text in _texts(content, "user")]


def _arguments(raw: Any) -> Any:
    if isinstance(raw, (dict, list)):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    try:
        return orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        raise _bad("the arguments of an assistant tool call are not valid JSON", "tool_calls") from None


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"text": text} for text in _texts(message.get("content"), "assistant")]
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not function.get("name") or not call.get("id"):
            raise _bad("an assistant tool call needs an id and a function name", "tool_calls")
        blocks.append({"toolUse": {"toolUseId": call["id"], "name": function["name"],
                                   "input": _arguments(function.get("arguments"))}})
    return blocks


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    tool_use_id = message.get("tool_call_id")
    if not tool_use_id:
        raise _bad("a tool message needs the tool_call_id it answers", "tool_call_id")
    content = message.get("content")
    result: list[dict[str, Any]] = []
    if isinstance(content, str):
        parsed = None
        if content.lstrip().startswith("{"):
            try:
                parsed = orjson.loads(content)
            except orjson.JSONDecodeError:
                parsed = None
        result.append({"json": parsed} if isinstance(parsed, dict) else {"text": content})
    else:
        result.extend({"text": text} for text in _texts(content, "tool"))
    return {"toolResult": {"toolUseId": tool_use_id, "content": result or [{"text": ""}]}}


def converse_messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenAI ``messages`` as Converse ``(system, messages)``."""
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array", "messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            raise _bad("each message must be an object", "messages")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend({"text": text} for text in _texts(message.get("content"), str(role)))
            continue
        if role == "user":
            turn_role, blocks = "user", _user_blocks(message.get("content"))
        elif role == "assistant":
            turn_role, blocks = "assistant", _assistant_blocks(message)
        elif role == "tool":
            turn_role, blocks = "user", [_tool_result(message)]
        else:
            raise _bad(f"Bedrock cannot take messages of role '{role}'", "messages")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    if not turns:
        raise _bad("the request has no user or assistant message with content", "messages")
    return system, turns


def _has_tool_blocks(turns: list[dict[str, Any]]) -> bool:
    return any("toolUse" in block or "toolResult" in block for turn in turns for block in turn["content"])


def tool_config(body: dict[str, Any], turns: list[dict[str, Any]]) -> dict[str, Any] | None:
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise _bad("'tools' must be an array", "tools")
    specs = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise _bad("Bedrock takes tools of type 'function' only", "tools")
        function = tool.get("function") or {}
        if not function.get("name"):
            raise _bad("a tool needs a function name", "tools")
        spec: dict[str, Any] = {"name": function["name"],
                                "inputSchema": {"json": function.get("parameters")
                                                or {"type": "object", "properties": {}}}}
        if function.get("description"):
            spec["description"] = function["description"]
        specs.append({"toolSpec": spec})
    if not specs:
        return None
    config: dict[str, Any] = {"tools": specs}
    choice = body.get("tool_choice")
    if choice == "none":
        return config if _has_tool_blocks(turns) else None
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if choice.get("type") != "function" or not name:
            raise _bad("tool_choice must be 'auto', 'none', 'required' or a named function", "tool_choice")
        config["toolChoice"] = {"tool": {"name": name}}
    elif choice not in (None, "auto"):
        raise _bad("tool_choice must be 'auto', 'none', 'required' or a named function", "tool_choice")
    return config


def _option(body: dict[str, Any], options: dict[str, Any], *names: str) -> Any:
    for name in names:
        if body.get(name) is not None:
            return body[name]
    return options.get(names[-1])


def converse_body(route_type: str, body: dict[str, Any], target: Target, model_id: str) -> dict[str, Any]:
    """The Converse / ConverseStream request body for an OpenAI chat or completions request."""
    if (body.get("n") or 1) != 1:
        raise _bad("Bedrock returns one choice per request; 'n' must be 1", "n")
    if route_type == COMPLETIONS:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise _bad("Bedrock takes one non-empty text 'prompt' per completion request", "prompt")
        system: list[dict[str, Any]] = []
        turns = [{"role": "user", "content": [{"text": prompt}]}]
    else:
        system, turns = converse_messages(body.get("messages"))
    payload: dict[str, Any] = {"messages": turns}
    if system:
        payload["system"] = system
    options = target.options or {}
    inference: dict[str, Any] = {}
    max_tokens = _option(body, options, "max_completion_tokens", "max_tokens")
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    temperature = _option(body, options, "temperature")
    if temperature is not None:
        inference["temperature"] = temperature
    top_p = _option(body, options, "top_p")
    if top_p is not None:
        inference["topP"] = top_p
    stop = body.get("stop")
    if stop:
        inference["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if inference:
        payload["inferenceConfig"] = inference
    top_k = _option(body, options, "top_k")
    if top_k is not None and "anthropic." in model_id:
        payload["additionalModelRequestFields"] = {"top_k": top_k}
    if route_type == CHAT:
        config = tool_config(body, turns)
        if config is not None:
            payload["toolConfig"] = config
    return payload


def embedding_family(model_id: str) -> str:
    lowered = model_id.lower()
    if "titan-embed" in lowered:
        return "titan"
    if "cohere.embed" in lowered:
        return "cohere"
    raise _bad(f"Bedrock embeddings are served for Amazon Titan (amazon.titan-embed-*) and Cohere Embed "
               f"(cohere.embed-*) models, not '{model_id}'", "model")


def embeddings_body(body: dict[str, Any], model_id: str) -> dict[str, Any]:
    family = embedding_family(model_id)
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(item, str) for item in inputs):
        raise _bad("Bedrock embeds text: 'input' must be a string or an array of strings", "input")
    if family == "titan":
        if len(inputs) != 1:
            raise _bad("Titan embedding models embed one input per request", "input")
        payload: dict[str, Any] = {"inputText": inputs[0]}
        if body.get("dimensions") is not None:
            payload["dimensions"] = body["dimensions"]
        return payload
    return {"texts": inputs, "input_type": body.get("input_type") or "search_document"}


# ---------------------------------------------------------------------------------------------------- signing

class ClockedSigV4(SigV4Auth):
    """botocore's SigV4 signer with the signing instant given, not read from the system clock."""

    def __init__(self, credentials: Credentials, region: str, now: datetime.datetime):
        super().__init__(credentials, SERVICE, region)
        if now.tzinfo is not None:
            now = now.astimezone(datetime.timezone.utc)
        self._now = now

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = self._now.strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        signature = self.signature(self.string_to_sign(request, canonical), request)
        self._inject_signature_to_request(request, signature)


def aws_credentials(auth: Mapping[str, Any], environ: Mapping[str, str]) -> Credentials | str | None:
    """SigV4 credentials, a bearer token (str), or None; config before environment."""
    key, secret = auth.get("aws_access_key_id"), auth.get("aws_secret_access_key")
    if key or secret:
        if not (key and secret):
            raise _misconfigured("Bedrock auth needs both aws_access_key_id and aws_secret_access_key")
        return Credentials(key, secret, auth.get("aws_session_token") or None)
    if environ.get("AWS_BEARER_TOKEN_BEDROCK"):
        return environ["AWS_BEARER_TOKEN_BEDROCK"]
    key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return Credentials(key, secret, environ.get("AWS_SESSION_TOKEN") or None)
    return None


# ---------------------------------------------------------------------------------------------------- responses

def _message_parts(content: Any) -> tuple[str | None, str | None, list[dict[str, Any]]]:
    """Text, reasoning text and OpenAI tool calls of a Converse output message's content blocks."""
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            calls.append({"id": use.get("toolUseId"), "type": "function",
                          "function": {"name": use.get("name"),
                                       "arguments": orjson.dumps(use.get("input", {})).decode()}})
        elif isinstance(block.get("reasoningContent"), dict):
            text = (block["reasoningContent"].get("reasoningText") or {}).get("text")
            if isinstance(text, str):
                reasoning.append(text)
    return ("".join(texts) if texts else None), ("".join(reasoning) if reasoning else None), calls


def _stream_exception(message: EventMessage) -> ProviderError:
    if message.message_type == "error":
        code = str(message.headers.get(":error-code") or "InternalServerException")
        text = str(message.headers.get(":error-message") or "Bedrock reported an error in the stream")
    else:
        raw = str(message.exception_type or "internalServerException")
        code = raw[:1].upper() + raw[1:]
        try:
            data = message.json()
        except EventStreamError:
            data = {}
        text = str((data.get("message") or data.get("Message")) if isinstance(data, dict) else "") \
            or f"Bedrock reported {code} in the stream"
    status, type_ = AWS_ERRORS.get(code, (502, "api_error"))
    return ProviderError(status, text, type_, code)


class BedrockStreamDecoder:
    """ConverseStream event frames -> OpenAI chunks (``chat.completion.chunk``, or ``text_completion``)."""

    def __init__(self, route_type: str, model: str):
        self._frames = EventStreamDecoder()
        self._completions = route_type == COMPLETIONS
        self._out = ChunkWriter(route_type, model, int(time.time()),
                                ("cmpl-" if self._completions else "chatcmpl-") + uuid.uuid4().hex)
        self._role_sent = False
        self._tools: dict[Any, int] = {}  # contentBlockIndex -> index among the OpenAI tool_calls
        self._error: ProviderError | None = None  # raised once the chunks decoded before it are out
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        if self._error is not None:
            raise self._error
        try:
            messages = self._frames.feed(data)
        except EventStreamError as exc:
            raise UnreadableAnswer("upstream_invalid_frame", f"a broken event stream frame ({exc})") from None
        chunks: list[dict[str, Any]] = []
        for message in messages:
            try:
                chunks.extend(self._chunks(message))
            except ProviderError as exc:
                if not chunks:
                    raise
                self._error = exc  # an exception frame after content in the same read: content first
                break
        return chunks

    def close(self) -> list[dict[str, Any]]:
        if self._error is not None:
            raise self._error
        try:
            self._frames.close()
        except EventStreamError as exc:
            raise UnreadableAnswer("upstream_invalid_frame", f"a broken event stream frame ({exc})") from None
        return []

    # --------------------------------------------------------------------------------------------- chunks
    def _chunk(self, delta: dict[str, Any] | None = None, finish: str | None = None,
               text: str = "") -> dict[str, Any]:
        if self._completions:
            return self._out.choice({"content": text}, finish)
        if not self._role_sent and delta is not None:
            delta = {"role": "assistant", **delta}
            self._role_sent = True
        return self._out.choice(delta or {}, finish)

    def _chunks(self, message: EventMessage) -> list[dict[str, Any]]:
        if message.message_type in ("exception", "error"):
            raise _stream_exception(message)
        try:
            data = message.json()
        except EventStreamError as exc:
            raise UnreadableAnswer("upstream_invalid_frame", f"an event stream frame is not JSON ({exc})") from None
        if not isinstance(data, dict):
            return []
        event = message.event_type
        if event == "messageStart":
            if self._completions or self._role_sent:
                return []
            return [self._chunk({"content": ""})]
        if event == "contentBlockStart":
            use = (data.get("start") or {}).get("toolUse")
            if self._completions or not isinstance(use, dict):
                return []
            index = self._tools.setdefault(data.get("contentBlockIndex"), len(self._tools))
            return [self._chunk({"tool_calls": [{"index": index, "id": use.get("toolUseId"), "type": "function",
                                                 "function": {"name": use.get("name"), "arguments": ""}}]})]
        if event == "contentBlockDelta":
            delta = data.get("delta") or {}
            if isinstance(delta.get("text"), str):
                if self._completions:
                    return [self._chunk(text=delta["text"])]
                return [self._chunk({"content": delta["text"]})]
            if self._completions:
                return []
            if isinstance(delta.get("toolUse"), dict):
                index = self._tools.setdefault(data.get("contentBlockIndex"), len(self._tools))
                return [self._chunk({"tool_calls": [{"index": index, "function": {
                    "arguments": str(delta["toolUse"].get("input") or "")}}]})]
            reasoning = delta.get("reasoningContent")
            if isinstance(reasoning, dict) and isinstance(reasoning.get("text"), str):
                return [self._chunk({"reasoning_content": reasoning["text"]})]
            return []
        if event == "messageStop":
            return [self._chunk({} if not self._completions else None, finish_reason(data.get("stopReason")))]
        if event == "metadata":
            self.usage = usage_from(data.get("usage"))
            if self.usage is None:
                return []
            return [self._out.usage(self.usage)]
        return []  # contentBlockStop and events added after this driver was written


# ---------------------------------------------------------------------------------------------------- driver

class BedrockDriver:
    name = "bedrock"

    def __init__(self, clock: Callable[[], datetime.datetime] = utc_now,
                 environ: Mapping[str, str] | None = None):
        self.clock = clock
        self._environ = environ

    @property
    def environ(self) -> Mapping[str, str]:
        return self._environ if self._environ is not None else os.environ

    # --------------------------------------------------------------------------------------------- where
    def region(self, target: Target) -> str | None:
        bedrock = (target.options or {}).get("bedrock") or {}
        return bedrock.get("aws_region") or self.environ.get("AWS_REGION") or self.environ.get("AWS_DEFAULT_REGION")

    def url(self, route_type: str, target: Target, model_id: str, stream: bool) -> str:
        operation = "invoke" if route_type == EMBEDDINGS else "converse-stream" if stream else "converse"
        path = f"/model/{quote(model_id, safe=':')}/{operation}"
        upstream = (target.options or {}).get("upstream_url")
        if not upstream:
            region = self.region(target)
            if not region:
                raise _misconfigured("Bedrock needs a region: set model.options.bedrock.aws_region (or AWS_REGION)")
            return DEFAULT_HOST.format(region=region) + path
        parts = urlsplit(upstream)
        if "/model/" not in parts.path:
            return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path))
        if route_type != EMBEDDINGS:
            for suffix in ("/converse-stream", "/converse"):
                if parts.path.endswith(suffix):
                    wanted = "/converse-stream" if stream else "/converse"
                    return urlunsplit(parts._replace(path=parts.path[: -len(suffix)] + wanted))
        return upstream

    # --------------------------------------------------------------------------------------------- contract
    def build_request(self, route_type: str, body: dict[str, Any], target: Target, stream: bool) -> UpstreamRequest:
        if route_type not in (CHAT, COMPLETIONS, EMBEDDINGS):
            raise ProviderError(400, f"Bedrock does not serve route type {route_type}", "invalid_request_error",
                                "unsupported_route_type")
        model_id = target.model or body.get("model")
        if not model_id or not isinstance(model_id, str):
            raise _bad("the request must name a model", "model")
        options = target.options or {}
        if (options.get("bedrock") or {}).get("aws_assume_role_arn"):
            raise _misconfigured("Bedrock aws_assume_role_arn is not supported by Tollgate; give the role's "
                                 "credentials through auth or the environment")
        if route_type == EMBEDDINGS:
            stream = False
            payload = embeddings_body(body, model_id)
        else:
            payload = converse_body(route_type, body, target, model_id)
        headers = {"Content-Type": "application/json",
                   "Accept": "application/vnd.amazon.eventstream" if stream else "application/json"}
        url = self.url(route_type, target, model_id, stream)
        auth = target.auth or {}
        if (auth.get("header_name") and auth.get("header_value")) or (auth.get("param_name")
                                                                       and auth.get("param_value")):
            url = apply_auth(url, headers, payload, auth)
            return UpstreamRequest("POST", url, headers, orjson.dumps(payload))
        data = orjson.dumps(payload)
        return UpstreamRequest("POST", url, self._signed("POST", url, headers, data, target), data)

    def _signed(self, method: str, url: str, headers: dict[str, str], data: bytes, target: Target) -> dict[str, str]:
        """``headers`` with the credentials of ``target.auth`` or the environment (auth choices 2-5 above)."""
        credentials = aws_credentials(target.auth or {}, self.environ)
        if isinstance(credentials, str):
            headers["Authorization"] = f"Bearer {credentials}"
        elif credentials is not None:
            region = self.region(target)
            if not region:
                raise _misconfigured("Bedrock SigV4 signing needs a region: set model.options.bedrock.aws_region "
                                     "(or AWS_REGION)")
            request = AWSRequest(method=method, url=url, headers=headers, data=data)
            ClockedSigV4(credentials, region, self.clock()).add_auth(request)
            headers = dict(request.headers.items())
        elif not (target.options or {}).get("upstream_url"):
            raise _misconfigured("Bedrock needs credentials: auth.aws_access_key_id/aws_secret_access_key, a "
                                 "bearer header, or AWS_* environment variables")
        return headers

    def parse_response(self, route_type: str, body: bytes, target: Target) -> tuple[dict[str, Any], Usage | None]:
        data = json_object(body)
        model = target.model or ""
        if route_type == EMBEDDINGS:
            return self._embeddings(data, model)
        output = data.get("output")
        message = output.get("message") if isinstance(output, dict) else None
        if not isinstance(message, dict):
            raise unexpected("the answer has no output message")
        text, reasoning, calls = _message_parts(message.get("content"))
        usage = usage_from(data.get("usage"))
        finish = finish_reason(data.get("stopReason"))
        created = int(time.time())
        if route_type == COMPLETIONS:
            answer: dict[str, Any] = {
                "id": "cmpl-" + uuid.uuid4().hex, "object": "text_completion", "created": created, "model": model,
                "choices": [{"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish}]}
        else:
            out: dict[str, Any] = {"role": "assistant", "content": text if text is not None or calls else ""}
            if reasoning is not None:
                out["reasoning_content"] = reasoning
            if calls:
                out["tool_calls"] = calls
            answer = {"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion", "created": created,
                      "model": model, "choices": [{"index": 0, "message": out, "finish_reason": finish}]}
        if usage is not None:
            answer["usage"] = usage.as_openai()
        return answer, usage

    @staticmethod
    def _embeddings(data: dict[str, Any], model: str) -> tuple[dict[str, Any], Usage | None]:
        usage: Usage | None = None
        if isinstance(data.get("embedding"), list):  # Titan
            vectors = [data["embedding"]]
            tokens = token_count(data.get("inputTextTokenCount"))
            if tokens is not None:
                usage = Usage(prompt_tokens=tokens, total_tokens=tokens)
        else:  # Cohere: a list of vectors, or {"float": [...]} when embedding_types was given
            vectors = data.get("embeddings")
            if isinstance(vectors, dict):
                vectors = vectors.get("float")
            if not isinstance(vectors, list):
                raise unexpected("the embeddings answer has no float embeddings")
        answer: dict[str, Any] = {
            "object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": vector} for i, vector in enumerate(vectors)]}
        if usage is not None:
            answer["usage"] = {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens}
        return answer, usage

    def parse_error(self, status: int, headers: Any, body: bytes) -> ProviderError:
        code = _header(headers, "x-amzn-errortype")
        message = None
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            message = data.get("message") or data.get("Message")
            if not code and isinstance(data.get("__type"), str):
                code = data["__type"]
        if code:
            code = code.split(":", 1)[0].rsplit("#", 1)[-1]
        type_ = AWS_ERRORS[code][1] if code in AWS_ERRORS else _STATUS_TYPES.get(status, "api_error")
        return ProviderError(status, str(message or f"Bedrock answered {status}"), type_, code or None,
                             retry_after_of(_LowerHeaders(headers)))

    def stream_decoder(self, route_type: str, target: Target) -> BedrockStreamDecoder:
        return BedrockStreamDecoder(route_type, target.model or "")

    # -- preserve: the client's own Converse / ConverseStream / InvokeModel request, signed (see base.Driver) --------

    def native_request(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes,
                       target: Target) -> UpstreamRequest:
        options = target.options or {}
        if (options.get("bedrock") or {}).get("aws_assume_role_arn"):
            raise _misconfigured("Bedrock aws_assume_role_arn is not supported by Tollgate; give the role's "
                                 "credentials through auth or the environment")
        origin = None
        if not options.get("upstream_url"):
            region = self.region(target)
            if not region:
                raise _misconfigured("Bedrock needs a region: set model.options.bedrock.aws_region (or AWS_REGION)")
            origin = DEFAULT_HOST.format(region=region)
        # native_url gives the URL as the HTTP client will send it: what is signed below is what goes on the wire.
        url = native.native_url(origin, path, query, options, target.auth)
        headers = dict(headers)
        auth = target.auth or {}
        if (auth.get("header_name") and auth.get("header_value")) or (auth.get("param_name")
                                                                       and auth.get("param_value")):
            url, body = native.apply_auth(url, headers, body, auth)
            return UpstreamRequest(method, url, headers, body)
        return UpstreamRequest(method, url, self._signed(method, url, headers, body, target), body)

    def native_usage(self, body: bytes, headers: Any = None) -> Usage | None:
        """InvokeModel's token-count headers, else the body: Converse's ``usage``, Titan's ``inputTextTokenCount``."""
        prompt, completion = (_header(headers, "x-amzn-bedrock-input-token-count"),
                              _header(headers, "x-amzn-bedrock-output-token-count"))
        if prompt is not None and str(prompt).isdigit():
            done = int(completion) if completion is not None and str(completion).isdigit() else 0
            return Usage(prompt_tokens=int(prompt), completion_tokens=done, total_tokens=int(prompt) + done)
        data = native.json_of(body)
        if not isinstance(data, dict):
            return None
        reported = data.get("usage")
        if isinstance(reported, dict) and any(k in reported for k in ("inputTokens", "outputTokens", "totalTokens")):
            return usage_from(reported)
        if isinstance(reported, dict) and "input_tokens" in reported:   # an Anthropic model's InvokeModel body
            return anthropic_usage(reported)
        tokens = token_count(data.get("inputTextTokenCount"))          # Titan embeddings
        return Usage(prompt_tokens=tokens, total_tokens=tokens) if tokens is not None else None

    def native_stream_usage(self, target: Target) -> native.StreamUsage:
        return native.StreamUsage(BedrockStreamDecoder(CHAT, target.model or ""))


class _LowerHeaders:
    """Case-insensitive ``get`` over any headers mapping (aiohttp's already is; a plain dict is not)."""

    def __init__(self, headers: Any):
        self._headers = headers

    def get(self, name: str, default: Any = None) -> Any:
        value = _header(self._headers, name)
        return default if value is None else value


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    if value is None and hasattr(headers, "items"):
        value = next((v for k, v in headers.items() if str(k).lower() == name), None)
    return value


driver = BedrockDriver()

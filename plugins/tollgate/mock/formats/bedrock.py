"""Amazon Bedrock Runtime wire format: Converse, ConverseStream (AWS event-stream binary frames), InvokeModel
embeddings (Amazon Titan and Cohere Embed bodies), rest-json error bodies.

Endpoints (any prefix; the model id is in the path, URL-decoded):
    POST /model/{modelId}/converse         Converse JSON answer
    POST /model/{modelId}/converse-stream  ``application/vnd.amazon.eventstream``: messageStart, contentBlockStart
                                           (tool use), contentBlockDelta (text / toolUse.input fragments),
                                           contentBlockStop, messageStop, metadata (usage, metrics)
    POST /model/{modelId}/invoke           Titan (``{"inputText"}``) or Cohere (``{"texts"}``) embeddings

Every stream frame is a real event-stream message (prelude, typed headers, payload, two CRC32s; see
``encode_message``), with the headers Bedrock sends (``:event-type``, ``:content-type``, ``:message-type``) and
the ``p`` padding field Bedrock adds to event payloads. Errors are ``{"message": ...}`` with the
``x-amzn-ErrorType`` header; ``Reply.error`` as a dict may set ``"type"`` (e.g. ``"ModelTimeoutException"``) to
pick the AWS error type (else it follows the status). ``Reply.error_after`` sends an exception frame
(``:message-type: exception``; default ``internalServerException``, or ``error={"type": "throttlingException",
"message": ...}``). Raw ``Reply.events``: a dict ``{"<eventType>": payload}`` becomes an event frame (an
``...Exception`` key becomes an exception frame); bytes go out verbatim. ``Reply.malformed`` on a stream breaks the
message CRC of the first content frame. Reply.extra keys read here: none.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib
from collections.abc import Mapping
from typing import Any

import orjson

from ..text import embedding, fragments
from . import Call, Endpoint, Format, Frames, MockError, register

EVENT_STREAM = "application/vnd.amazon.eventstream"
_PATH_RE = re.compile(r"/model/(.+)/(converse|converse-stream|invoke)$")
_PAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_CORAL = ":http://internal.amazon.com/coral/com.amazon.bedrock/"

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}

# status -> (x-amzn-ErrorType, default message)
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("ValidationException", "Malformed input request, please reformat your input and try again."),
    401: ("UnrecognizedClientException", "The security token included in the request is invalid."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "The provided model identifier is invalid."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request. Try your request again."),
    424: ("ModelErrorException", "The model returned an error. Try your request again."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error while processing the request."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}

_BLOCK_KINDS = ("text", "image", "document", "video", "audio", "toolUse", "toolResult", "guardContent", "cachePoint",
                "reasoningContent", "citationsContent", "searchResult")


# ---------------------------------------------------------------------------------------------------- encoding

def _header_bytes(name: str, value: Any) -> bytes:
    raw_name = name.encode("utf-8")
    head = struct.pack("!B", len(raw_name)) + raw_name
    if isinstance(value, bool):
        return head + (b"\x00" if value else b"\x01")
    if isinstance(value, int):
        if -(2 ** 31) <= value < 2 ** 31:
            return head + b"\x04" + struct.pack("!i", value)
        return head + b"\x05" + struct.pack("!q", value)
    if isinstance(value, bytes):
        return head + b"\x06" + struct.pack("!H", len(value)) + value
    raw = str(value).encode("utf-8")
    return head + b"\x07" + struct.pack("!H", len(raw)) + raw


def encode_message(headers: Mapping[str, Any], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC32), headers, payload, CRC32.

    Header values: str -> string (7), bytes -> byte array (6), bool -> true/false (0/1), int -> int32 (4) or
    int64 (5).
    """
    header_bytes = b"".join(_header_bytes(name, value) for name, value in headers.items())
    total = 12 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack("!II", total, len(header_bytes))
    message = prelude + struct.pack("!I", zlib.crc32(prelude) & 0xFFFFFFFF) + header_bytes + payload
    return message + struct.pack("!I", zlib.crc32(message) & 0xFFFFFFFF)


def _padded(payload: Mapping[str, Any]) -> bytes:
    body = orjson.dumps(payload)
    return orjson.dumps({**payload, "p": _PAD[: 1 + len(body) % len(_PAD)]})


def event_frame(event_type: str, payload: Mapping[str, Any]) -> bytes:
    """A ConverseStream event as Bedrock frames it."""
    return encode_message({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                          _padded(payload))


def exception_frame(exception_type: str, message: str, **fields: Any) -> bytes:
    """A modelled exception inside a stream (``:exception-type`` is the union member, e.g. throttlingException)."""
    exception_type = exception_type[:1].lower() + exception_type[1:]
    return encode_message({":exception-type": exception_type, ":content-type": "application/json",
                           ":message-type": "exception"}, orjson.dumps({"message": message, **fields}))


# ---------------------------------------------------------------------------------------------------- helpers

def _model_of(path: str, body: Any) -> str | None:
    m = _PATH_RE.search(path)
    return m.group(1) if m else None


def _never(path: str, body: Any) -> bool:
    return False


def _always(path: str, body: Any) -> bool:
    return True


def _block_texts(blocks: Any) -> list[str]:
    texts = []
    for block in blocks if isinstance(blocks, list) else ():
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            texts.append(block["text"])
    return texts


def _tool_input(arguments: str) -> Any:
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments


class BedrockFormat(Format):
    name = "bedrock"
    stream_content_type = EVENT_STREAM

    def __init__(self) -> None:
        self._error_types: dict[int, str] = {}

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(self, "POST", None, "converse", pattern=r"/model/.+/converse$", render=self.converse,
                     render_stream=self.converse_stream, validate=self.validate_converse, is_stream=_never,
                     model_of=_model_of),
            Endpoint(self, "POST", None, "converse_stream", pattern=r"/model/.+/converse-stream$",
                     render=self.converse, render_stream=self.converse_stream, validate=self.validate_converse,
                     is_stream=_always, model_of=_model_of),
            Endpoint(self, "POST", None, "invoke", pattern=r"/model/.+/invoke$", render=self.invoke,
                     validate=self.validate_invoke, is_stream=_never, model_of=_model_of),
        ]

    # ------------------------------------------------------------------------------------------------ errors
    def error_body(self, call: Call, status: int, error: str | Mapping[str, Any] | None) -> bytes:
        error_type, message = _ERRORS.get(status, ("InternalServerException" if status >= 500 else
                                                   "ValidationException", f"HTTP {status}."))
        body: dict[str, Any] = {"message": message}
        if isinstance(error, str):
            body["message"] = error
        elif error:
            fields = dict(error)
            error_type = str(fields.pop("type", None) or error_type)
            body.update(fields)
        self._error_types[call.seq] = error_type
        return orjson.dumps(body)

    def stream_error(self, call: Call, error: str | Mapping[str, Any] | None) -> bytes:
        message = _ERRORS[500][1]
        exception_type = "internalServerException"
        fields: dict[str, Any] = {}
        if isinstance(error, str):
            message = error
        elif error:
            fields = dict(error)
            exception_type = str(fields.pop("type", None) or exception_type)
            message = str(fields.pop("message", None) or message)
        return exception_frame(exception_type, message, **fields)

    def headers(self, call: Call) -> dict[str, str]:
        headers = {"x-amzn-RequestId": f"00000000-0000-4000-8000-{call.seq:012d}"}
        error_type = self._error_types.pop(call.seq, None)
        if error_type is not None:
            headers["x-amzn-ErrorType"] = error_type + _CORAL
        return headers

    def frame(self, event: str | Mapping[str, Any] | bytes) -> bytes:
        if isinstance(event, bytes):
            return event
        data = orjson.loads(event) if isinstance(event, str) else dict(event)
        if len(data) != 1:
            raise ValueError('a raw Bedrock event is {"<eventType>": payload}')
        (name, payload), = data.items()
        if name.lower().endswith("exception"):
            payload = dict(payload or {})
            return exception_frame(name, str(payload.pop("message", "")), **payload)
        return event_frame(name, payload or {})

    def malform_stream(self, frames: Frames) -> Frames:
        head, body, tail = list(frames.head), list(frames.body), list(frames.tail)
        target = body if body else head if head else tail
        if target:
            frame = bytearray(target[0])
            if len(frame) > 16:
                frame[-5] ^= 0xFF  # last payload byte: the message CRC no longer matches
            target[0] = bytes(frame)
        return Frames(head, body, tail)

    # ------------------------------------------------------------------------------------------------ converse
    @staticmethod
    def validate_converse(call: Call) -> None:
        body = call.body
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise MockError(400, "Malformed input request: #: required key [messages] not found, please reformat "
                                 "your input and try again.")
        uses_tools = False
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise MockError(400, f"messages.{i}.role: must be one of [user, assistant]")
            content = message.get("content")
            if not isinstance(content, list) or not content:
                raise MockError(400, f"messages.{i}.content: must contain at least one content block")
            for j, block in enumerate(content):
                kinds = [k for k in block if k in _BLOCK_KINDS] if isinstance(block, dict) else []
                if len(kinds) != 1 or len(block) != 1:
                    raise MockError(400, f"messages.{i}.content.{j}: a ContentBlock must set exactly one member")
                kind = kinds[0]
                if kind == "text" and not str(block["text"]).strip():
                    raise MockError(400, f"The text field in the ContentBlock object at messages.{i}.content.{j} "
                                         "is blank. Add text to the text field, and try again.")
                if kind == "image":
                    image = block["image"]
                    if image.get("format") not in ("png", "jpeg", "gif", "webp"):
                        raise MockError(400, f"messages.{i}.content.{j}.image.format: must be one of "
                                             "[png, jpeg, gif, webp]")
                    data = (image.get("source") or {}).get("bytes")
                    if data is not None:
                        try:
                            base64.b64decode(data, validate=True)
                        except (binascii.Error, ValueError):
                            raise MockError(400, f"messages.{i}.content.{j}.image.source.bytes: invalid base64")
                uses_tools = uses_tools or kind in ("toolUse", "toolResult")
        if messages[0].get("role") != "user":
            raise MockError(400, "A conversation must start with a user message. Try again with a conversation "
                                 "that starts with a user message.")
        for before, after in zip(messages, messages[1:]):
            if before.get("role") == after.get("role"):
                raise MockError(400, "A conversation must alternate between user and assistant roles. Make sure "
                                     "the conversation alternates between user and assistant roles and try again.")
        if uses_tools and not (body.get("toolConfig") or {}).get("tools"):
            raise MockError(400, "The toolConfig field must be defined when using toolUse and toolResult content "
                                 "blocks.")

    def _answer(self, call: Call):
        body = call.body
        count = call.count
        prompt = sum(count(text) for text in _block_texts(body.get("system")))
        echo = ""
        for message in body.get("messages") or ():
            if not isinstance(message, dict):
                continue
            texts = _block_texts(message.get("content"))
            prompt += sum(count(text) for text in texts)
            for block in message.get("content") or ():
                if isinstance(block, dict) and isinstance(block.get("toolUse"), dict):
                    prompt += count(orjson.dumps(block["toolUse"].get("input", {})).decode())
                elif isinstance(block, dict) and isinstance(block.get("toolResult"), dict):
                    for part in block["toolResult"].get("content") or ():
                        if isinstance(part, dict) and "json" in part:
                            prompt += count(orjson.dumps(part["json"]).decode())
                        elif isinstance(part, dict) and isinstance(part.get("text"), str):
                            prompt += count(part["text"])
            if message.get("role") == "user" and texts:
                echo = " ".join(texts)
        max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
        return call.answer(echo=echo, prompt_tokens=prompt,
                           max_tokens=max_tokens if isinstance(max_tokens, int) else None)

    @staticmethod
    def _usage(call: Call, ans) -> Any:
        if call.reply.usage is not None:
            return dict(call.reply.usage)
        cached = ans.cached_tokens
        usage: dict[str, Any] = {"inputTokens": max(ans.prompt_tokens - cached, 0),
                                 "outputTokens": ans.completion_tokens, "totalTokens": ans.total_tokens}
        if cached:
            usage["cacheReadInputTokens"] = cached
            usage["cacheWriteInputTokens"] = 0
        return usage

    @staticmethod
    def _latency(call: Call) -> int:
        return 100 + call.seq % 900

    def converse(self, call: Call) -> bytes:
        ans = self._answer(call)
        content: list[dict[str, Any]] = []
        if ans.text:
            content.append({"text": ans.text})
        for tc in ans.tool_calls:
            content.append({"toolUse": {"toolUseId": tc.id, "name": tc.name, "input": _tool_input(tc.arguments_json)}})
        return orjson.dumps({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": call.finish_reason(STOP_REASONS),
            "usage": self._usage(call, ans),
            "metrics": {"latencyMs": self._latency(call)},
        })

    def converse_stream(self, call: Call) -> Frames:
        ans = self._answer(call)
        head = [event_frame("messageStart", {"role": "assistant"})]
        body: list[bytes] = []
        block = 0
        pieces = call.pieces(ans.text) if ans.text else []
        if pieces:
            body = [event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
                    for piece in pieces]
            body[-1] += event_frame("contentBlockStop", {"contentBlockIndex": 0})
            block = 1
        for tc in ans.tool_calls:
            body.append(event_frame("contentBlockStart", {"contentBlockIndex": block,
                                                          "start": {"toolUse": {"toolUseId": tc.id, "name": tc.name}}}))
            for fragment in fragments(tc.arguments_json):
                body.append(event_frame("contentBlockDelta", {"contentBlockIndex": block,
                                                              "delta": {"toolUse": {"input": fragment}}}))
            body[-1] += event_frame("contentBlockStop", {"contentBlockIndex": block})
            block += 1
        tail = [event_frame("messageStop", {"stopReason": call.finish_reason(STOP_REASONS)}),
                event_frame("metadata", {"usage": self._usage(call, ans),
                                         "metrics": {"latencyMs": self._latency(call)}})]
        return Frames(head, body, tail)

    # ------------------------------------------------------------------------------------------------ invoke
    @staticmethod
    def validate_invoke(call: Call) -> None:
        body = call.body
        if isinstance(body.get("inputText"), str) and body["inputText"]:
            return
        texts = body.get("texts")
        if isinstance(texts, list) and all(isinstance(t, str) for t in texts) and len(texts) <= 96:
            if not body.get("input_type"):
                raise MockError(400, "Malformed input request: #: required key [input_type] not found, please "
                                     "reformat your input and try again.")
            return
        raise MockError(400, "Malformed input request, please reformat your input and try again.")

    def invoke(self, call: Call) -> bytes:
        body = call.body
        reply = call.reply
        model = call.model or ""
        if "inputText" in body:
            text = body["inputText"]
            dims = reply.dims or body.get("dimensions") or (1024 if "v2" in model else call.mock.embedding_dims)
            vector = list(reply.embeddings[0]) if reply.embeddings else embedding(text, dims).tolist()
            tokens = reply.prompt_tokens if reply.prompt_tokens is not None else call.count(text)
            answer: dict[str, Any] = {"embedding": vector, "inputTextTokenCount": tokens}
            if "v2" in model:
                answer["embeddingsByType"] = {"float": vector}
            return orjson.dumps(answer)
        texts = body["texts"]
        dims = reply.dims or call.mock.embedding_dims
        vectors = [list(reply.embeddings[i % len(reply.embeddings)]) if reply.embeddings
                   else embedding(text, dims).tolist() for i, text in enumerate(texts)]
        by_type = bool(body.get("embedding_types"))
        return orjson.dumps({
            "id": f"00000000-0000-4000-8000-{call.seq:012d}",
            "embeddings": {"float": vectors} if by_type else vectors,
            "response_type": "embeddings_by_type" if by_type else "embeddings_floats",
            "texts": texts,
        })


FORMAT = register(BedrockFormat())

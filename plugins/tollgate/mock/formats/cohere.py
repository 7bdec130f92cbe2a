"""Cohere wire format: Chat API v2 (``POST /v2/chat``, JSON and SSE) and Embed v2 (``POST /v2/embed``), error bodies.

Shapes follow Cohere's documented v2 bodies (cohere-openapi.yaml examples): a chat response ``{id, finish_reason,
message: {role, content: [{type: text, text}], tool_plan?, tool_calls?}, usage: {billed_units, tokens}}`` with
``finish_reason`` ``COMPLETE`` / ``MAX_TOKENS`` / ``TOOL_CALL`` (Reply.finish_reason is sent verbatim, e.g.
``"STOP_SEQUENCE"`` or ``"ERROR"``); when the reply makes tool calls its text is the ``tool_plan`` (no content). The
stream is ``event: <type>`` + ``data: <json with the same type>`` frames: ``message-start``, then either
``content-start``, ``content-delta``..., ``content-end`` or ``tool-plan-delta``..., ``tool-call-start``,
``tool-call-delta``..., ``tool-call-end`` per call, and ``message-end`` (finish reason and usage). Embed answers
``{id, texts, embeddings: {float|base64: [...]}, meta: {api_version, billed_units: {input_tokens}}, response_type:
"embeddings_by_type"}``. Errors are ``{"id", "message"}``; inside a stream, a ``message-end`` with ``finish_reason:
"ERROR"`` and ``delta.error``.

Usage: ``tokens`` holds the counted numbers; ``billed_units`` the same unless Reply.extra says otherwise.

Validation (``MockLLM(validate=True)``) answers 400 like the real API for a missing ``model`` / ``messages``, an
unknown message role, a tool message without ``tool_call_id``, a ``tool_choice`` other than REQUIRED / NONE, ``p`` out
of [0.01, 0.99], ``k`` out of [0, 500], an embed request without ``input_type`` or ``texts``, and (stricter than
documented, to catch untranslated OpenAI requests) any top-level field the v2 API does not define.

Reply.extra keys read here:
  ``billed_input_tokens``, ``billed_output_tokens``  the ``usage.billed_units`` numbers (default: as ``tokens``)
  ``tool_plan``                                       the tool plan sent with tool calls (default: the reply text)
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from ..text import embedding, embedding_base64, fragments
from . import Answer, Call, Endpoint, Format, Frames, MockError, register

_FINISH = {"stop": "COMPLETE", "length": "MAX_TOKENS", "tool_calls": "TOOL_CALL"}

CHAT_FIELDS = frozenset({
    "stream", "model", "messages", "tools", "strict_tools", "documents", "citation_options", "response_format",
    "safety_mode", "max_tokens", "stop_sequences", "temperature", "seed", "frequency_penalty", "presence_penalty",
    "k", "p", "logprobs", "tool_choice", "thinking", "priority",
})
EMBED_FIELDS = frozenset({"texts", "images", "model", "input_type", "inputs", "max_tokens", "output_dimension",
                          "embedding_types", "truncate", "priority"})
_ROLES = ("system", "user", "assistant", "tool")

# status -> message; "{model}" is filled in
_ERRORS: dict[int, str] = {
    400: "invalid request",
    401: "invalid api token",
    403: "Forbidden",
    404: "model '{model}' not found, make sure the correct model ID was used and that you have access to the model.",
    422: "unprocessable entity",
    429: "You are using a Trial key, which is limited to 10 API calls / minute. You can continue to use the Trial key "
         "for free or upgrade to a Production key with higher rate limits at 'https://dashboard.cohere.com/api-keys'. "
         "Contact us on 'https://discord.gg/XW44jPfYJu' or email us at support@cohere.com with any questions",
    498: "invalid token",
    499: "request cancelled",
    500: "internal server error, this has been reported to our developers",
    503: "service unavailable",
    504: "gateway timeout",
}


def _text(content: Any) -> str:
    """Text of a v2 message content: a string, or its text blocks (tool contents too)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"),
                                                                                                 str))
    return ""


def validate_sampling(body: Mapping[str, Any]) -> None:
    """``p`` and ``k`` within Cohere's documented ranges (v1 and v2 alike)."""
    p = body.get("p")
    if p is not None and not (isinstance(p, (int, float)) and 0.01 <= p <= 0.99):
        raise MockError(400, "invalid request: p must be between 0.01 and 0.99")
    k = body.get("k")
    if k is not None and not (isinstance(k, int) and 0 <= k <= 500):
        raise MockError(400, "invalid request: k must be between 0 and 500")


def _request_id(call: Call) -> str:
    return str(uuid.UUID(int=call.seq))


class CohereFormat(Format):
    name = "cohere"

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(self, "POST", "/v2/chat", "chat", render=self.chat, render_stream=self.chat_stream,
                     validate=self.validate_chat),
            Endpoint(self, "POST", "/v2/embed", "embed", render=self.embed, validate=self.validate_embed,
                     is_stream=lambda p, b: False),
        ]

    # ------------------------------------------------------------------------------------------------ errors
    def error_body(self, call: Call, status: int, error: str | Mapping[str, Any] | None) -> bytes:
        message = _ERRORS.get(status, f"HTTP {status}").format(model=call.model)
        body: dict[str, Any] = {"id": _request_id(call), "message": message}
        if isinstance(error, str):
            body["message"] = error
        elif error:
            body.update(error)
        return orjson.dumps(body)

    def stream_error(self, call: Call, error: str | Mapping[str, Any] | None) -> bytes:
        message = error if isinstance(error, str) else (error or {}).get("message", "internal server error")
        return self.frame({"type": "message-end", "delta": {"error": message, "finish_reason": "ERROR"}})

    def frame(self, event: str | Mapping[str, Any] | bytes) -> bytes:
        """A raw event: bytes verbatim; a dict as ``event: <its type>`` + ``data:``; a str as a ``data:`` line."""
        if isinstance(event, bytes):
            return event
        if isinstance(event, str):
            return b"data: " + event.encode() + b"\n\n"
        kind = event.get("type")
        head = b"event: " + str(kind).encode() + b"\n" if kind else b""
        return head + b"data: " + orjson.dumps(event) + b"\n\n"

    # ------------------------------------------------------------------------------------------------ chat
    @staticmethod
    def validate_chat(call: Call) -> None:
        body = call.body
        unknown = sorted(set(body) - CHAT_FIELDS)
        if unknown:
            raise MockError(400, f"invalid request: unknown field(s) {', '.join(unknown)}")
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise MockError(400, "invalid request: model must be a non-empty string")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise MockError(400, "invalid request: messages must contain at least one message")
        for message in messages:
            role = message.get("role") if isinstance(message, dict) else None
            if role not in _ROLES:
                raise MockError(400, f"invalid request: message role must be one of {', '.join(_ROLES)}")
            if role == "tool" and not message.get("tool_call_id"):
                raise MockError(400, "invalid request: tool messages must have a tool_call_id")
        if body.get("tool_choice") is not None and body["tool_choice"] not in ("REQUIRED", "NONE"):
            raise MockError(400, "invalid request: tool_choice must be one of REQUIRED, NONE")
        validate_sampling(body)

    def _answer(self, call: Call) -> Answer:
        count = call.count
        echo, tokens = "", 0
        for message in call.body.get("messages") or ():
            if not isinstance(message, dict):
                continue
            text = _text(message.get("content")) or (message.get("tool_plan") or "")
            tokens += count(text) if text else 0
            for tool_call in message.get("tool_calls") or ():
                if isinstance(tool_call, dict) and isinstance(tool_call.get("function"), dict):
                    tokens += count(str(tool_call["function"].get("arguments", "")))
            if message.get("role") == "user" and text:
                echo = text
        max_tokens = call.body.get("max_tokens")
        return call.answer(echo=echo, prompt_tokens=tokens,
                           max_tokens=max_tokens if isinstance(max_tokens, int) else None)

    @staticmethod
    def _usage(call: Call, ans: Answer) -> Any:
        if call.reply.usage is not None:
            return call.reply.usage
        extra = call.reply.extra
        usage: dict[str, Any] = {
            "billed_units": {"input_tokens": extra.get("billed_input_tokens", ans.prompt_tokens),
                             "output_tokens": extra.get("billed_output_tokens", ans.completion_tokens)},
            "tokens": {"input_tokens": ans.prompt_tokens, "output_tokens": ans.completion_tokens},
        }
        if ans.cached_tokens:
            usage["cached_tokens"] = ans.cached_tokens
        return usage

    @staticmethod
    def _tool_calls(ans: Answer) -> list[dict[str, Any]]:
        return [{"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments_json}}
                for tc in ans.tool_calls]

    def chat(self, call: Call) -> bytes:
        ans = self._answer(call)
        message: dict[str, Any] = {"role": "assistant"}
        if ans.tool_calls:
            plan = call.reply.extra.get("tool_plan", ans.text)
            if plan:
                message["tool_plan"] = plan
            message["tool_calls"] = self._tool_calls(ans)
        else:
            message["content"] = [{"type": "text", "text": ans.text or ""}]
        return orjson.dumps({"id": _request_id(call), "message": message,
                             "finish_reason": call.finish_reason(_FINISH), "usage": self._usage(call, ans)})

    def chat_stream(self, call: Call) -> Frames:
        ans = self._answer(call)
        frame = self.frame
        head = [frame({"type": "message-start", "id": _request_id(call),
                       "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [],
                                             "citations": []}}})]
        body: list[bytes] = []
        tail: list[bytes] = []
        if ans.tool_calls:
            plan = call.reply.extra.get("tool_plan", ans.text)
            body += [frame({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}})
                     for piece in call.pieces(plan)]
            for i, tc in enumerate(ans.tool_calls):
                body.append(frame({"type": "tool-call-start", "index": i, "delta": {"message": {"tool_calls": {
                    "id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": ""}}}}}))
                body += [frame({"type": "tool-call-delta", "index": i,
                                "delta": {"message": {"tool_calls": {"function": {"arguments": piece}}}}})
                         for piece in fragments(tc.arguments_json)]
                body.append(frame({"type": "tool-call-end", "index": i}))
        else:
            head.append(frame({"type": "content-start", "index": 0,
                               "delta": {"message": {"content": {"type": "text", "text": ""}}}}))
            body += [frame({"type": "content-delta", "index": 0,
                            "delta": {"message": {"content": {"text": piece}}}}) for piece in call.pieces(ans.text)]
            tail.append(frame({"type": "content-end", "index": 0}))
        tail.append(frame({"type": "message-end", "delta": {"finish_reason": call.finish_reason(_FINISH),
                                                             "usage": self._usage(call, ans)}}))
        return Frames(head, body, tail)

    # ------------------------------------------------------------------------------------------------ embed
    @staticmethod
    def validate_embed(call: Call) -> None:
        body = call.body
        unknown = sorted(set(body) - EMBED_FIELDS)
        if unknown:
            raise MockError(400, f"invalid request: unknown field(s) {', '.join(unknown)}")
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise MockError(400, "invalid request: model must be a non-empty string")
        if not body.get("input_type"):
            raise MockError(400, "invalid request: input_type is required for Embed v3 and newer models")
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise MockError(400, "invalid request: texts must be a non-empty list of strings")
        kinds = body.get("embedding_types") or ["float"]
        if any(kind not in ("float", "int8", "uint8", "binary", "ubinary", "base64") for kind in kinds):
            raise MockError(400, "invalid request: embedding_types must be float, int8, uint8, binary, ubinary "
                                 "or base64")

    def embed(self, call: Call) -> bytes:
        body = call.body
        texts = [t for t in body.get("texts") or () if isinstance(t, str)]
        reply = call.reply
        dims = reply.dims or body.get("output_dimension") or call.mock.embedding_dims
        vectors = []
        for i, text in enumerate(texts):
            if reply.embeddings:
                from array import array

                vectors.append(array("f", reply.embeddings[i % len(reply.embeddings)]))
            else:
                vectors.append(embedding(text, dims))
        kinds = body.get("embedding_types") or ["float"]
        embeddings: dict[str, Any] = {}
        for kind in kinds:
            if kind == "base64":
                embeddings[kind] = [embedding_base64(v) for v in vectors]
            elif kind == "float":
                embeddings[kind] = [v.tolist() for v in vectors]
            else:  # the integer types are not modelled: rounded floats keep the shape
                embeddings[kind] = [[round(x * 127) for x in v] for v in vectors]
        tokens = reply.prompt_tokens if reply.prompt_tokens is not None else sum(call.count(t) for t in texts)
        meta: Any = reply.usage if reply.usage is not None else {
            "api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}}
        return orjson.dumps({"id": _request_id(call), "texts": texts, "embeddings": embeddings, "meta": meta,
                             "response_type": "embeddings_by_type"})


FORMAT = register(CohereFormat())

"""Mistral wire format: chat completions (JSON and SSE) and embeddings, served under ``/mistral/v1/...``.

Mistral's real paths (``/v1/chat/completions``, ``/v1/embeddings``) are OpenAI's, so on the mock they carry a
``/mistral`` prefix: point a Mistral client or driver at ``<mock url>/mistral/v1``.

Shapes follow Mistral's documented bodies: ``chat.completion`` with a 32-hex-digit id, ``message: {role, content,
tool_calls}`` (``tool_calls: null`` when there are none; calls as ``{id, function: {name, arguments}, index}`` with
9-character ids), ``usage: {prompt_tokens, total_tokens, completion_tokens}``; the stream is ``data: <chunk>`` SSE
whose first chunk has ``delta: {role: "assistant", content: ""}``, whose last content (or tool call) chunk also
carries ``finish_reason`` and ``usage`` (Mistral sends usage without being asked), then ``data: [DONE]``.
Reply.finish_reason is sent verbatim (e.g. ``"model_length"``, ``"error"``). Errors: 401 ``{"message":
"Unauthorized", "request_id"}``, 429 ``{"message": "Requests rate limit exceeded"}``, validation 422 ``{"object":
"error", "message": {"detail": [{"type", "loc", "msg", "input"}]}, "type": "invalid_request_error", "param": null,
"code": null}``, others ``{"object": "error", "message", "type", "param", "code"}``.

Validation (``MockLLM(validate=True)``) answers like the real (strict) API: 422 ``extra_forbidden`` for any field
Mistral does not define (top level, or a message key its role does not have), 400 for a tool call id that is not 9
characters ``[a-zA-Z0-9]``, a ``tool_choice`` other than auto / none / any / required / a function, a missing model
or empty messages.

Reply.extra keys read here: none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from . import Call, Endpoint, Frames, MockError, register
from .openai import OpenAIFormat

_PREFIX = "/mistral/v1"
_DONE = b"data: [DONE]\n\n"
_ID = re.compile(r"^[A-Za-z0-9]{9}$")

CHAT_FIELDS = frozenset({
    "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed", "metadata",
    "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n", "prediction",
    "parallel_tool_calls", "reasoning_effort", "prompt_mode", "guardrails", "prompt_cache_key", "safe_prompt",
})
EMBEDDING_FIELDS = frozenset({"model", "input", "metadata", "output_dimension", "output_dtype", "encoding_format"})
MESSAGE_FIELDS = {
    "system": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "tool_calls", "prefix"},
    "tool": {"role", "content", "tool_call_id", "name"},
}


def _extra_forbidden(loc: list[Any], value: Any) -> MockError:
    return MockError(422, None, detail=[{"type": "extra_forbidden", "loc": loc, "msg": "Extra inputs are not permitted",
                                         "input": value}])


def _mistral_id(value: str | None, fallback: str) -> str:
    """A 9-character [a-zA-Z0-9] tool call id (Mistral's form) made from the Reply's id."""
    if value and _ID.match(value):
        return value
    return re.sub(r"[^A-Za-z0-9]", "", value or fallback)[-9:].rjust(9, "0")


class MistralFormat(OpenAIFormat):
    name = "mistral"

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(self, "POST", _PREFIX + "/chat/completions", "chat", render=self.chat,
                     render_stream=self.chat_stream, validate=self.validate_chat),
            Endpoint(self, "POST", _PREFIX + "/embeddings", "embeddings", render=self.embeddings,
                     validate=self.validate_embeddings, is_stream=lambda p, b: False),
        ]

    # ------------------------------------------------------------------------------------------------ errors
    def error_body(self, call: Call, status: int, error: str | Mapping[str, Any] | None) -> bytes:
        fields: dict[str, Any] = {"message": error} if isinstance(error, str) else dict(error or {})
        if status == 401:
            return orjson.dumps({"message": fields.get("message", "Unauthorized"), "request_id": f"mock{call.seq}"})
        if status == 429:
            return orjson.dumps({"message": fields.get("message", "Requests rate limit exceeded")})
        if "detail" in fields:
            message: Any = {"detail": fields.pop("detail")}
        else:
            message = fields.pop("message", "Internal server error" if status >= 500 else "Invalid request")
        body = {"object": "error", "message": message,
                "type": "internal_server_error" if status >= 500 else "invalid_request_error",
                "param": None, "code": None}
        body.update(fields)
        return orjson.dumps(body)

    def stream_error(self, call: Call, error: str | Mapping[str, Any] | None) -> bytes:
        return b"data: " + self.error_body(call, 500, error) + b"\n\n"

    def headers(self, call: Call) -> dict[str, str]:
        return {"mistral-correlation-id": f"mock{call.seq}"}

    # ------------------------------------------------------------------------------------------------ chat
    @staticmethod
    def validate_chat(call: Call) -> None:
        body = call.body
        for key in body:
            if key not in CHAT_FIELDS:
                raise _extra_forbidden(["body", key], body[key])
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise MockError(422, None, detail=[{"type": "missing", "loc": ["body", "model"], "msg": "Field required",
                                                "input": body}])
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise MockError(400, "Expected last role User or Tool (or Assistant with prefix True) for serving but "
                                 "got no messages")
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            allowed = MESSAGE_FIELDS.get(role)  # type: ignore[arg-type]
            if allowed is None:
                raise MockError(422, None, detail=[{"type": "union_tag_invalid", "loc": ["body", "messages", i],
                                                    "msg": f"Input tag '{role}' found using 'role' does not match any "
                                                           "of the expected tags: 'system', 'user', 'assistant', "
                                                           "'tool'", "input": message}])
            for key in message:
                if key not in allowed:
                    raise _extra_forbidden(["body", "messages", i, role, key], message[key])
            ids = [tc.get("id") for tc in message.get("tool_calls") or () if isinstance(tc, dict)]
            if role == "tool":
                ids.append(message.get("tool_call_id"))
            for value in ids:
                if value is not None and not (isinstance(value, str) and _ID.match(value)):
                    raise MockError(400, f"Tool call id was {value} but must be a-z, A-Z, 0-9, with a length of 9.")
        choice = body.get("tool_choice")
        if choice is not None and choice not in ("auto", "none", "any", "required") and not (
                isinstance(choice, dict) and isinstance(choice.get("function"), dict)):
            raise MockError(422, None, detail=[{"type": "enum", "loc": ["body", "tool_choice"],
                                                "msg": "Input should be 'auto', 'none', 'any' or 'required'",
                                                "input": choice}])

    @staticmethod
    def _usage(call: Call, ans) -> Any:
        if call.reply.usage is not None:
            return call.reply.usage
        usage: dict[str, Any] = {"prompt_tokens": ans.prompt_tokens, "total_tokens": ans.total_tokens,
                                 "completion_tokens": ans.completion_tokens}
        if ans.cached_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": ans.cached_tokens}
        return usage

    @staticmethod
    def _calls(call: Call, ans) -> list[dict[str, Any]]:
        return [{"id": _mistral_id(tc.id, f"{call.seq}x{i}"), "function": {"name": tc.name,
                                                                         "arguments": tc.arguments_json},
                 "index": i} for i, tc in enumerate(ans.tool_calls)]

    @staticmethod
    def _id(call: Call) -> str:
        return f"{call.seq:032x}"

    def chat(self, call: Call) -> bytes:
        ans = self._chat_answer(call)
        message = {"role": "assistant", "content": ans.text if ans.text is not None else "",
                   "tool_calls": self._calls(call, ans) or None}
        return orjson.dumps({
            "id": self._id(call), "object": "chat.completion", "created": call.created, "model": call.model,
            "choices": [{"index": 0, "message": message, "finish_reason": call.finish_reason()}],
            "usage": self._usage(call, ans),
        })

    def chat_stream(self, call: Call) -> Frames:
        ans = self._chat_answer(call)
        common = {"id": self._id(call), "object": "chat.completion.chunk", "created": call.created,
                  "model": call.model}

        def chunk(delta: dict[str, Any], last: bool = False) -> bytes:
            data: dict[str, Any] = {**common, "choices": [{"index": 0, "delta": delta,
                                                          "finish_reason": call.finish_reason() if last else None}]}
            if last:
                data["usage"] = self._usage(call, ans)
            return b"data: " + orjson.dumps(data) + b"\n\n"

        deltas: list[dict[str, Any]] = [{"content": piece} for piece in call.pieces(ans.text)] if ans.text else []
        deltas += [{"tool_calls": [tool_call]} for tool_call in self._calls(call, ans)]
        if not deltas:
            deltas = [{"content": ""}]
        body = [chunk(delta, last=i == len(deltas) - 1) for i, delta in enumerate(deltas)]
        return Frames([chunk({"role": "assistant", "content": ""})], body, [_DONE])

    # ------------------------------------------------------------------------------------------------ embeddings
    @staticmethod
    def validate_embeddings(call: Call) -> None:
        body = call.body
        for key in body:
            if key not in EMBEDDING_FIELDS:
                raise _extra_forbidden(["body", key], body[key])
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise MockError(422, None, detail=[{"type": "missing", "loc": ["body", "model"], "msg": "Field required",
                                                "input": body}])
        if body.get("input") in (None, "", []):
            raise MockError(422, None, detail=[{"type": "missing", "loc": ["body", "input"], "msg": "Field required",
                                                "input": body}])

    def embeddings(self, call: Call) -> bytes:
        body = call.body
        if body.get("output_dimension") and not call.reply.dims:
            call.reply = call.reply.replace(dims=body["output_dimension"])
        data = orjson.loads(super().embeddings(call))
        if call.reply.usage is None:
            data["usage"]["completion_tokens"] = 0
        return orjson.dumps({"id": f"{call.seq:032x}", **data})


FORMAT = register(MistralFormat())

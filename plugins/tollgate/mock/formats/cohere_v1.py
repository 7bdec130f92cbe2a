"""Cohere's v1 Chat API (``POST /v1/chat``): the JSON answer and its newline-delimited JSON stream.

Shapes follow Cohere's documented v1 bodies. Request: ``message`` (required), ``model``, ``chat_history``
(``{role: USER|CHATBOT|SYSTEM|TOOL, message}``), ``preamble``, ``stream`` and the sampling fields. Answer:
``{response_id, text, generation_id, chat_history, finish_reason, meta: {api_version: {version: "1"},
billed_units: {input_tokens, output_tokens}, tokens: {input_tokens, output_tokens}}}``. Stream
(``application/stream+json``): one JSON object per line, ``{"is_finished": false, "event_type": "stream-start",
"generation_id"}``, then ``text-generation`` lines (``text``), then ``{"is_finished": true, "event_type":
"stream-end", "finish_reason", "response": <the whole answer>}``. Errors are v2's ``{"id", "message"}``; inside a
stream, a ``stream-end`` with ``finish_reason: "ERROR"``.

Validation (``MockLLM(validate=True)``) answers 400 for a missing ``message``, a ``chat_history`` role v1 does not
know, ``p``/``k`` out of range, and (to catch v2 bodies sent to v1) any field v1 does not define.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from . import Answer, Call, Endpoint, Frames, MockError, register
from .cohere import CohereFormat, validate_sampling

_FINISH = {"stop": "COMPLETE", "length": "MAX_TOKENS", "tool_calls": "COMPLETE"}

CHAT_FIELDS = frozenset({
    "message", "model", "stream", "preamble", "chat_history", "conversation_id", "prompt_truncation", "connectors",
    "search_queries_only", "documents", "citation_quality", "temperature", "max_tokens", "max_input_tokens", "k", "p",
    "seed", "stop_sequences", "frequency_penalty", "presence_penalty", "tools", "tool_results", "force_single_step",
    "response_format", "safety_mode",
})
_ROLES = ("USER", "CHATBOT", "SYSTEM", "TOOL")


class CohereV1Format(CohereFormat):
    name = "cohere_v1"
    stream_content_type = "application/stream+json"

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint(self, "POST", "/v1/chat", "chat", render=self.chat, render_stream=self.chat_stream,
                         validate=self.validate_chat)]

    def stream_error(self, call: Call, error: str | Mapping[str, Any] | None) -> bytes:
        message = error if isinstance(error, str) else (error or {}).get("message", "internal server error")
        return self.frame({"is_finished": True, "event_type": "stream-end", "finish_reason": "ERROR",
                           "response": {"text": "", "finish_reason": "ERROR", "error": message}})

    def frame(self, event: str | Mapping[str, Any] | bytes) -> bytes:
        """A raw event: bytes verbatim, a str as one line, a dict as one JSON line."""
        if isinstance(event, bytes):
            return event
        return (event.encode() if isinstance(event, str) else orjson.dumps(event)) + b"\n"

    @staticmethod
    def validate_chat(call: Call) -> None:
        body = call.body
        unknown = sorted(set(body) - CHAT_FIELDS)
        if unknown:
            raise MockError(400, f"invalid request: unknown field(s) {', '.join(unknown)}")
        if not isinstance(body.get("message"), str):
            raise MockError(400, "invalid request: message must be a string")
        for turn in body.get("chat_history") or ():
            if not isinstance(turn, dict) or turn.get("role") not in _ROLES:
                raise MockError(400, f"invalid request: chat_history roles must be one of {', '.join(_ROLES)}")
        validate_sampling(body)

    def _answer(self, call: Call) -> Answer:
        body = call.body
        texts = [body.get("preamble") or ""] + [str(t.get("message") or "") for t in body.get("chat_history") or ()
                                                if isinstance(t, dict)] + [str(body.get("message") or "")]
        max_tokens = body.get("max_tokens")
        return call.answer(echo=str(body.get("message") or ""), prompt_tokens=sum(call.count(t) for t in texts if t),
                           max_tokens=max_tokens if isinstance(max_tokens, int) else None)

    def _response(self, call: Call) -> dict[str, Any]:
        ans = self._answer(call)
        body = call.body
        usage = self._usage(call, ans)
        meta = usage if call.reply.usage is not None else {"api_version": {"version": "1"}, **usage}
        history = [*(body.get("chat_history") or ()), {"role": "USER", "message": body.get("message")},
                   {"role": "CHATBOT", "message": ans.text or ""}]
        return {"response_id": str(uuid.uuid4()), "text": ans.text or "", "generation_id": str(uuid.UUID(int=call.seq)),
                "chat_history": history, "finish_reason": call.finish_reason(_FINISH), "meta": meta}

    def chat(self, call: Call) -> bytes:
        return orjson.dumps(self._response(call))

    def chat_stream(self, call: Call) -> Frames:
        response = self._response(call)
        frame = self.frame
        head = [frame({"is_finished": False, "event_type": "stream-start", "generation_id": response["generation_id"]})]
        body = [frame({"is_finished": False, "event_type": "text-generation", "text": piece})
                for piece in call.pieces(response["text"])]
        tail = [frame({"is_finished": True, "event_type": "stream-end", "finish_reason": response["finish_reason"],
                       "response": response})]
        return Frames(head, body, tail)


FORMAT = register(CohereV1Format())

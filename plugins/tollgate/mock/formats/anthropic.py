"""Anthropic wire format: Messages API (``POST /v1/messages``, JSON and SSE), token counting, error bodies.

Shapes follow Anthropic's documented bodies: a ``message`` object with ``content`` blocks (``text``, ``tool_use``),
``stop_reason`` (``end_turn`` / ``max_tokens`` / ``tool_use``; Reply.finish_reason is sent verbatim, e.g.
``"refusal"``), ``usage`` with ``input_tokens``, ``cache_creation_input_tokens``, ``cache_read_input_tokens`` and
``output_tokens``; the stream is ``event: <type>`` + ``data: <json>`` frames (``message_start``,
``content_block_start``, ``ping``, ``content_block_delta`` with ``text_delta`` / ``input_json_delta``,
``content_block_stop``, ``message_delta``, ``message_stop``); errors are
``{"type": "error", "error": {"type", "message"}, "request_id"}`` and, inside a stream, an ``event: error`` frame
(``overloaded_error`` unless Reply.error says otherwise).

Usage: the Answer's ``prompt_tokens`` is the whole prompt, so ``input_tokens`` is what is left of it after the cached
parts (Anthropic counts cache reads and writes apart): ``input_tokens = prompt - cached - cache_creation``.

Validation (``MockLLM(validate=True)``) answers 400 like the real API when ``model``, ``max_tokens`` or ``messages`` is
missing, or the ``anthropic-version`` header is absent.

Reply.extra keys read here:
  ``cache_creation_input_tokens``  prompt tokens reported as written to the cache (default 0)
  ``thinking_tokens``              ``usage.output_tokens_details.thinking_tokens`` (default: not sent)
  ``stop_sequence``                the ``stop_sequence`` value to report (default null)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..text import fragments
from . import Answer, Call, Endpoint, Format, Frames, MockError, register

_FINISH = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}

# status -> (error type, message); "{model}" is filled in
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization. Please try again "
                              "later."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}


def _text(content: Any) -> str:
    """The text of a message ``content`` / ``system``: a string, or its text (and tool result) blocks."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            if isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif block.get("type") == "tool_result":
                parts.append(_text(block.get("content")))
    return " ".join(p for p in parts if p)


def _tool_inputs(content: Any) -> list[str]:
    if not isinstance(content, list):
        return []
    return [orjson.dumps(b.get("input") or {}).decode() for b in content
            if isinstance(b, dict) and b.get("type") == "tool_use"]


class AnthropicFormat(Format):
    name = "anthropic"

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(self, "POST", "/messages", "messages", render=self.message, render_stream=self.message_stream,
                     validate=self.validate_messages),
            Endpoint(self, "POST", "/messages/count_tokens", "count_tokens", render=self.count_tokens,
                     is_stream=lambda p, b: False),
        ]

    # ------------------------------------------------------------------------------------------------ errors
    def _error(self, call: Call, status: int, error: str | Mapping[str, Any] | None) -> dict[str, Any]:
        etype, message = _ERRORS.get(status, ("api_error" if status >= 500 else "invalid_request_error", ""))
        if not message:
            message = f"HTTP {status}"
        err: dict[str, Any] = {"type": etype, "message": message.format(model=call.model)}
        if isinstance(error, str):
            err["message"] = error
        elif error:
            err.update(error)
        return {"type": "error", "error": err, "request_id": f"req_mock{call.seq}"}

    def error_body(self, call: Call, status: int, error: str | Mapping[str, Any] | None) -> bytes:
        return orjson.dumps(self._error(call, status, error))

    def stream_error(self, call: Call, error: str | Mapping[str, Any] | None) -> bytes:
        body = self._error(call, 529, error)
        body.pop("request_id", None)
        return self.frame(body)

    def frame(self, event: str | Mapping[str, Any] | bytes) -> bytes:
        """A raw event: bytes verbatim; a dict as ``event: <its type>`` + ``data:``; a str as a ``data:`` line."""
        if isinstance(event, bytes):
            return event
        if isinstance(event, str):
            return b"data: " + event.encode() + b"\n\n"
        kind = event.get("type")
        head = b"event: " + str(kind).encode() + b"\n" if kind else b""
        return head + b"data: " + orjson.dumps(event) + b"\n\n"

    def headers(self, call: Call) -> dict[str, str]:
        return {"request-id": f"req_mock{call.seq}"}

    # ------------------------------------------------------------------------------------------------ messages
    @staticmethod
    def validate_messages(call: Call) -> None:
        body = call.body
        if not call.request.headers.get("anthropic-version"):
            raise MockError(400, "anthropic-version: header is required")
        if not isinstance(body.get("model"), str):
            raise MockError(400, "model: Field required")
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise MockError(400, "max_tokens: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise MockError(400, "messages: Field required" if messages is None else
                            "messages: at least one message is required")

    @staticmethod
    def _prompt(call: Call) -> tuple[str, int]:
        """(the text to echo: the last user turn, the counted prompt tokens)."""
        body = call.body
        count = call.count
        tokens = count(_text(body.get("system")))
        echo = ""
        for message in body.get("messages") or ():
            if not isinstance(message, dict):
                continue
            text = _text(message.get("content"))
            tokens += count(text) if text else 0
            for arguments in _tool_inputs(message.get("content")):
                tokens += count(arguments)
            if message.get("role") == "user" and text:
                echo = text
        return echo, tokens

    def _answer(self, call: Call) -> Answer:
        echo, tokens = self._prompt(call)
        max_tokens = call.body.get("max_tokens")
        return call.answer(echo=echo, prompt_tokens=tokens, max_tokens=max_tokens if isinstance(max_tokens, int)
                           else None)

    @staticmethod
    def _usage(call: Call, ans: Answer, *, output_tokens: int | None = None) -> Any:
        if call.reply.usage is not None:
            return call.reply.usage
        extra = call.reply.extra
        creation = int(extra.get("cache_creation_input_tokens") or 0)
        usage: dict[str, Any] = {
            "input_tokens": max(ans.prompt_tokens - ans.cached_tokens - creation, 0),
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": ans.cached_tokens,
            "output_tokens": ans.completion_tokens if output_tokens is None else output_tokens,
        }
        if extra.get("thinking_tokens") is not None:
            usage["output_tokens_details"] = {"thinking_tokens": int(extra["thinking_tokens"])}
        return usage

    def message(self, call: Call) -> bytes:
        ans = self._answer(call)
        content: list[dict[str, Any]] = []
        if ans.text is not None:
            content.append({"type": "text", "text": ans.text})
        for tc in ans.tool_calls:
            content.append({"type": "tool_use", "id": tc.id, "name": tc.name, "input": orjson.loads(tc.arguments_json)})
        return orjson.dumps({
            "id": f"msg_mock{call.seq}",
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": content,
            "stop_reason": call.finish_reason(_FINISH),
            "stop_sequence": call.reply.extra.get("stop_sequence"),
            "usage": self._usage(call, ans),
        })

    def message_stream(self, call: Call) -> Frames:
        ans = self._answer(call)
        frame = self.frame
        usage = self._usage(call, ans)
        start_usage = {k: v for k, v in usage.items() if k != "output_tokens_details"} \
            if isinstance(usage, dict) else usage
        if isinstance(start_usage, dict) and call.reply.usage is None:
            start_usage["output_tokens"] = 1  # as the real API: the final count comes in message_delta
        head = [frame({"type": "message_start", "message": {
            "id": f"msg_mock{call.seq}", "type": "message", "role": "assistant", "model": call.model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}})]
        body: list[bytes] = []
        index = 0
        if ans.text is not None:
            head.append(frame({"type": "content_block_start", "index": 0,
                               "content_block": {"type": "text", "text": ""}}))
            head.append(frame({"type": "ping"}))
            body = [frame({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})
                    for piece in call.pieces(ans.text)]
            stop_text = frame({"type": "content_block_stop", "index": 0})
            if body:
                body[-1] += stop_text
            else:
                head.append(stop_text)
            index = 1
        for tc in ans.tool_calls:
            # Structural events ride with the first / last argument fragment, so each body frame carries one delta.
            start = frame({"type": "content_block_start", "index": index, "content_block": {
                "type": "tool_use", "id": tc.id, "name": tc.name, "input": {}}})
            pieces = [frame({"type": "content_block_delta", "index": index,
                             "delta": {"type": "input_json_delta", "partial_json": fragment}})
                      for fragment in fragments(tc.arguments_json)]
            pieces[0] = start + pieces[0]
            pieces[-1] += frame({"type": "content_block_stop", "index": index})
            body.extend(pieces)
            index += 1
        final_usage = {"output_tokens": ans.completion_tokens}
        if isinstance(usage, dict) and call.reply.usage is None and "output_tokens_details" in usage:
            final_usage["output_tokens_details"] = usage["output_tokens_details"]
        elif call.reply.usage is not None:
            final_usage = call.reply.usage  # type: ignore[assignment]
        tail = [frame({"type": "message_delta",
                       "delta": {"stop_reason": call.finish_reason(_FINISH),
                                 "stop_sequence": call.reply.extra.get("stop_sequence")},
                       "usage": final_usage}),
                frame({"type": "message_stop"})]
        return Frames(head, body, tail)

    # ------------------------------------------------------------------------------------------------ count_tokens
    def count_tokens(self, call: Call) -> bytes:
        _, tokens = self._prompt(call)
        if call.reply.prompt_tokens is not None:
            tokens = call.reply.prompt_tokens
        return orjson.dumps({"input_tokens": tokens})


FORMAT = register(AnthropicFormat())

"""Cohere's v1 Chat API (``POST /v1/chat``), the one Kong's own ai-proxy speaks: for configs moved from Kong.

Which version a Cohere target speaks is ``model.options.cohere.api_version`` (``v1``/``v2``), else the configured
``upstream_url`` (or ``upstream_path``): a path with a ``v1`` segment (``https://api.cohere.com/v1/chat``) is v1;
anything else is v2 (``cohere.py``).

Request (OpenAI chat -> v1): the last message is the ``message`` (a user turn's text); the turns before it are the
``chat_history`` (``USER`` / ``CHATBOT`` with ``message``); system and developer messages become the ``preamble``.
The completions route sends its prompt as the ``message``. Sampling fields are the v2 ones (``max_tokens``,
``temperature``, ``p``, ``k``, ``stop_sequences``, ``seed``, the penalties, ``response_format``). v1 tool use has
its own shapes (``parameter_definitions``, ``tool_results``); requests with tools or tool messages are refused (400)
with a pointer to v2, which speaks OpenAI's.

Answer: ``{text, generation_id, finish_reason, meta: {billed_units, tokens}}``: ``text`` is the content, usage is
``meta.tokens`` else ``meta.billed_units``. An answer without a ``text`` string is unreadable (502).

Stream: newline-delimited JSON (``application/stream+json``), each line ``{"event_type", "is_finished", ...}``:
``stream-start`` (``generation_id``), ``text-generation`` (``text``), ``stream-end`` (``finish_reason`` and the
whole ``response`` with its ``meta``). Lines framed as SSE (``data: {...}``) are read the same way. Other events
(citations, search queries) carry nothing an OpenAI chunk shows.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from .base import COMPLETIONS, ChunkWriter, ProviderError, Target, Usage, json_object, unexpected
from .cohere import finish_reason_of, usage_of
from .framing import NDJSONDecoder

PATHS = {"chat": "/v1/chat", "embed": "/v1/embed"}

# v1 finish reasons beyond v2's (the generation stopped on a filter or a limit)
FINISH_REASONS = {"ERROR_TOXIC": "content_filter", "ERROR_LIMIT": "length", "USER_CANCEL": "stop"}


def speaks_v1(target: Target) -> bool:
    """Whether ``target`` is configured for Cohere's v1 API (see the module docstring)."""
    options = target.options or {}
    configured = (options.get("cohere") or {}).get("api_version")
    if configured:
        return str(configured).lower().lstrip("v") == "1"
    where = options.get("upstream_url") or options.get("upstream_path") or ""
    return "v1" in urlsplit(where).path.strip("/").split("/")


def _bad_request(message: str, code: str | None = None) -> ProviderError:
    return ProviderError(400, message, "invalid_request_error", code)


def _text(content: Any, role: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text":
                texts.append(str(part.get("text") or ""))
            else:
                raise _bad_request(f"Cohere's v1 API takes text only ({role} message); use api_version v2",
                                   "unsupported_content")
        return "".join(texts)
    raise _bad_request(f"{role} message content must be a string or a list of parts")


def chat_fields(route_type: str, body: dict[str, Any]) -> dict[str, Any]:
    """``message``, ``chat_history`` and ``preamble`` of a v1 request for an OpenAI chat or completions body."""
    if route_type == COMPLETIONS:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise _bad_request("Cohere takes one text prompt (a string, or a list holding one string)",
                               "invalid_prompt")
        return {"message": prompt}
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad_request("'messages' must be a non-empty array", "missing_required_parameter")
    if body.get("tools") or any(isinstance(m, dict) and (m.get("role") == "tool" or m.get("tool_calls"))
                                for m in messages):
        raise _bad_request("tool use needs Cohere's v2 API: set model.options.cohere.api_version to v2",
                           "unsupported_parameter")
    preamble: list[str] = []
    turns: list[dict[str, str]] = []
    for message in messages:
        if not isinstance(message, dict):
            raise _bad_request("each message must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            preamble.append(_text(message.get("content"), "system"))
        elif role in ("user", "assistant"):
            turns.append({"role": "USER" if role == "user" else "CHATBOT",
                          "message": _text(message.get("content"), role)})
        else:
            raise _bad_request(f"message role '{role}' is not supported by Cohere's v1 API")
    if not turns or turns[-1]["role"] != "USER":
        raise _bad_request("Cohere's v1 API answers a user message: the last message must be the user's",
                           "invalid_messages")
    fields: dict[str, Any] = {"message": turns[-1]["message"]}
    if turns[:-1]:
        fields["chat_history"] = turns[:-1]
    if preamble:
        fields["preamble"] = "\n\n".join(preamble)
    return fields


def finish_of(value: Any) -> str | None:
    """A v1 ``finish_reason`` as OpenAI's; ``ERROR`` raises as in v2."""
    if value in FINISH_REASONS:
        return FINISH_REASONS[value]
    return finish_reason_of(value)


def parse_chat(route_type: str, body: bytes, target: Target) -> tuple[dict[str, Any], Usage | None]:
    data = json_object(body)
    if not isinstance(data.get("text"), str):
        raise unexpected("the v1 chat answer has no text")
    finish = finish_of(data.get("finish_reason")) or "stop"
    usage = usage_of(data.get("meta"))
    writer = ChunkWriter(route_type, target.model or "", int(time.time()),
                         str(data.get("generation_id") or data.get("response_id") or ""))
    if route_type == COMPLETIONS:
        choice: dict[str, Any] = {"index": 0, "text": data["text"], "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    else:
        choice = {"index": 0, "message": {"role": "assistant", "content": data["text"]}, "logprobs": None,
                  "finish_reason": finish}
        obj = "chat.completion"
    out = {"id": writer.id, "object": obj, "created": writer.created, "model": writer.model, "choices": [choice]}
    if usage is not None:
        out["usage"] = usage.as_openai()
    return out, usage


class CohereV1StreamDecoder:
    """v1's NDJSON stream events -> OpenAI chunks, one line at a time."""

    def __init__(self, route_type: str, target: Target) -> None:
        self._lines = NDJSONDecoder()
        self._out = ChunkWriter(route_type, target.model or "", int(time.time()))
        self._finished = False
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self._translate(self._lines.feed(data))

    def close(self) -> list[dict[str, Any]]:
        return self._translate(self._lines.close())

    def _translate(self, lines: list[bytes]) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        for line in lines:
            if line.startswith(b"event:") or line.startswith(b":"):
                continue                      # the same events framed as SSE: only their data lines count
            if line.startswith(b"data:"):
                line = line[5:].strip()
                if not line or line == b"[DONE]":
                    continue
            event = json_object(line, "stream frame")
            kind = event.get("event_type")
            if kind == "stream-start":
                self._out.id = str(event.get("generation_id") or self._out.id)
                if not self._out.completions:
                    chunks.append(self._out.choice({"role": "assistant", "content": ""}))
            elif kind == "text-generation":
                text = event.get("text")
                if not isinstance(text, str):
                    raise unexpected("a text-generation event has no text")
                if text:
                    chunks.append(self._out.choice({"content": text}))
            elif kind == "stream-end" and not self._finished:
                response = event.get("response") if isinstance(event.get("response"), dict) else {}
                finish = finish_of(event.get("finish_reason") or response.get("finish_reason")) or "stop"
                self.usage = usage_of(response.get("meta"))
                self._finished = True
                chunks.append(self._out.choice({}, finish))
                if self.usage is not None:
                    chunks.append(self._out.usage(self.usage))
        return chunks


__all__ = ["CohereV1StreamDecoder", "chat_fields", "parse_chat", "speaks_v1"]

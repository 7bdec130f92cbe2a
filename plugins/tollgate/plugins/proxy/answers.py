"""One rule for what every driver hands back: a readable answer in OpenAI's shape, or a clear 502. Never an empty
success.

``read_answer`` wraps a driver's ``parse_response`` and ``CheckedStream`` its stream decoder. Whatever the driver
raises that is not a ``ProviderError`` (a provider shape it did not foresee reached code that assumed another),
and whatever it returns that OpenAI's format cannot carry, becomes an ``UnreadableAnswer``: a 502 with
``type: "upstream_error"``, a ``code`` naming the cause and the provider's name in the message. Each is logged once
with the provider and the first bytes of what it sent, scrubbed of secrets. A stream counts as read only when it
finished (some choice has a ``finish_reason``); a success with no text, no tool call and a plain ``stop`` is empty,
and so refused.

The envelope OpenAI clients rely on (a string ``id``, an integer ``created``, ``object``, ``model``, a
``finish_reason`` on a complete answer) is filled in when an OpenAI-compatible server leaves it out.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, NoReturn

from ... import log
from ...providers.base import CHAT, COMPLETIONS, EMBEDDINGS, ProviderError, Target, UnreadableAnswer, Usage
from ... import scrub

logger = log.get("proxy")

SAMPLE_BYTES = 200          # how much of an unreadable answer the log keeps
_OUTPUT_KEYS = ("content", "tool_calls", "function_call", "refusal", "audio", "reasoning_content")


def read_answer(driver: Any, route_type: str, body: bytes, target: Target) -> tuple[dict[str, Any], Usage | None]:
    """``driver.parse_response``, held to the rule above."""
    try:
        data, usage = driver.parse_response(route_type, body, target)
        _check_answer(route_type, data, target.model)
    except UnreadableAnswer as exc:
        raise unreadable(exc, driver.name, body) from None
    except ProviderError:
        raise
    except Exception as exc:  # noqa: BLE001 - any surprise in a provider's body is the provider's, never a 500
        broke = UnreadableAnswer("upstream_unreadable", f"the answer broke the {driver.name} driver "
                                                        f"({type(exc).__name__})")
        raise unreadable(broke, driver.name, body) from None
    return data, usage


class CheckedStream:
    """A driver's stream decoder held to the rule above: its chunks checked as they pass, its end required."""

    def __init__(self, decoder: Any, provider: str, route_type: str, model: str | None):
        self._decoder = decoder
        self._provider = provider
        self._route_type = route_type
        self._model = model or ""
        self._created = int(time.time())
        self._id = ("cmpl-" if route_type == COMPLETIONS else "chatcmpl-") + uuid.uuid4().hex
        self.finished = False
        self.produced = False
        self._only_stop = True       # every finish_reason seen so far was a plain "stop"
        self._last = b""             # the last bytes fed (what an incomplete stream's log shows)

    @property
    def usage(self) -> Usage | None:
        return self._decoder.usage

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._last = data
        return self._step(self._decoder.feed, data)

    def close(self) -> list[dict[str, Any]]:
        chunks = self._step(self._decoder.close)
        if not self.finished:
            self._fail(UnreadableAnswer("upstream_incomplete_stream", "the stream ended without a finish reason"),
                       self._last[-SAMPLE_BYTES:])
        if not self.produced and self._only_stop:
            self._fail(UnreadableAnswer("upstream_empty_answer", "the stream finished without any output"),
                       self._last[-SAMPLE_BYTES:])
        return chunks

    def _step(self, step: Any, *data: bytes) -> list[dict[str, Any]]:
        sample = data[0] if data else b""
        try:
            chunks = step(*data)
            for chunk in chunks:
                self._check(chunk)
        except UnreadableAnswer as exc:
            self._fail(exc, sample)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - a frame the driver did not foresee ends the stream, cleanly
            self._fail(UnreadableAnswer("upstream_unreadable", f"a stream frame broke the {self._provider} driver "
                                                               f"({type(exc).__name__})"), sample)
        return chunks

    def _fail(self, exc: UnreadableAnswer, data: bytes) -> NoReturn:
        raise unreadable(exc, self._provider, data) from None

    def _check(self, chunk: Any) -> None:
        if not isinstance(chunk, dict):
            raise UnreadableAnswer("upstream_unexpected_shape", "a stream frame is not an object")
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise UnreadableAnswer("upstream_unexpected_shape", "a stream chunk has no choices")
        _envelope(chunk, self._route_type, self._model, self._id, self._created, stream=True)
        for choice in choices:
            if not isinstance(choice, dict):
                raise UnreadableAnswer("upstream_unexpected_shape", "a stream choice is not an object")
            if self._route_type == COMPLETIONS:
                if not isinstance(choice.get("text", ""), str):
                    raise UnreadableAnswer("upstream_unexpected_shape", "a stream choice's text is not a string")
                self.produced = self.produced or bool(choice.get("text"))
            else:
                delta = choice.get("delta")
                if not isinstance(delta, dict):
                    raise UnreadableAnswer("upstream_unexpected_shape", "a stream choice has no delta")
                content = delta.get("content")
                if content is not None and type(content) is not str:
                    raise UnreadableAnswer("upstream_unexpected_shape", "a delta's content is not a string")
                if not self.produced:
                    self.produced = bool(content) or any(delta.get(key) for key in _OUTPUT_KEYS)
            choice.setdefault("index", 0)
            finish = choice.get("finish_reason")
            if finish is not None:
                if not isinstance(finish, str):
                    raise UnreadableAnswer("upstream_unexpected_shape", "a finish_reason is not a string")
                self.finished = True
                self._only_stop = self._only_stop and finish == "stop"


def unreadable(exc: UnreadableAnswer, provider: str, sample: bytes) -> UnreadableAnswer:
    """``exc`` named after ``provider``, logged once with the first bytes of what the provider sent."""
    if exc.provider is None:
        exc.named(provider)
        first = sample[:SAMPLE_BYTES].decode("utf-8", "replace")
        log.event(logger, "unreadable provider answer", logging.WARNING, provider=provider, code=exc.code,
                  error=scrub.redact(exc.detail), first_bytes=scrub.redact(first))
    return exc


def _check_answer(route_type: str, data: Any, model: str | None) -> None:
    if not isinstance(data, dict):
        raise UnreadableAnswer("upstream_unexpected_shape", "the answer is not a JSON object")
    if route_type == EMBEDDINGS:
        items = data.get("data")
        if not isinstance(items, list) or not items:
            raise UnreadableAnswer("upstream_empty_answer", "the answer holds no embeddings")
        if not all(isinstance(item, dict) and isinstance(item.get("embedding"), (list, str)) for item in items):
            raise UnreadableAnswer("upstream_unexpected_shape", "an embedding is not a list of numbers")
        data.setdefault("object", "list")
        if not isinstance(data.get("model"), str):
            data["model"] = model or ""
        return
    if route_type not in (CHAT, COMPLETIONS):
        return
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise UnreadableAnswer("upstream_empty_answer", "the answer holds no choices")
    _envelope(data, route_type, model or "", "", int(time.time()), stream=False)
    produced, only_stop = False, True
    for position, choice in enumerate(choices):
        if not isinstance(choice, dict):
            raise UnreadableAnswer("upstream_unexpected_shape", "a choice is not an object")
        if route_type == COMPLETIONS:
            if not isinstance(choice.get("text"), str):
                raise UnreadableAnswer("upstream_unexpected_shape", "a choice has no text")
            output = bool(choice["text"])
        else:
            message = choice.get("message")
            if not isinstance(message, dict):
                raise UnreadableAnswer("upstream_unexpected_shape", "a choice has no message")
            if not isinstance(message.get("content") or "", str):
                raise UnreadableAnswer("upstream_unexpected_shape", "a message's content is not a string")
            message.setdefault("role", "assistant")
            message.setdefault("content", None)
            output = any(message.get(key) for key in _OUTPUT_KEYS)
        finish = choice.get("finish_reason")
        if finish is None:
            choice["finish_reason"] = finish = "stop" if output else None
            if finish is None:
                raise UnreadableAnswer("upstream_empty_answer", "a choice has neither output nor finish reason")
        elif not isinstance(finish, str):
            raise UnreadableAnswer("upstream_unexpected_shape", "a finish_reason is not a string")
        if not isinstance(choice.get("index"), int):
            choice["index"] = position
        choice.setdefault("logprobs", None)
        produced = produced or output
        only_stop = only_stop and finish == "stop"
    if not produced and only_stop:
        raise UnreadableAnswer("upstream_empty_answer", "the answer has no text, no tool call and no reason for it")


def _envelope(data: dict[str, Any], route_type: str, model: str, id_: str, created: int, *, stream: bool) -> None:
    """The fields OpenAI's format requires around the choices, with OpenAI's types, where the provider left them
    out (OpenAI-compatible servers often do)."""
    expected = "text_completion" if route_type == COMPLETIONS else "chat.completion.chunk" if stream \
        else "chat.completion"
    if (data.get("object") == expected and type(data.get("created")) is int and type(data.get("model")) is str
            and type(data.get("id")) is str and data["id"]):
        return                                   # the common case: every field there with its type
    data["object"] = expected
    if not isinstance(data.get("id"), str) or not data["id"]:
        data["id"] = id_ or ("cmpl-" if route_type == COMPLETIONS else "chatcmpl-") + uuid.uuid4().hex
    if isinstance(data.get("created"), float) and data["created"] >= 0:
        data["created"] = int(data["created"])
    if not isinstance(data.get("created"), int) or isinstance(data.get("created"), bool):
        data["created"] = created
    if not isinstance(data.get("model"), str):
        data["model"] = model

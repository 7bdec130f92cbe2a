"""Every answer and stream chunk Tollgate produces, checked against the ``openai`` package's own models in strict
validation (no coercion: a ``null`` id or a float ``created`` fails), so OpenAI's format is a tested contract.

``watch_drivers`` (an autouse fixture in ``tests/conftest.py``) wraps every driver's ``parse_response`` and
``stream_decoder`` and the proxy's estimated-usage writers for the whole suite: each answer a test makes a driver
produce is checked as the proxy would send it (after ``plugins/proxy/answers.py`` has filled in the envelope).
Outputs the proxy refuses (its own 502s) are not checked: no client ever sees them.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
from openai.types import Completion, CompletionUsage, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tollgate import estimate
from tollgate.plugins.proxy import answers
from tollgate.providers import _MODULES, driver_for
from tollgate.providers.base import CHAT, COMPLETIONS, EMBEDDINGS, UnreadableAnswer


def check_answer(route_type: str, data: dict[str, Any]) -> None:
    """``data`` is a valid OpenAI answer of ``route_type`` (raises pydantic's ValidationError if not)."""
    if route_type == CHAT:
        ChatCompletion.model_validate(data, strict=True)
    elif route_type == COMPLETIONS:
        Completion.model_validate(data, strict=True)
    elif route_type == EMBEDDINGS:
        if any(isinstance(item.get("embedding"), str) for item in data.get("data") or ()):
            data = {**data, "data": [{**item, "embedding": []} for item in data["data"]]}  # base64: a string
        CreateEmbeddingResponse.model_validate(data, strict=True)


def check_chunk(route_type: str, chunk: dict[str, Any]) -> None:
    """``chunk`` is a valid OpenAI stream chunk of ``route_type``."""
    if route_type == COMPLETIONS:
        # OpenAI's Completion model (the SDK's type for stream chunks too) requires a finish_reason, which its own
        # streams send as null until the end.
        chunk = {**chunk, "choices": [{**c, "finish_reason": c.get("finish_reason") or "stop"}
                                      for c in chunk.get("choices") or ()]}
        Completion.model_validate(chunk, strict=True)
    else:
        ChatCompletionChunk.model_validate(chunk, strict=True)


def _as_sent_answer(route_type: str, data: Any, model: str | None) -> dict[str, Any] | None:
    """``data`` as the proxy would send it, or None when the proxy refuses it."""
    data = copy.deepcopy(data)
    try:
        answers._check_answer(route_type, data, model)
    except UnreadableAnswer:
        return None
    if route_type == EMBEDDINGS and "usage" not in data:
        data["usage"] = {"prompt_tokens": 1, "total_tokens": 1}   # the proxy adds its estimate here
    return data


class _CheckedChunks:
    """A stream decoder whose chunks are each checked as the proxy would send them."""

    def __init__(self, decoder: Any, route_type: str, model: str | None):
        self._decoder = decoder
        self._route_type = route_type
        self._model = model or ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._decoder, name)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self._checked(self._decoder.feed(data))

    def close(self) -> list[dict[str, Any]]:
        return self._checked(self._decoder.close())

    def _checked(self, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for chunk in chunks:
            if isinstance(chunk, dict) and isinstance(chunk.get("choices"), list):   # else the proxy refuses it
                sent = copy.deepcopy(chunk)
                answers._envelope(sent, self._route_type, self._model, "chatcmpl-x", 1, stream=True)
                check_chunk(self._route_type, sent)
        return chunks


def _watch_class(monkeypatch: pytest.MonkeyPatch, cls: type) -> None:
    parse, decoder = cls.parse_response, cls.stream_decoder

    @functools.wraps(parse)
    def parse_response(self: Any, route_type: str, body: bytes, target: Any) -> Any:
        data, usage = parse(self, route_type, body, target)
        if type(self) is cls and route_type in (CHAT, COMPLETIONS, EMBEDDINGS):   # outermost call only
            sent = _as_sent_answer(route_type, data, target.model)
            if sent is not None:
                check_answer(route_type, sent)
        return data, usage

    @functools.wraps(decoder)
    def stream_decoder(self: Any, route_type: str, target: Any) -> Any:
        made = decoder(self, route_type, target)
        if type(self) is cls and route_type in (CHAT, COMPLETIONS):
            return _CheckedChunks(made, route_type, target.model)
        return made

    monkeypatch.setattr(cls, "parse_response", parse_response)
    monkeypatch.setattr(cls, "stream_decoder", stream_decoder)


def watch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check every driver answer and chunk, and every usage the proxy estimates, for the current test."""
    for provider in _MODULES:
        _watch_class(monkeypatch, type(driver_for(provider)))
    usage_chunk, usage_field = estimate.usage_chunk, estimate.usage_field

    def checked_usage_chunk(sent: Any, route_type: str, model: Any, usage: Any) -> dict[str, Any]:
        chunk = usage_chunk(sent, route_type, model, usage)
        check_chunk(route_type, chunk)
        return chunk

    def checked_usage_field(route_type: str, usage: Any) -> dict[str, Any]:
        field = usage_field(route_type, usage)
        if route_type != EMBEDDINGS:
            CompletionUsage.model_validate(field, strict=True)
        return field

    monkeypatch.setattr(estimate, "usage_chunk", checked_usage_chunk)
    monkeypatch.setattr(estimate, "usage_field", checked_usage_field)

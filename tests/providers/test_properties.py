"""Property tests of every driver, held to the proxy's rule (``plugins/proxy/answers.py``): whatever a provider
sends, the outcome is a correct answer in OpenAI's shape (checked against the openai package's models, strict) or a
clear error (a ``ProviderError``, which the relay turns into a 502 or an error event). Never an empty success,
never any other exception (which would reach the client as a 500 or a cut connection).

Each driver starts from a documented answer and stream of its provider; hypothesis then truncates the JSON, drops
fields, adds unknown ones, empties ``choices``/``candidates``/``content``, puts usage in the wrong types, replaces
values with arbitrary JSON, and splits the stream's bytes anywhere (and every single-cut split is checked too).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Callable

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.openai_types import check_answer, check_chunk
from tollgate.mock.formats.bedrock import encode_message
from tollgate.plugins.proxy.answers import CheckedStream, read_answer
from tollgate.providers import driver_for
from tollgate.providers.base import CHAT, ProviderError, Target, Usage

TEXT = "Hello there"


def dumps(value: Any) -> bytes:
    """JSON as any server may write it (integers beyond 64 bits included, which orjson will not write)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _sse(event: Any) -> bytes:
    return b"data: " + (event.encode() if isinstance(event, str) else dumps(event)) + b"\n\n"


def _named_sse(event: Any) -> bytes:
    kind = event.get("type") if isinstance(event, dict) else None
    head = b"event: " + str(kind).encode() + b"\n" if isinstance(kind, str) else b""
    return head + _sse(event)


def _line(event: Any) -> bytes:
    return dumps(event) + b"\n"


def _bedrock(event: Any) -> bytes:
    kind, payload = event
    return encode_message({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                          dumps(payload))


def _openai_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1718000000, "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


OPENAI_ANSWER = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1718000000, "model": "m",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "logprobs": None,
                              "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                           "prompt_tokens_details": {"cached_tokens": 0}}}
OPENAI_STREAM = [_openai_chunk({"role": "assistant", "content": ""}), _openai_chunk({"content": "Hello"}),
                 _openai_chunk({"content": " there"}), _openai_chunk({}, "stop"),
                 {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1718000000, "model": "m",
                  "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}},
                 "[DONE]"]


@dataclass
class Provider:
    name: str
    target: Target
    answer: dict[str, Any]
    stream: list[Any]
    frame: Callable[[Any], bytes]

    @property
    def driver(self) -> Any:
        return driver_for(self.target.provider)

    def stream_bytes(self, events: list[Any] | None = None) -> bytes:
        return b"".join(self.frame(event) for event in (self.stream if events is None else events))


PROVIDERS = [
    Provider("openai", Target("openai", "gpt-4o"), OPENAI_ANSWER, OPENAI_STREAM, _sse),
    Provider("azure", Target("azure", "gpt-4o", {"azure_instance": "x", "azure_api_version": "2024-10-21"}),
             OPENAI_ANSWER, OPENAI_STREAM, _sse),
    Provider("openai-compatible", Target("openai-compatible", "llama", {"upstream_url": "http://vllm/v1"}),
             OPENAI_ANSWER, OPENAI_STREAM, _sse),
    Provider("mistral", Target("mistral", "mistral-large-latest"), OPENAI_ANSWER, OPENAI_STREAM, _sse),
    Provider("anthropic", Target("anthropic", "claude-sonnet-4-5"),
             {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
              "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn", "stop_sequence": None,
              "usage": {"input_tokens": 9, "output_tokens": 2, "cache_read_input_tokens": 0}},
             [{"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                     "content": [], "model": "claude-sonnet-4-5", "stop_reason": None,
                                                     "usage": {"input_tokens": 9, "output_tokens": 1}}},
              {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
              {"type": "ping"},
              {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
              {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}},
              {"type": "content_block_stop", "index": 0},
              {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
               "usage": {"output_tokens": 2}},
              {"type": "message_stop"}], _named_sse),
    Provider("cohere", Target("cohere", "command-a-03-2025"),
             {"id": "c-1", "finish_reason": "COMPLETE",
              "message": {"role": "assistant", "content": [{"type": "text", "text": TEXT}]},
              "usage": {"billed_units": {"input_tokens": 9, "output_tokens": 2},
                        "tokens": {"input_tokens": 9, "output_tokens": 2}}},
             [{"type": "message-start", "id": "c-1", "delta": {"message": {"role": "assistant", "content": []}}},
              {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
              {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hello"}}}},
              {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": " there"}}}},
              {"type": "content-end", "index": 0},
              {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": {
                  "billed_units": {"input_tokens": 9, "output_tokens": 2},
                  "tokens": {"input_tokens": 9, "output_tokens": 2}}}}], _named_sse),
    Provider("cohere-v1", Target("cohere", "command-r-plus", {"upstream_url": "https://api.cohere.com/v1/chat"}),
             {"response_id": "r-1", "text": TEXT, "generation_id": "g-1", "finish_reason": "COMPLETE",
              "chat_history": [], "meta": {"api_version": {"version": "1"},
                                           "billed_units": {"input_tokens": 9, "output_tokens": 2}}},
             [{"is_finished": False, "event_type": "stream-start", "generation_id": "g-1"},
              {"is_finished": False, "event_type": "text-generation", "text": "Hello"},
              {"is_finished": False, "event_type": "text-generation", "text": " there"},
              {"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE",
               "response": {"text": TEXT, "generation_id": "g-1",
                            "meta": {"billed_units": {"input_tokens": 9, "output_tokens": 2}}}}], _line),
    Provider("gemini", Target("gemini", "gemini-2.0-flash"),
             {"candidates": [{"content": {"parts": [{"text": TEXT}], "role": "model"}, "finishReason": "STOP",
                              "index": 0}],
              "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 2, "totalTokenCount": 11},
              "modelVersion": "gemini-2.0-flash", "responseId": "r-1"},
             [{"candidates": [{"content": {"parts": [{"text": "Hello"}], "role": "model"}, "index": 0}],
               "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}, "responseId": "r-1"},
              {"candidates": [{"content": {"parts": [{"text": " there"}], "role": "model"}, "finishReason": "STOP",
                               "index": 0}],
               "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 2, "totalTokenCount": 11},
               "responseId": "r-1"}], _sse),
    Provider("bedrock", Target("bedrock", "anthropic.claude-3-haiku-20240307-v1:0",
                               {"bedrock": {"aws_region": "us-west-2"}}),
             {"output": {"message": {"role": "assistant", "content": [{"text": TEXT}]}}, "stopReason": "end_turn",
              "usage": {"inputTokens": 9, "outputTokens": 2, "totalTokens": 11}, "metrics": {"latencyMs": 120}},
             [("messageStart", {"role": "assistant"}),
              ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}}),
              ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " there"}}),
              ("contentBlockStop", {"contentBlockIndex": 0}),
              ("messageStop", {"stopReason": "end_turn"}),
              ("metadata", {"usage": {"inputTokens": 9, "outputTokens": 2, "totalTokens": 11},
                            "metrics": {"latencyMs": 120}})], _bedrock),
]
IDS = [p.name for p in PROVIDERS]

# --------------------------------------------------------------------------------------------------- outcomes


def answer_outcome(provider: Provider, body: bytes) -> tuple[dict[str, Any], Usage | None] | ProviderError:
    """What the relay makes of ``body``: a checked answer, or the error it answers with."""
    try:
        data, usage = read_answer(provider.driver, CHAT, body, provider.target)
    except ProviderError as exc:
        return exc
    check_answer(CHAT, data)
    message = data["choices"][0]["message"]
    assert message.get("content") or message.get("tool_calls") or data["choices"][0]["finish_reason"] != "stop"
    if usage is not None:
        assert min(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) >= 0
        assert all(isinstance(n, int) for n in (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens))
    return data, usage


def stream_outcome(provider: Provider, raw: bytes, cuts: list[int]) -> list[dict[str, Any]] | ProviderError:
    """What the relay makes of a stream delivered in the pieces ``cuts`` makes: its chunks, or the error it ends
    with (before or after some chunks went out)."""
    decoder = CheckedStream(provider.driver.stream_decoder(CHAT, provider.target), provider.target.provider, CHAT,
                            provider.target.model)
    chunks: list[dict[str, Any]] = []
    edges = [0, *sorted(set(cuts)), len(raw)]
    try:
        for start, end in zip(edges, edges[1:]):
            if end > start:
                chunks += decoder.feed(raw[start:end])
        chunks += decoder.close()
    except ProviderError as exc:
        return exc
    for chunk in chunks:
        check_chunk(CHAT, chunk)
    assert decoder.finished and (decoder.produced or any(c["choices"][0]["finish_reason"] not in (None, "stop")
                                                         for c in chunks if c["choices"]))
    return chunks


def content_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# --------------------------------------------------------------------------------------------------- strategies

SCALARS = (st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=8))
JSON = st.recursive(SCALARS,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)
WRONG_COUNTS = st.one_of(st.text(max_size=4), st.integers(-10**6, -1),
                         st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
                         st.booleans(), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                                             st.integers(), max_size=2))
EMPTY = st.sampled_from(["[]", "{}", "", None, 0]).map(lambda v: [] if v == "[]" else {} if v == "{}" else v)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, prefix + (i,))
    return out


def _usage_paths(value: Any) -> list[tuple[Any, ...]]:
    return [p for p in _paths(value) if p and isinstance(p[-1], str) and "oken" in p[-1]]


def _set(doc: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    elif delete and isinstance(parent, list):
        parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return doc


@st.composite
def mutated(draw: st.DrawFn, doc: Any) -> Any:
    """``doc`` with one to three of: a field dropped, an unknown field added, a value emptied, a usage count of the
    wrong type, a value replaced with arbitrary JSON."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        kind = draw(st.sampled_from(["drop", "unknown", "empty", "usage", "replace"]))
        if kind == "usage" and _usage_paths(doc):
            doc = _set(doc, draw(st.sampled_from(_usage_paths(doc))), draw(WRONG_COUNTS))
            continue
        path = draw(st.sampled_from(paths))
        if kind == "drop" and path:
            doc = _set(doc, path, None, delete=True)
        elif kind == "unknown":
            target = doc
            for key in path:
                target = target[key]
            if isinstance(target, dict):
                target[draw(st.text(min_size=1, max_size=6))] = draw(JSON)
        elif kind == "empty":
            doc = _set(doc, path, draw(EMPTY))
        else:
            doc = _set(doc, path, draw(JSON))
    return doc


PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.function_scoped_fixture])

# --------------------------------------------------------------------------------------------------- answers


@pytest.mark.parametrize("provider", PROVIDERS, ids=IDS)
def test_the_documented_answer_is_read(provider):
    data, usage = answer_outcome(provider, dumps(provider.answer))
    assert data["choices"][0]["message"]["content"] == TEXT
    assert (usage.prompt_tokens, usage.completion_tokens) == (9, 2)


@pytest.mark.parametrize("provider", PROVIDERS, ids=IDS)
@PROPERTY
@given(data=st.data())
def test_a_truncated_answer_is_a_clear_error(provider, data):
    raw = dumps(provider.answer)
    cut = data.draw(st.integers(0, len(raw) - 1))
    outcome = answer_outcome(provider, raw[:cut])
    assert isinstance(outcome, ProviderError) and outcome.status == 502 and outcome.type == "upstream_error"


@pytest.mark.parametrize("provider", PROVIDERS, ids=IDS)
@PROPERTY
@given(data=st.data())
def test_a_mutated_answer_is_read_or_refused(provider, data):
    body = data.draw(mutated(provider.answer))
    outcome = answer_outcome(provider, dumps(body))
    if isinstance(outcome, ProviderError):
        assert outcome.status >= 400 and outcome.message


@pytest.mark.parametrize("provider", PROVIDERS, ids=IDS)
@PROPERTY
@given(counts=st.lists(WRONG_COUNTS, min_size=1, max_size=4), data=st.data())
def test_usage_of_the_wrong_types_is_no_usage_never_zeros(provider, counts, data):
    body = copy.deepcopy(provider.answer)
    paths = [p for p in _usage_paths(body) if not isinstance(_get(body, p), dict)]
    for count in counts:
        body = _set(body, data.draw(st.sampled_from(paths)), count)
    outcome = answer_outcome(provider, dumps(body))
    assert not isinstance(outcome, ProviderError)
    answer, usage = outcome
    if usage is None:
        assert "usage" not in answer     # the proxy adds its estimate, marked
    else:   # read from counts left intact (Cohere's billed_units when its tokens broke): the true numbers, no zeros
        assert (usage.prompt_tokens, usage.completion_tokens) == (9, 2)


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


# --------------------------------------------------------------------------------------------------- streams


@pytest.mark.parametrize("provider", PROVIDERS, ids=IDS)
def test_the_documented_stream_split_at_every_byte(provider):
    raw = provider.stream_bytes()
    whole = stream_outcome(provider, raw, [])
    assert content_of(whole) == TEXT
    for cut in range(1, len(raw)):
        chunks = stream_outcome(provider, raw, [cut])
        assert not isinstance(chunks, ProviderError), (cut, chunks)
        assert content_of(chunks) == TEXT


@pytest.mark.parametrize("provider", PROVIDERS, ids=IDS)
@PROPERTY
@given(data=st.data())
def test_a_stream_in_any_pieces_reads_the_same(provider, data):
    raw = provider.stream_bytes()
    cuts = data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=12))
    chunks = stream_outcome(provider, raw, cuts)
    assert not isinstance(chunks, ProviderError)
    assert content_of(chunks) == TEXT


@pytest.mark.parametrize("provider", PROVIDERS, ids=IDS)
@PROPERTY
@given(data=st.data())
def test_a_truncated_stream_is_a_clear_error(provider, data):
    """Cut anywhere before the middle of the frame that finishes the answer: an error, never a short success."""
    finishing = next(i for i in range(len(provider.stream))
                     if not isinstance(stream_outcome(provider, provider.stream_bytes(provider.stream[:i + 1]), []),
                                       ProviderError))
    raw = provider.stream_bytes()
    before = len(provider.stream_bytes(provider.stream[:finishing]))
    cut = data.draw(st.integers(0, before + len(provider.frame(provider.stream[finishing])) // 2))
    outcome = stream_outcome(provider, raw[:cut], data.draw(st.lists(st.integers(1, max(1, cut)), max_size=4)))
    assert isinstance(outcome, ProviderError)


@pytest.mark.parametrize("provider", PROVIDERS, ids=IDS)
@PROPERTY
@given(data=st.data())
def test_a_stream_with_mutated_frames_is_read_or_ends_in_a_clear_error(provider, data):
    events = copy.deepcopy(provider.stream)
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(events) - 1))
        action = data.draw(st.sampled_from(["mutate", "drop", "garbage"]))
        if action == "drop":
            events.pop(index)
            if not events:
                break
        elif action == "garbage":
            events[index] = data.draw(JSON) if provider.frame is not _bedrock else (events[index][0], data.draw(JSON))
        elif provider.frame is _bedrock:
            events[index] = (events[index][0], data.draw(mutated(events[index][1])))
        elif isinstance(events[index], dict):
            events[index] = data.draw(mutated(events[index]))
    raw = provider.stream_bytes(events)
    cuts = data.draw(st.lists(st.integers(1, max(1, len(raw) - 1)), max_size=6)) if raw else []
    outcome = stream_outcome(provider, raw, cuts)
    if isinstance(outcome, ProviderError):
        assert outcome.status >= 400 and outcome.message


def test_gemini_json_array_stream_in_any_pieces():
    gemini = next(p for p in PROVIDERS if p.name == "gemini")
    raw = b"[" + b",\r\n".join(orjson.dumps(frame) for frame in gemini.stream) + b"]"
    for cut in range(1, len(raw)):
        assert content_of(stream_outcome(gemini, raw, [cut])) == TEXT
    outcome = stream_outcome(gemini, raw[:-1], [])
    assert isinstance(outcome, ProviderError) and outcome.code == "upstream_incomplete_stream"

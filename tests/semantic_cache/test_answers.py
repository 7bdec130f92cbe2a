"""Assembling a stream into the whole answer, replaying an answer as JSON or as a stream, and what may be cached."""

from __future__ import annotations

from tollgate.plugins.semantic_cache.answers import Assembler, cacheable, replay_body, replay_chunks

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}


def chunk(delta=None, finish=None, index=0, **extra):
    return {**HEAD, "choices": [{"index": index, "delta": delta or {}, "finish_reason": finish}], **extra}


def test_a_stream_assembles_into_the_answer_openai_would_have_sent():
    assembler = Assembler()
    for c in [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
              chunk(finish="stop"), {**HEAD, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                                                                      "total_tokens": 5}}]:
        assembler.feed(c)
    body = assembler.body()
    assert body["object"] == "chat.completion" and body["usage"]["total_tokens"] == 5
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "logprobs": None,
                                "finish_reason": "stop"}]


def test_tool_call_fragments_are_joined():
    assembler = Assembler()
    assembler.feed(chunk({"role": "assistant", "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": ""}}]}))
    assembler.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}))
    assembler.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, finish="tool_calls"))
    message = assembler.body()["choices"][0]["message"]
    assert message["tool_calls"][0]["function"] == {"name": "get", "arguments": '{"a":1}'}
    assert cacheable(assembler.body(), ["stop", "tool_calls"], tool_calls=False) == "tool calls"
    assert cacheable(assembler.body(), ["stop", "tool_calls"], tool_calls=True) is None


def test_what_may_be_cached():
    ok = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}]}
    assert cacheable(ok, ["stop"], False) is None
    cut = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "length"}]}
    assert cacheable(cut, ["stop"], False) == "finish_reason length"
    assert cacheable(cut, ["stop", "length"], False) is None
    empty = {"choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}]}
    assert cacheable(empty, ["stop"], False) == "empty answer"
    assert cacheable({"choices": []}, ["stop"], False) == "no choices"


def test_replays_get_fresh_ids_and_carry_usage_only_when_asked():
    stored = {"id": "chatcmpl-old", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    body = replay_body(stored, 99)
    assert body["id"] != "chatcmpl-old" and body["created"] == 99 and body["choices"] == stored["choices"]
    chunks = replay_chunks(stored, 99, include_usage=False)
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["Hi", None]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and len({c["id"] for c in chunks}) == 1
    with_usage = replay_chunks(stored, 99, include_usage=True)
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"]["total_tokens"] == 2
    again = Assembler()
    for c in with_usage:
        again.feed(c)
    assert again.body()["choices"] == [{**stored["choices"][0], "logprobs": None}]


def test_completions_streams():
    assembler = Assembler()
    head = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m"}
    assembler.feed({**head, "choices": [{"index": 0, "text": "Hel", "finish_reason": None}]})
    assembler.feed({**head, "choices": [{"index": 0, "text": "lo", "finish_reason": "stop"}]})
    body = assembler.body()
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == "Hello"
    assert "".join(c["choices"][0]["text"] for c in replay_chunks(body, 5, False)) == "Hello"

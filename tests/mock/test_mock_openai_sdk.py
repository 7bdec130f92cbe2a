"""The mock's OpenAI wire format, driven by the real openai SDK."""

from __future__ import annotations

import math

import openai
import pytest

from tollgate.mock import Reply, ToolCall

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Tell me about toll gates, please."},
]


async def test_chat_json_echoes_last_user_message(mock, openai_client):
    resp = await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert resp.object == "chat.completion"
    assert resp.id.startswith("chatcmpl-")
    assert resp.model == "gpt-4o-mini"
    choice = resp.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == "Tell me about toll gates, please."
    assert choice.finish_reason == "stop"
    # word + punctuation count: "You are terse." = 4, user message = 8
    assert resp.usage.prompt_tokens == 12
    assert resp.usage.completion_tokens == 8
    assert resp.usage.total_tokens == 20
    assert resp.usage.prompt_tokens_details.cached_tokens == 0
    rec = mock.requests[-1]
    assert rec.path == "/v1/chat/completions" and rec.endpoint == "openai.chat"
    assert rec.headers["Authorization"] == "Bearer sk-test"
    assert rec.json["messages"] == MESSAGES


async def test_chat_json_scripted_content_usage_and_model(mock, openai_client):
    mock.enqueue(Reply(content="scripted answer", prompt_tokens=100, completion_tokens=7, cached_tokens=40,
                       model="gpt-4o-2024-08-06", finish_reason="content_filter"))
    resp = await openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert resp.choices[0].message.content == "scripted answer"
    assert resp.choices[0].finish_reason == "content_filter"
    assert resp.model == "gpt-4o-2024-08-06"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (100, 7, 107)
    assert resp.usage.prompt_tokens_details.cached_tokens == 40


async def test_chat_max_tokens_cuts_with_length(openai_client):
    resp = await openai_client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "one two three four five six"}], max_tokens=3)
    assert resp.choices[0].message.content == "one two three"
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 3


async def test_chat_stream_with_include_usage(mock, openai_client):
    mock.enqueue(Reply(content="The quick brown fox jumps", chunks=5))
    stream = await openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert all(c.model == "gpt-4o-mini" for c in chunks)
    first = chunks[0]
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 5
    assert "".join(c.choices[0].delta.content for c in content_chunks) == "The quick brown fox jumps"
    # the last chunk with a choice carries finish_reason, the one after it carries only usage
    choice_chunks = [c for c in chunks if c.choices]
    assert choice_chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in choice_chunks[:-1])
    assert all(c.usage is None for c in choice_chunks)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.prompt_tokens == 12 and last.usage.completion_tokens == 5 and last.usage.total_tokens == 17


async def test_chat_stream_raw_wire(mock, http):
    body = {"model": "m", "messages": [{"role": "user", "content": "a b c"}], "stream": True,
            "stream_options": {"include_usage": True}}
    async with http.post(mock.url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = await resp.read()
    events = raw.decode().split("\n\n")
    assert events[-1] == ""
    assert events[-2] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events[:-1])
    import json

    usage_chunk = json.loads(events[-3][6:])
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] == 6
    # without include_usage: no usage key at all, no usage chunk
    body.pop("stream_options")
    async with http.post(mock.url + "/v1/chat/completions", json=body) as resp:
        events = (await resp.read()).decode().split("\n\n")
    parsed = [json.loads(e[6:]) for e in events[:-2]]
    assert all("usage" not in p for p in parsed)
    assert parsed[-1]["choices"][0]["finish_reason"] == "stop"


async def test_chat_tool_calls_json(mock, openai_client):
    mock.enqueue(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris", "unit": "celsius"}),
                                   ToolCall("get_time", '{"tz": "CET"}', id="call_fixed")]))
    resp = await openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    msg = resp.choices[0].message
    assert resp.choices[0].finish_reason == "tool_calls"
    assert msg.content is None
    assert [tc.function.name for tc in msg.tool_calls] == ["get_weather", "get_time"]
    assert msg.tool_calls[0].type == "function" and msg.tool_calls[0].id.startswith("call_")
    assert msg.tool_calls[1].id == "call_fixed"
    assert msg.tool_calls[0].function.arguments == '{"city":"Paris","unit":"celsius"}'


async def test_chat_tool_calls_stream_split_like_openai(mock, openai_client):
    args = '{"location": "San Francisco, CA", "unit": "fahrenheit"}'
    mock.enqueue(Reply(tool_calls=[ToolCall("get_weather", args), ToolCall("lookup", {"q": "x"})]))
    stream = await openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    calls: dict[int, dict] = {}
    deltas = []
    finish = None
    async for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for tc in choice.delta.tool_calls or ():
            deltas.append(tc)
            slot = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            if tc.id:
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                slot["arguments"] += tc.function.arguments
    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_weather" and calls[0]["arguments"] == args
    assert calls[1]["name"] == "lookup" and calls[1]["arguments"] == '{"q":"x"}'
    # first delta of a call has id + name and empty arguments; fragments follow without id/name
    first = deltas[0]
    assert first.id and first.function.name == "get_weather" and first.function.arguments == ""
    fragments = [d for d in deltas if d.index == 0][1:]
    assert len(fragments) > 3 and all(d.id is None and d.function.name is None for d in fragments)


async def test_completions_json_and_stream(mock, openai_client):
    resp = await openai_client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say this is a test")
    assert resp.object == "text_completion"
    assert resp.choices[0].text == "Say this is a test"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == 5 and resp.usage.completion_tokens == 5

    mock.enqueue(Reply(content="alpha beta gamma"))
    stream = await openai_client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="x", stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "alpha beta gamma"
    assert [c for c in chunks if c.choices][-1].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3


async def test_embeddings_float_and_base64(mock, openai_client):
    texts = ["the cat sat on the mat", "the cat sat on a mat", "quantum chromodynamics lecture"]
    floats = await openai_client.embeddings.create(model="text-embedding-3-small", input=texts,
                                                   encoding_format="float")
    assert floats.object == "list" and floats.model == "text-embedding-3-small"
    assert [d.index for d in floats.data] == [0, 1, 2]
    vecs = [d.embedding for d in floats.data]
    assert all(len(v) == 1536 for v in vecs)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-4 for v in vecs)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 6 + 6 + 3

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b))

    assert cos(vecs[0], vecs[1]) > 0.7 > 0.3 > abs(cos(vecs[0], vecs[2]))

    b64 = await openai_client.embeddings.create(model="text-embedding-3-small", input=texts,
                                                encoding_format="base64")
    raw = mock.requests[-1]
    assert raw.json["encoding_format"] == "base64"
    # the SDK decodes base64 itself (into floats, or keeps the string if asked raw): compare values
    for d, v in zip(b64.data, vecs):
        emb = d.embedding
        if isinstance(emb, str):
            import base64
            from array import array

            emb = array("f", base64.b64decode(emb)).tolist()
        assert emb == pytest.approx(v, abs=1e-7)

    again = await openai_client.embeddings.create(model="text-embedding-3-small", input=texts[0], dimensions=64,
                                                  encoding_format="float")
    assert len(again.data[0].embedding) == 64
    same = await openai_client.embeddings.create(model="text-embedding-3-small", input=texts[0], dimensions=64,
                                                 encoding_format="float")
    assert same.data[0].embedding == again.data[0].embedding


async def test_models_list_and_retrieve(mock, openai_client):
    page = await openai_client.models.list()
    ids = [m.id for m in page.data]
    assert "gpt-4o-mini" in ids
    model = await openai_client.models.retrieve("gpt-4o")
    assert model.id == "gpt-4o" and model.object == "model"
    with pytest.raises(openai.NotFoundError):
        await openai_client.models.retrieve("no-such-model")


@pytest.mark.parametrize("status, exc", [
    (400, openai.BadRequestError),
    (401, openai.AuthenticationError),
    (429, openai.RateLimitError),
    (500, openai.InternalServerError),
    (503, openai.InternalServerError),
])
async def test_sdk_maps_error_statuses(mock, openai_client, status, exc):
    mock.enqueue(Reply.fail(status))
    with pytest.raises(exc) as info:
        await openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert info.value.status_code == status
    assert isinstance(info.value.body, dict) and info.value.body["message"]


async def test_sdk_in_stream_error_event(mock, openai_client):
    mock.enqueue(Reply(content="a b c d", error_after=2, error={"message": "upstream exploded"}))
    stream = await openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    got = []
    with pytest.raises(openai.APIError, match="upstream exploded"):
        async for chunk in stream:
            got.append(chunk)
    assert "".join(c.choices[0].delta.content or "" for c in got) == "a b "


async def test_sdk_retries_on_429_with_retry_after(mock):
    client = openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="k", max_retries=1)
    mock.enqueue(Reply.fail(429, retry_after=0.05))
    resp = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert resp.choices[0].message.content == MESSAGES[-1]["content"]
    assert [r.status for r in mock.requests] == [429, 200]

"""The relay path with the Gemini driver, end to end over real HTTP.

openai SDK client (async, and sync in a worker thread) -> a minimal relay running ``ProxyPolicy.before`` then
``ProxyPolicy.serve`` (``relay`` fixture of conftest) -> the mock LLM speaking Gemini's wire format. What the client
sees must be what the mock sent, and the mock must have received a request in Gemini's documented format.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai
import orjson
import pytest

from tollgate.mock import MockLLM, Reply, ToolCall

API_KEY = "AIzaSyE2E-test-key-000000000000000000"
MODEL = "gemini-2.0-flash"
GENERATE_PATH = f"/v1beta/models/{MODEL}:generateContent"
STREAM_PATH = f"/v1beta/models/{MODEL}:streamGenerateContent"

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}


def proxy_config(mock: MockLLM, route_type: str = "llm/v1/chat", model: str = MODEL, **options: Any) -> dict:
    return {
        "route_type": route_type,
        "auth": {"param_name": "key", "param_value": API_KEY, "param_location": "query"},
        "model": {"provider": "gemini", "name": model,
                  "options": {"upstream_url": f"{mock.url}/v1beta/models/{model}:generateContent", **options}},
        "response_streaming": "allow",
        "timeout": 10,
    }


@pytest.fixture
async def gemini(mock_llm, relay):
    """(mock, async client, sync client, relay) for a chat route served by Gemini."""
    url = await relay(proxy_config(mock_llm, max_tokens=256))
    with openai.OpenAI(base_url=url + "/v1", api_key="client-key", max_retries=0, timeout=10) as sync_client:
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="client-key", max_retries=0,
                                      timeout=10) as client:
            yield mock_llm, client, sync_client, relay


def received(mock: MockLLM, path: str) -> dict[str, Any]:
    """The last request the mock got, checked to be a Gemini request with the key in the query."""
    rec = mock.requests[-1]
    assert rec.path == path
    assert rec.endpoint and rec.endpoint.startswith("gemini.")
    assert rec.query["key"] == API_KEY
    assert "authorization" not in {k.lower() for k in rec.headers}  # the client's own key stays at the gateway
    return rec.json


def relay_usage(relay) -> Any:
    usage = relay.contexts[-1].usage
    return usage.get("usage") if isinstance(usage, dict) else usage


async def test_chat(gemini):
    mock, client, _, relay = gemini
    mock.enqueue(Reply(content="Paris is the capital of France.", prompt_tokens=11, completion_tokens=7,
                       cached_tokens=3, extra={"thoughts_tokens": 5}))
    answer = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Capital of France?"}], temperature=0.3, stop=["\n\n"])
    assert answer.choices[0].message.content == "Paris is the capital of France."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.object == "chat.completion"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (11, 12, 23)
    assert answer.usage.prompt_tokens_details.cached_tokens == 3
    assert answer.usage.completion_tokens_details.reasoning_tokens == 5
    assert relay_usage(relay).total_tokens == 23
    assert received(mock, GENERATE_PATH) == {
        "contents": [{"role": "user", "parts": [{"text": "Capital of France?"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 256, "temperature": 0.3, "stopSequences": ["\n\n"]},
    }


async def test_chat_stream_with_usage(gemini):
    mock, client, _, relay = gemini
    mock.enqueue(Reply(content="one two three four", prompt_tokens=6))
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "count"}],
                                                  stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 4  # one chunk per frame
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (6, 4)
    assert relay_usage(relay).completion_tokens == 4
    body = received(mock, STREAM_PATH)
    assert mock.requests[-1].query["alt"] == "sse"
    assert body["contents"] == [{"role": "user", "parts": [{"text": "count"}]}]


async def test_json_array_stream_reaches_the_client_before_the_array_closes(gemini):
    """A server that ignores alt=sse sends one JSON array over the body's reads: each element is relayed as it
    arrives, so the first token reaches the client while the array is still open."""
    mock, client, _, relay = gemini
    frame = {"candidates": [{"content": {"parts": [{"text": "one "}], "role": "model"}, "index": 0}],
             "responseId": "r-array"}
    last = {"candidates": [{"content": {"parts": [{"text": "three"}], "role": "model"}, "finishReason": "STOP",
                            "index": 0}], "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3,
                                                            "totalTokenCount": 8}, "responseId": "r-array"}
    second = {**frame, "candidates": [{"content": {"parts": [{"text": "two "}], "role": "model"}, "index": 0}]}
    mock.enqueue(Reply(events=[b"[" + orjson.dumps(frame), b",\r\n" + orjson.dumps(second),
                               b",\r\n" + orjson.dumps(last) + b"]"], content_type="application/json", interval=0.3))
    started = time.monotonic()
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "count"}],
                                                  stream=True, stream_options={"include_usage": True})
    arrivals = []
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert arrivals[-1] - arrivals[0] > 0.4            # the first token came ~0.6 s before the array closed
    assert chunks[-1].usage.total_tokens == 8 and relay_usage(relay).total_tokens == 8


async def test_chat_stream_without_usage(gemini):
    mock, client, _, _ = gemini
    mock.enqueue(Reply(content="hello world"))
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                  stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "hello world"


async def test_tool_calls_round_trip(gemini):
    mock, client, _, _ = gemini
    mock.enqueue(Reply(tool_calls=[ToolCall("get_weather", {"location": "Paris"}),
                                   ToolCall("get_weather", {"location": "Rome"})]))
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Rome?"}]
    answer = await client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL],
                                                  tool_choice="required")
    message = answer.choices[0].message
    assert answer.choices[0].finish_reason == "tool_calls"
    assert [(c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("get_weather", '{"location":"Paris"}'), ("get_weather", '{"location":"Rome"}')]
    assert len({c.id for c in message.tool_calls}) == 2
    body = received(mock, GENERATE_PATH)
    assert body["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Get the current weather in a given location",
        "parametersJsonSchema": WEATHER_TOOL["function"]["parameters"]}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}

    mock.enqueue(Reply(content="Sunny in both."))
    messages.append(message.model_dump(exclude_none=True))
    messages += [{"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": '{"sky": "sunny"}'},
                 {"role": "tool", "tool_call_id": message.tool_calls[1].id, "content": "sunny"}]
    answer = await client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    assert answer.choices[0].message.content == "Sunny in both."
    assert received(mock, GENERATE_PATH)["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
                                    {"functionCall": {"name": "get_weather", "args": {"location": "Rome"}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"sky": "sunny"}}},
            {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}]},
    ]


async def test_tool_calls_stream(gemini):
    mock, client, _, _ = gemini
    mock.enqueue(Reply(content="Checking.", tool_calls=[ToolCall("get_weather", {"location": "Oslo"})]))
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Oslo?"}],
                                                  tools=[WEATHER_TOOL], stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or ())]
    assert [(tc.index, tc.type, tc.function.name, tc.function.arguments) for tc in calls] == [
        (0, "function", "get_weather", '{"location":"Oslo"}')]
    assert calls[0].id.startswith("call_")
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Checking."
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert chunks[-1].usage is not None


async def test_image_parts_reach_gemini_as_inline_data(gemini):
    mock, client, _, _ = gemini
    mock.enqueue(Reply(content="A red pixel."))
    await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}])
    assert received(mock, GENERATE_PATH)["contents"][0]["parts"] == [
        {"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]


async def test_length_and_content_filter(gemini):
    mock, client, _, _ = gemini
    mock.enqueue(Reply(content="a b c d e f g h"))
    answer = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}],
                                                  max_tokens=3)
    assert answer.choices[0].finish_reason == "length"
    assert received(mock, GENERATE_PATH)["generationConfig"]["maxOutputTokens"] == 3
    mock.enqueue(Reply(content="", finish_reason="SAFETY"))
    answer = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert answer.choices[0].finish_reason == "content_filter"


async def test_rate_limit_error(gemini):
    mock, client, _, _ = gemini
    mock.enqueue(Reply.fail(429, retry_after=7))
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "7"
    assert "Resource has been exhausted" in info.value.message
    assert API_KEY not in info.value.response.text


async def test_error_inside_the_stream(gemini):
    mock, client, _, _ = gemini
    mock.enqueue(Reply(content="one two three", error_after=1, error={"code": 503, "status": "UNAVAILABLE",
                                                                       "message": "The model is overloaded."}))
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                  stream=True)
    seen = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["one "]
    assert "The model is overloaded." in str(info.value)


async def test_sync_client(gemini):
    mock, _, sync_client, _ = gemini
    mock.enqueue(Reply(content="sync hello", prompt_tokens=2))
    mock.enqueue(Reply(content="sync stream", prompt_tokens=2))

    def run() -> tuple[Any, list[Any]]:
        answer = sync_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        chunks = list(sync_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                          stream=True, stream_options={"include_usage": True}))
        return answer, chunks

    answer, chunks = await asyncio.to_thread(run)
    assert answer.choices[0].message.content == "sync hello"
    assert answer.usage.total_tokens == 4
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "sync stream"
    assert chunks[-1].usage.total_tokens == 4


async def test_vertex_paths(mock_llm, relay):
    config = proxy_config(mock_llm)
    config["auth"] = {"header_name": "Authorization", "header_value": "Bearer ya29.e2e"}
    config["model"]["options"] = {
        "upstream_url": f"{mock_llm.url}/v1/projects/p1/locations/us-central1/publishers/google/models"}
    url = await relay(config)
    mock_llm.enqueue(Reply(content="from vertex"))
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="client-key", max_retries=0, timeout=10) as client:
        answer = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "from vertex"
    rec = mock_llm.requests[-1]
    assert rec.path == f"/v1/projects/p1/locations/us-central1/publishers/google/models/{MODEL}:generateContent"
    assert rec.headers["Authorization"] == "Bearer ya29.e2e"


async def test_embeddings(mock_llm, relay):
    model = "text-embedding-004"
    url = await relay(proxy_config(mock_llm, route_type="llm/v1/embeddings", model=model))
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="client-key", max_retries=0, timeout=10) as client:
        mock_llm.enqueue(Reply(embeddings=[[0.25, -0.5, 0.75]]))
        one = await client.embeddings.create(model=model, input="hello world")
        assert one.data[0].embedding == [0.25, -0.5, 0.75]
        assert received(mock_llm, f"/v1beta/models/{model}:embedContent") == {
            "model": f"models/{model}", "content": {"parts": [{"text": "hello world"}]}}

        many = await client.embeddings.create(model=model, input=["a", "b c"], dimensions=8)
        assert [d.index for d in many.data] == [0, 1] and all(len(d.embedding) == 8 for d in many.data)
        body = received(mock_llm, f"/v1beta/models/{model}:batchEmbedContents")
        assert body == {"requests": [
            {"model": f"models/{model}", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 8},
            {"model": f"models/{model}", "content": {"parts": [{"text": "b c"}]}, "outputDimensionality": 8}]}


async def test_completions(mock_llm, relay):
    url = await relay(proxy_config(mock_llm, route_type="llm/v1/completions"))
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="client-key", max_retries=0, timeout=10) as client:
        mock_llm.enqueue(Reply(content="This is a test.", prompt_tokens=5))
        answer = await client.completions.create(model=MODEL, prompt="Say this is a test")
        assert answer.choices[0].text == "This is a test." and answer.choices[0].finish_reason == "stop"
        assert answer.usage.total_tokens == 5 + 5
        assert received(mock_llm, GENERATE_PATH)["contents"] == [
            {"role": "user", "parts": [{"text": "Say this is a test"}]}]

        mock_llm.enqueue(Reply(content="streamed test"))
        stream = await client.completions.create(model=MODEL, prompt="go", stream=True)
        chunks = [chunk async for chunk in stream]
        assert "".join(c.choices[0].text for c in chunks if c.choices) == "streamed test"
        assert chunks[-1].choices[0].finish_reason == "stop"

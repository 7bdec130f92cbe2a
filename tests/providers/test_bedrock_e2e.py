"""The relay path with the Bedrock driver, end to end over real HTTP.

openai SDK client (sync and async) -> tiny aiohttp app running ``ProxyPolicy.before`` then ``ProxyPolicy.serve``
(the ``relay`` fixture of conftest.py) -> the mock LLM speaking Bedrock Runtime (Converse JSON, ConverseStream as
binary AWS event-stream frames, InvokeModel embeddings). What the client sees must be what the mock sent; the mock
must have received a SigV4-signed request (checked with an independent verifier) in Converse's documented format.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from tollgate.mock import MockLLM, Reply, ToolCall
from tollgate.mock.text import embedding

from .test_bedrock import KEY_ID, SECRET, TOP_SONG, TOP_SONG_SPEC, check_signature

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
REGION = "us-west-2"


def config(mock: MockLLM, route: str = "llm/v1/chat", model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {
        "route_type": route,
        "auth": {"aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET},
        "model": {"provider": "bedrock", "name": model,
                  "options": {"upstream_url": mock.url, "bedrock": {"aws_region": REGION}, "max_tokens": 512}},
        "timeout": 10,
        **extra,
    }


@pytest.fixture
async def chat(relay, mock_llm):
    return await relay(config(mock_llm))


def clients(url: str) -> tuple[openai.OpenAI, openai.AsyncOpenAI]:
    kw: dict[str, Any] = {"base_url": url + "/v1", "api_key": "client-key", "max_retries": 0, "timeout": 10}
    return openai.OpenAI(**kw), openai.AsyncOpenAI(**kw)


def sent(mock: MockLLM, operation: str = "converse", model: str = MODEL) -> dict[str, Any]:
    """The last request the mock received: signed with SigV4 for what went on the wire, on the right path."""
    rec = mock.requests[-1]
    assert rec.path == f"/model/{model}/{operation}"
    assert rec.endpoint == "bedrock." + {"converse": "converse", "converse-stream": "converse_stream",
                                         "invoke": "invoke"}[operation]
    headers = {k: v for k, v in rec.headers.items()}
    assert "client-key" not in str(headers)  # the client's own key is not forwarded
    check_signature(rec.method, rec.path, rec.headers["Host"], headers, rec.body, region=REGION)
    return rec.json


# ---------------------------------------------------------------------------------------------------- chat

async def test_chat_non_stream_sync_and_async(chat, relay, mock_llm):
    sync_client, async_client = clients(chat)
    mock_llm.enqueue(Reply(content="Here is a playlist.", prompt_tokens=30, completion_tokens=5, cached_tokens=12))
    answer = await async_client.chat.completions.create(model=MODEL, messages=[
        {"role": "system", "content": "You are an app that creates playlists for a radio station."},
        {"role": "user", "content": "Create a list of 3 pop songs."},
    ], temperature=0.5)
    assert answer.object == "chat.completion" and answer.model == MODEL
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "Here is a playlist."
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (30, 5, 35)
    assert answer.usage.prompt_tokens_details.cached_tokens == 12
    assert sent(mock_llm) == {
        "messages": [{"role": "user", "content": [{"text": "Create a list of 3 pop songs."}]}],
        "system": [{"text": "You are an app that creates playlists for a radio station."}],
        "inferenceConfig": {"maxTokens": 512, "temperature": 0.5},
    }
    usage = relay.contexts[-1].usage
    assert (usage.prompt_tokens, usage.cached_tokens, usage.total_tokens) == (30, 12, 35)

    mock_llm.enqueue(Reply(content="Sync works too.", prompt_tokens=3, completion_tokens=4))
    answer = await asyncio.to_thread(sync_client.chat.completions.create, model=MODEL,
                                     messages=[{"role": "user", "content": "Hi"}], max_completion_tokens=20)
    assert answer.choices[0].message.content == "Sync works too."
    assert answer.usage.total_tokens == 7
    assert sent(mock_llm)["inferenceConfig"] == {"maxTokens": 20}
    sync_client.close()
    await async_client.close()


async def test_chat_stream_async_with_usage(chat, relay, mock_llm):
    _, client = clients(chat)
    text = "ConverseStream frames are translated one by one as they arrive."
    mock_llm.enqueue(Reply(content=text, prompt_tokens=9, completion_tokens=11, cached_tokens=4))
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Go"}],
                                                  stream=True, stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
            assert chunk.choices == []
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert "".join(pieces) == text
    assert len(pieces) == len(text.split())  # one chunk per Bedrock contentBlockDelta
    assert finish == "stop"
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (9, 11, 20)
    assert usage.prompt_tokens_details.cached_tokens == 4
    assert sent(mock_llm, "converse-stream")["messages"] == [{"role": "user", "content": [{"text": "Go"}]}]
    assert mock_llm.requests[-1].stream is True
    assert relay.contexts[-1].usage.completion_tokens == 11
    await client.close()


async def test_chat_stream_sync_without_usage_chunk(chat, relay, mock_llm):
    sync_client, _ = clients(chat)
    mock_llm.enqueue(Reply(content="one two three", prompt_tokens=2, completion_tokens=3))

    def run() -> list[Any]:
        return list(sync_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Go"}],
                                                        stream=True))

    chunks = await asyncio.to_thread(run)
    assert all(c.usage is None and c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two three"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert relay.contexts[-1].usage.total_tokens == 5  # metered from the metadata event all the same
    sync_client.close()


async def test_finish_length_when_max_tokens_cuts(chat, mock_llm):
    _, client = clients(chat)
    mock_llm.enqueue(Reply(content="one two three four five six"))
    answer = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Go"}],
                                                  max_tokens=2)
    assert answer.choices[0].finish_reason == "length"
    assert answer.choices[0].message.content == "one two"
    await client.close()


# ---------------------------------------------------------------------------------------------------- tools

async def test_tool_calls_non_stream_then_tool_result_turn(chat, mock_llm):
    sync_client, _ = clients(chat)
    mock_llm.enqueue(Reply(tool_calls=[ToolCall("top_song", {"sign": "WZPZ"}, "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q")],
                           prompt_tokens=375, completion_tokens=56))
    question = {"role": "user", "content": "What is the most popular song on WZPZ?"}
    answer = await asyncio.to_thread(sync_client.chat.completions.create, model=MODEL, messages=[question],
                                     tools=[TOP_SONG], tool_choice="required")
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = choice.message.tool_calls[0]
    assert (call.id, call.type, call.function.name) == ("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "function", "top_song")
    assert call.function.arguments == '{"sign":"WZPZ"}'
    assert answer.usage.total_tokens == 431
    body = sent(mock_llm)
    assert body["toolConfig"] == {"tools": [TOP_SONG_SPEC], "toolChoice": {"any": {}}}

    # second turn: the mock checks that turns alternate and that toolConfig is there
    mock_llm.enqueue(Reply(content="The most popular song on WZPZ is Elemental Hotel by 8 Storey Hike."))
    answer = await asyncio.to_thread(sync_client.chat.completions.create, model=MODEL, tools=[TOP_SONG], messages=[
        question, choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"song": "Elemental Hotel", "artist": "8 Storey Hike"}'},
    ])
    assert answer.choices[0].message.content.startswith("The most popular song on WZPZ")
    assert sent(mock_llm)["messages"][1:] == [
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                                                       "name": "top_song", "input": {"sign": "WZPZ"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "content": [
            {"json": {"song": "Elemental Hotel", "artist": "8 Storey Hike"}}]}}]},
    ]
    sync_client.close()


async def test_tool_calls_stream(chat, mock_llm):
    _, client = clients(chat)
    arguments = '{"sign": "WZPZ", "note": "a longer argument string, streamed in fragments"}'
    mock_llm.enqueue(Reply(content="Let me look.", tool_calls=[ToolCall("top_song", arguments, "tooluse_A"),
                                                               ToolCall("top_song", {"sign": "WKRP"}, "tooluse_B")],
                           prompt_tokens=20, completion_tokens=30))
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Top songs?"}],
                                                  tools=[TOP_SONG], stream=True,
                                                  stream_options={"include_usage": True})
    text, calls, finish, usage = "", {}, None, None
    async for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for tc in choice.delta.tool_calls or ():
                entry = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                entry["id"] = tc.id or entry["id"]
                entry["name"] = (tc.function.name if tc.function else None) or entry["name"]
                entry["arguments"] += (tc.function.arguments or "") if tc.function else ""
            finish = choice.finish_reason or finish
    assert text == "Let me look."
    assert calls == {0: {"id": "tooluse_A", "name": "top_song", "arguments": arguments},
                     1: {"id": "tooluse_B", "name": "top_song", "arguments": '{"sign":"WKRP"}'}}
    assert finish == "tool_calls"
    assert (usage.prompt_tokens, usage.completion_tokens) == (20, 30)
    assert sent(mock_llm, "converse-stream")["toolConfig"] == {"tools": [TOP_SONG_SPEC]}
    await client.close()


async def test_image_data_url_reaches_bedrock_as_bytes(chat, mock_llm):
    _, client = clients(chat)
    mock_llm.enqueue(Reply(content="A red pixel."))
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
    answer = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + pixel}}]}])
    assert answer.choices[0].message.content == "A red pixel."
    assert sent(mock_llm)["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": pixel}}}
    await client.close()


# ---------------------------------------------------------------------------------------------------- errors

async def test_throttling_error_reaches_the_client(chat, mock_llm):
    _, client = clients(chat)
    mock_llm.enqueue(Reply.fail(429, "Too many requests, please wait before trying again.", retry_after=3))
    with pytest.raises(openai.RateLimitError) as exc:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert exc.value.status_code == 429
    assert exc.value.body["message"] == "Too many requests, please wait before trying again."
    assert exc.value.body["type"] == "rate_limit_exceeded" and exc.value.body["code"] == "ThrottlingException"
    assert exc.value.response.headers["retry-after"] == "3"
    assert mock_llm.requests[-1].status == 429
    await client.close()


async def test_validation_error_from_bedrock(chat, mock_llm):
    """A conversation that starts with the assistant: Bedrock's ValidationException, status and message kept."""
    _, client = clients(chat)
    with pytest.raises(openai.BadRequestError) as exc:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "assistant", "content": "Hello!"}])
    assert exc.value.body["message"].startswith("A conversation must start with a user message.")
    assert exc.value.body["code"] == "ValidationException"
    mock_llm.enqueue(Reply(status=408, error={"type": "ModelTimeoutException", "message": "Model has timed out."}))
    with pytest.raises(openai.APIStatusError) as exc:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert exc.value.status_code == 408 and exc.value.body["type"] == "timeout"
    await client.close()


async def test_exception_frame_mid_stream(chat, mock_llm):
    _, client = clients(chat)
    mock_llm.enqueue(Reply(content="one two three four five", error_after=2,
                           error={"type": "modelStreamErrorException", "message": "The model stream failed.",
                                  "originalStatusCode": 500}))
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Go"}],
                                                  stream=True)
    received = []
    with pytest.raises(openai.APIError) as exc:
        async for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == "one two "
    assert exc.value.message == "The model stream failed."
    assert exc.value.body["code"] == "ModelStreamErrorException"
    await client.close()


async def test_corrupt_frame_is_reported_not_passed_on(chat, mock_llm):
    _, client = clients(chat)
    mock_llm.enqueue(Reply(content="one two three", malformed=True))
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Go"}],
                                                  stream=True)
    with pytest.raises(openai.APIError) as exc:
        async for _ in stream:
            pass
    assert "broken event stream" in exc.value.message
    await client.close()


# ---------------------------------------------------------------------------------------------------- other routes

async def test_titan_embeddings(relay, mock_llm):
    url = await relay(config(mock_llm, "llm/v1/embeddings", "amazon.titan-embed-text-v2:0"))
    sync_client, client = clients(url)
    result = await client.embeddings.create(model="amazon.titan-embed-text-v2:0", input="Hello world")
    assert result.data[0].embedding == embedding("Hello world", 1024).tolist()
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (2, 2)
    assert sent(mock_llm, "invoke", "amazon.titan-embed-text-v2:0") == {"inputText": "Hello world"}
    result = await asyncio.to_thread(sync_client.embeddings.create, model="amazon.titan-embed-text-v2:0",
                                     input="Short one", dimensions=256, encoding_format="float")
    assert len(result.data[0].embedding) == 256
    assert sent(mock_llm, "invoke", "amazon.titan-embed-text-v2:0") == {"inputText": "Short one", "dimensions": 256}
    sync_client.close()
    await client.close()


async def test_cohere_embeddings(relay, mock_llm):
    url = await relay(config(mock_llm, "llm/v1/embeddings", "cohere.embed-english-v3"))
    _, client = clients(url)
    result = await client.embeddings.create(model="cohere.embed-english-v3", input=["first text", "second text"])
    assert [d.embedding for d in result.data] == [embedding(t, mock_llm.embedding_dims).tolist()
                                                  for t in ("first text", "second text")]
    assert sent(mock_llm, "invoke", "cohere.embed-english-v3") == {"texts": ["first text", "second text"],
                                                                   "input_type": "search_document"}
    await client.close()


async def test_completions_through_converse(relay, mock_llm):
    url = await relay(config(mock_llm, "llm/v1/completions"))
    sync_client, client = clients(url)
    mock_llm.enqueue(Reply(content="This is a test.", prompt_tokens=5, completion_tokens=5))
    result = await asyncio.to_thread(sync_client.completions.create, model=MODEL, prompt="Say this is a test")
    assert result.object == "text_completion"
    assert result.choices[0].text == "This is a test." and result.choices[0].finish_reason == "stop"
    assert result.usage.total_tokens == 10
    assert sent(mock_llm)["messages"] == [{"role": "user", "content": [{"text": "Say this is a test"}]}]
    mock_llm.enqueue(Reply(content="This is a test.", prompt_tokens=5, completion_tokens=5))
    stream = await client.completions.create(model=MODEL, prompt="Say this is a test", stream=True,
                                             stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "This is a test."
    assert chunks[-1].usage.total_tokens == 10
    sync_client.close()
    await client.close()


async def test_raw_event_script_with_prompt_cache_usage(chat, relay, mock_llm):
    """A stream scripted event by event (the mock frames each one): usage comes from the metadata event exactly."""
    _, client = clients(chat)
    mock_llm.enqueue(Reply(stream=True, events=[
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "Cached "}}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "answer."}}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "end_turn"}},
        {"metadata": {"usage": {"inputTokens": 4, "outputTokens": 279, "totalTokens": 2011,
                                "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 728},
                      "metrics": {"latencyMs": 1500}}},
    ]))
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Go"}],
                                                  stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Cached answer."
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1732, 279, 2011)
    assert usage.prompt_tokens_details.cached_tokens == 1000
    assert relay.contexts[-1].usage.cached_tokens == 1000
    assert mock_llm.requests[-1].status == 200
    await client.close()


async def test_frames_reach_the_client_as_they_arrive(chat, mock_llm):
    """Paced frames: each content chunk is relayed when its frame arrives, not when the stream ends."""
    _, client = clients(chat)
    mock_llm.enqueue(Reply(content="slow steady words", interval=0.25))
    loop = asyncio.get_running_loop()
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Go"}],
                                                  stream=True)
    arrivals = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(loop.time())
    assert len(arrivals) == 3
    assert arrivals[-1] - arrivals[0] > 0.35  # the first word came about two intervals before the last
    await client.close()

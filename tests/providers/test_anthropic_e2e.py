"""The relay path with the Anthropic driver, end to end over real HTTP.

openai SDK client (sync and async) -> tiny aiohttp app running ``ProxyPolicy.before`` then ``ProxyPolicy.serve``
-> the mock LLM speaking Anthropic's Messages API. What the client sees must be what the mock sent, and the mock
must have received a request in Anthropic's documented format.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from tests.relay_server import Served, serve
from tollgate.relay import web

from tollgate.context import RequestContext
from tollgate.mock import MockLLM, Reply, ToolCall
from tollgate.plugins.proxy.policy import ProxyPolicy
from tollgate.providers.base import Usage
from tollgate.relay import upstream

API_KEY = "sk-ant-api03-e2e-secret-key-0123456789"
MODEL = "claude-sonnet-4-5"


class Relay:
    """One tollgate-proxy instance (route_type llm/v1/chat) in front of the mock's Anthropic endpoint."""

    def __init__(self, mock: MockLLM, **config: Any):
        self.mock = mock
        self.config = {
            "route_type": "llm/v1/chat",
            "auth": {"header_name": "x-api-key", "header_value": API_KEY},
            "model": {"provider": "anthropic", "name": MODEL,
                      "options": {"upstream_url": mock.url + "/v1/messages", "max_tokens": 256,
                                  "anthropic_version": "2023-06-01"}},
            "response_streaming": "allow",
            "timeout": 10,
            **config,
        }
        self.policy = ProxyPolicy(self.config, "tollgate-proxy")
        self.contexts: list[RequestContext] = []
        self.url = ""
        self._served: Served | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = RequestContext(method=request.method, path=request.path, query=request.query_string,
                             headers=request.headers, body=await request.read(), identity={},
                             policies={"tollgate-proxy": self.policy})
        self.contexts.append(ctx)
        early = await self.policy.before(ctx)
        if early is not None:
            return early
        return await self.policy.serve(ctx, request)

    async def start(self) -> Relay:
        self._served = await serve(self.handle)
        self.url = self._served.url
        return self

    async def stop(self) -> None:
        if self._served is not None:
            await self._served.stop()

    def usage(self) -> Usage | None:
        usage = self.contexts[-1].usage
        return usage.get("usage") if isinstance(usage, dict) else usage


@pytest.fixture
async def mock():
    async with MockLLM(formats=["anthropic"]) as m:
        yield m


@pytest.fixture
async def relay(mock):
    upstream._session = None  # a session left by a test on another (closed) event loop is unusable here
    r = await Relay(mock).start()
    yield r
    await r.stop()
    await upstream.close()


@pytest.fixture
async def client(relay):
    async with openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key="client-key", max_retries=0,
                                  timeout=10) as c:
        yield c


@pytest.fixture
def sync_client(relay):
    with openai.OpenAI(base_url=relay.url + "/v1", api_key="client-key", max_retries=0, timeout=10) as c:
        yield c


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}


def sent(mock: MockLLM) -> dict[str, Any]:
    """The last request the mock received, checked to be an Anthropic Messages request."""
    rec = mock.requests[-1]
    assert rec.endpoint == "anthropic.messages"
    assert rec.path == "/v1/messages"
    assert rec.headers["x-api-key"] == API_KEY
    assert rec.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in {k.lower() for k in rec.headers}  # the client's own key is not forwarded
    return rec.json


# ------------------------------------------------------------------------------------------------------------------


async def test_chat_non_stream(client, relay, mock):
    mock.enqueue(Reply(content="Hi! My name is Claude.", prompt_tokens=30, completion_tokens=7, cached_tokens=12))
    answer = await client.chat.completions.create(model=MODEL, messages=[
        {"role": "system", "content": "You are Claude."},
        {"role": "user", "content": "Hello, Claude"},
    ], temperature=0.5)
    assert answer.object == "chat.completion"
    assert answer.model == MODEL
    assert answer.choices[0].message.content == "Hi! My name is Claude."
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (30, 7, 37)
    assert answer.usage.prompt_tokens_details.cached_tokens == 12
    assert sent(mock) == {"model": MODEL, "system": "You are Claude.",
                          "messages": [{"role": "user", "content": "Hello, Claude"}],
                          "max_tokens": 256, "temperature": 0.5}
    # what the mock put on the wire, and what the relay metered
    wire = mock.requests[-1]
    assert wire.status == 200
    assert (relay.usage().prompt_tokens, relay.usage().cached_tokens) == (30, 12)


async def test_chat_stream_with_usage(client, relay, mock):
    text = "Streaming is translated frame by frame as it arrives."
    mock.enqueue(Reply(content=text, prompt_tokens=9, completion_tokens=11, cached_tokens=4))
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Go"}],
                                                  stream=True, stream_options={"include_usage": True},
                                                  max_tokens=100)
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
    assert len(pieces) > 1  # one chunk per provider delta, not one blob
    assert finish == "stop"
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (9, 11, 20)
    assert usage.prompt_tokens_details.cached_tokens == 4
    body = sent(mock)
    assert body["stream"] is True and body["max_tokens"] == 100
    assert (relay.usage().prompt_tokens, relay.usage().completion_tokens) == (9, 11)


async def test_stream_without_include_usage_has_no_usage_chunk(client, relay, mock):
    mock.enqueue(Reply(content="one two three"))
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Go"}],
                                                  stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two three"
    assert relay.usage() is not None  # metered all the same


async def test_tool_calls_non_stream_and_tool_results_sent_back(client, mock):
    mock.enqueue(Reply(content="I'll check the weather.",
                       tool_calls=[ToolCall("get_weather", {"location": "Paris"}, "toolu_01A09q90qw90lq917835lq9")]))
    answer = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_TOOL],
        tool_choice="auto")
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll check the weather."
    call = choice.message.tool_calls[0]
    assert (call.id, call.type, call.function.name) == ("toolu_01A09q90qw90lq917835lq9", "function", "get_weather")
    assert call.function.arguments == '{"location":"Paris"}'
    body = sent(mock)
    assert body["tools"] == [{"name": "get_weather", "description": "Get the current weather in a given location",
                              "input_schema": WEATHER_TOOL["function"]["parameters"]}]
    assert body["tool_choice"] == {"type": "auto"}

    # second turn: the tool result goes back as a tool_result block
    mock.enqueue(Reply(content="It is 15 degrees in Paris."))
    answer = await client.chat.completions.create(model=MODEL, tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "15 degrees"},
    ])
    assert answer.choices[0].message.content == "It is 15 degrees in Paris."
    assert sent(mock)["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "I'll check the weather."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
             "input": {"location": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"}]},
    ]


async def test_tool_calls_stream(client, mock):
    calls = [ToolCall("get_weather", {"location": "San Francisco, CA", "unit": "celsius"}, "toolu_1"),
             ToolCall("get_time", {"zone": "America/Los_Angeles"}, "toolu_2")]
    mock.enqueue(Reply(content="Checking.", tool_calls=calls, prompt_tokens=50, completion_tokens=20))
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather and time in SF?"}], tools=[WEATHER_TOOL],
        stream=True, stream_options={"include_usage": True})
    text, got, finish, usage = "", {}, None, None
    async for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for tc in choice.delta.tool_calls or ():
                slot = got.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                slot["id"] = tc.id or slot["id"]
                if tc.function is not None:
                    slot["name"] = tc.function.name or slot["name"]
                    slot["arguments"] += tc.function.arguments or ""
            finish = choice.finish_reason or finish
    assert text == "Checking."
    assert [got[i] for i in sorted(got)] == [
        {"id": tc.id, "name": tc.name, "arguments": tc.arguments_json} for tc in calls]
    assert finish == "tool_calls"
    assert (usage.prompt_tokens, usage.completion_tokens) == (50, 20)


async def test_image_and_length_finish(client, mock):
    answer = await client.chat.completions.create(model=MODEL, max_completion_tokens=3, messages=[
        {"role": "user", "content": [
            {"type": "text", "text": "describe this picture in many many words please"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]}])
    assert answer.choices[0].finish_reason == "length"  # the mock cut at max_tokens: stop_reason max_tokens
    body = sent(mock)
    assert body["max_tokens"] == 3
    assert body["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


async def test_rate_limit_error(client, mock):
    mock.enqueue(Reply.fail(429, "Number of request tokens has exceeded your per-minute rate limit",
                            retry_after=7))
    with pytest.raises(openai.RateLimitError) as err:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 429
    assert err.value.body["message"] == "Number of request tokens has exceeded your per-minute rate limit"
    assert err.value.type == "rate_limit_exceeded"
    assert err.value.response.headers["retry-after"] == "7"
    assert API_KEY not in err.value.response.text


async def test_overloaded_keeps_529(client, mock):
    mock.enqueue(Reply.fail(529))
    with pytest.raises(openai.InternalServerError) as err:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 529
    assert err.value.body["message"] == "Overloaded"
    assert err.value.code == "overloaded_error"


async def test_error_event_mid_stream(client, mock):
    mock.enqueue(Reply(content="one two three four five", error_after=2))
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                  stream=True)
    seen = []
    with pytest.raises(openai.APIError) as err:
        async for chunk in stream:
            seen += [c.delta.content for c in chunk.choices if c.delta.content]
    assert "".join(seen) == "one two "
    assert "Overloaded" in str(err.value)


async def test_model_not_served_is_refused_before_the_provider(client, mock):
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert mock.requests == []


async def test_sync_client(sync_client, mock):
    """The synchronous openai client, non-stream and stream (run off the loop that serves the relay and mock)."""
    mock.enqueue(Reply(content="sync answer", prompt_tokens=3, completion_tokens=2))
    mock.enqueue(Reply(content="sync stream answer", prompt_tokens=4, completion_tokens=3))

    def run() -> tuple[Any, list[Any]]:
        answer = sync_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a"}])
        chunks = list(sync_client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "b"}], stream=True,
            stream_options={"include_usage": True}))
        return answer, chunks

    answer, chunks = await asyncio.to_thread(run)
    assert answer.choices[0].message.content == "sync answer"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (3, 2)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "sync stream answer"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 3)
    assert [r.json["messages"][0]["content"] for r in mock.requests] == ["a", "b"]
    assert mock.requests[1].json["stream"] is True

"""route_type preserve end to end: native clients (the anthropic SDK, raw aiohttp for Gemini and Bedrock) -> the Kong
double -> ``tollgate serve`` -> the mock LLM in the provider's own format. The answer comes back byte for byte (JSON,
SSE, AWS event-stream) and its usage is still metered: the relay's analytics line, and a token limit settling on it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest
import pytest_asyncio

from tests.harness import KongDouble
from tests.harness.procs import TollgateServer
from tollgate.mock import MockLLM, Reply
from tollgate.mock.formats.bedrock import event_frame

from ..providers.test_bedrock import check_signature
from .e2e import BEDROCK_KEY_ID, BEDROCK_SECRET, PROVIDER_KEYS

pytestmark = pytest.mark.asyncio(loop_scope="module")

CLAUDE = "claude-sonnet-4-6"
GEMINI = "gemini-2.0-flash"
BEDROCK = "anthropic.claude-3-5-sonnet-20240620-v1:0"
LIMIT = 100_000


def routes(mock_url: str) -> dict[str, list[dict[str, Any]]]:
    """Route name -> its plugins (every route strips its path: the relay sees the client's native path)."""
    def proxy(provider: str, model: str | None, auth: dict[str, Any], **options: Any) -> dict[str, Any]:
        return {"name": "tollgate-proxy", "config": {
            "route_type": "preserve", "timeout": 10,
            "model": {"provider": provider, "name": model, "options": {"upstream_url": mock_url, **options}},
            "auth": auth}}

    limit = {"name": "tollgate-token-limit", "config": {
        "limits": [{"limit": LIMIT, "window_size": "day", "tokens_count_strategy": "total_tokens"}],
        "identifier": "ip", "window_type": "fixed", "strategy": "local", "reserve_max_tokens": True}}
    anthropic_auth = {"header_name": "x-api-key", "header_value": PROVIDER_KEYS["anthropic"]}
    return {
        "anthropic-native": [limit, proxy("anthropic", CLAUDE, anthropic_auth, anthropic_version="2023-06-01")],
        "anthropic-open": [proxy("anthropic", None, anthropic_auth)],
        "gemini-native": [proxy("gemini", GEMINI, {"param_name": "key", "param_value": PROVIDER_KEYS["gemini"],
                                                   "param_location": "query"})],
        "bedrock-native": [proxy("bedrock", BEDROCK, {"aws_access_key_id": BEDROCK_KEY_ID,
                                                      "aws_secret_access_key": BEDROCK_SECRET},
                                 bedrock={"aws_region": "us-west-2"})],
    }


class Env:
    def __init__(self, mock: MockLLM, proc: TollgateServer, kong: KongDouble):
        self.mock, self.proc, self.kong = mock, proc, kong

    def url(self, route: str) -> str:
        return f"{self.kong.url}/{route}"

    def analytics(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.proc.stderr_text().splitlines()
                if line.startswith("{") and '"msg":"ai request"' in line]

    async def analytics_of(self, answer_headers: Any) -> dict[str, Any]:
        """The analytics line of the request that got this answer, by Kong's request id (which Kong sends both to the
        client and upstream): never another request's line, whatever their order of writing."""
        request_id = answer_headers["X-Kong-Request-Id"]
        for _ in range(250):
            lines = [line for line in self.analytics() if line.get("kong_request_id") == request_id]
            if lines:
                assert len(lines) == 1, lines
                return lines[0]
            await asyncio.sleep(0.02)
        raise AssertionError(f"no analytics line was written for request {request_id}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env():
    mock = MockLLM(shutdown_timeout=0.1)
    await mock.start()
    proc = TollgateServer(env={"TOLLGATE_LOG_LEVEL": "info"})
    await proc.astart()
    config = {"_format_version": "3.0", "services": [{"name": "relay", "url": proc.relay_url, "retries": 0, "routes": [
        {"name": name, "paths": [f"/{name}"], "strip_path": True, "plugins": plugins}
        for name, plugins in routes(mock.url).items()]}]}
    kong = KongDouble(proc.entries("3.9", ["tollgate-proxy", "tollgate-token-limit"]), config)
    await kong.start()
    yield Env(mock, proc, kong)
    await kong.stop()
    proc.cleanup()
    await mock.stop()


@pytest.fixture(autouse=True)
def fresh_mock(env: Env):
    env.mock.reset()
    yield


def claude(env: Env, route: str = "anthropic-native") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=env.url(route), api_key="client-side-dummy", max_retries=0)


def usage_of(line: dict[str, Any]) -> tuple[int, int, int, bool]:
    usage = line["ai"]["proxy"]["usage"]
    return usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"], usage["estimated"]


# -- Anthropic Messages through the anthropic SDK ---------------------------------------------------------------------

async def test_anthropic_sdk_message_passes_through_and_is_metered(env: Env):
    raw = await claude(env).messages.with_raw_response.create(
        model=CLAUDE, max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "hello native world"}],
        extra_headers={"anthropic-beta": "token-efficient-tools-2025-02-19"})
    message = await raw.parse()
    assert message.content[0].text == "hello native world" and message.stop_reason == "end_turn"
    assert raw.headers["X-Tollgate-Target"] == f"anthropic/{CLAUDE}"
    assert raw.headers["request-id"].startswith("req_mock")                   # the provider's own headers too
    sent = env.mock.requests[-1]
    assert sent.path == "/v1/messages" and sent.endpoint == "anthropic.messages"
    assert sent.json["system"] == "Be brief." and sent.json["max_tokens"] == 64         # the body as the SDK wrote it
    assert sent.headers["x-api-key"] == PROVIDER_KEYS["anthropic"]                     # the configured key...
    assert "client-side-dummy" not in str(dict(sent.headers))                          # ...never the client's
    assert sent.headers["anthropic-beta"] == "token-efficient-tools-2025-02-19"
    line = await env.analytics_of(raw.headers)
    assert usage_of(line) == (message.usage.input_tokens, message.usage.output_tokens,
                              message.usage.input_tokens + message.usage.output_tokens, False)
    assert line["ai"]["proxy"]["meta"]["provider_name"] == "anthropic" and line["status"] == 200


async def test_anthropic_sdk_stream_passes_through_and_is_metered(env: Env):
    env.mock.enqueue(Reply(content="one two three four five six", chunks=6, interval=0.02))
    texts = []
    async with claude(env).messages.stream(model=CLAUDE, max_tokens=64,
                                           messages=[{"role": "user", "content": "count"}]) as stream:
        async for text in stream.text_stream:
            texts.append(text)
        final = await stream.get_final_message()
        headers = stream.response.headers
    assert "".join(texts) == "one two three four five six" and len(texts) >= 6         # event by event
    line = await env.analytics_of(headers)
    assert usage_of(line)[:2] == (final.usage.input_tokens, final.usage.output_tokens)
    assert usage_of(line)[3] is False and line["ai"]["proxy"]["meta"]["time_to_first_token"] is not None


async def test_anthropic_stream_bytes_are_the_providers(env: Env):
    events = [b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_x","type":"message",'
              b'"role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,'
              b'"usage":{"input_tokens":42,"cache_read_input_tokens":8,"output_tokens":1}}}\n\n',
              b'event: ping\ndata: {"type": "ping"}\n\n',
              b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
              b'"delta":{"type":"text_delta","text":"Hi"}}\n\n',
              b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
              b'"usage":{"output_tokens":17}}\n\n',
              b'event: message_stop\ndata: {"type":"message_stop"}\n\n']
    env.mock.enqueue(Reply(events=events, interval=0.01))
    async with aiohttp.ClientSession() as http:
        async with http.post(env.url("anthropic-native") + "/v1/messages",
                             json={"model": CLAUDE, "max_tokens": 32, "stream": True,
                                   "messages": [{"role": "user", "content": "hi"}]},
                             headers={"anthropic-version": "2023-06-01"}) as answer:
            assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/event-stream")
            body = await answer.read()
    assert body == b"".join(events)
    assert usage_of(await env.analytics_of(answer.headers)) == (50, 17, 67, False)


async def test_a_token_limit_settles_on_the_native_usage(env: Env):
    env.mock.default = Reply(prompt_tokens=1000, completion_tokens=234)
    async with aiohttp.ClientSession() as http:
        remaining = []
        for _ in range(3):
            async with http.post(env.url("anthropic-native") + "/v1/messages",
                                 json={"model": CLAUDE, "max_tokens": 32,
                                       "messages": [{"role": "user", "content": "hi"}]},
                                 headers={"anthropic-version": "2023-06-01"}) as answer:
                assert answer.status == 200
                remaining.append(int(answer.headers["X-AI-RateLimit-Remaining-day"]))
            await asyncio.sleep(0.05)
    # each request is charged 1234 tokens once the answer is in (the native prompt is not estimated: 0 reserved;
    # each request reserves its max_tokens, the same 32, so the remaining counts differ by the settled usage)
    assert remaining[0] - remaining[1] == 1234 and remaining[1] - remaining[2] == 1234


async def test_native_errors_come_back_in_the_providers_own_shape(env: Env):
    env.mock.enqueue(Reply.fail(429, retry_after=3))
    with pytest.raises(anthropic.RateLimitError) as caught:
        await claude(env).messages.create(model=CLAUDE, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "rate_limit_error"
    assert caught.value.response.headers["Retry-After"] == "3"
    # the route's pinned model holds for native bodies too
    with pytest.raises(anthropic.BadRequestError, match="not available on this route"):
        await claude(env).messages.create(model="claude-opus-4-1", max_tokens=8,
                                          messages=[{"role": "user", "content": "x"}])


async def test_native_count_tokens_reaches_its_endpoint_unmetered(env: Env):
    result = await claude(env, "anthropic-open").messages.count_tokens(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "how many tokens is this"}])
    assert result.input_tokens > 0
    assert env.mock.requests[-1].path == "/v1/messages/count_tokens"


# -- Gemini generateContent / streamGenerateContent, raw ----------------------------------------------------------

GEMINI_FRAMES = [
    b'data: {"candidates": [{"content": {"parts": [{"text": "Bonjour"}], "role": "model"}, "index": 0}], '
    b'"usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}, "modelVersion": "gemini-2.0-flash"}\r\n\r\n',
    b'data: {"candidates": [{"content": {"parts": [{"text": " le monde"}], "role": "model"}, '
    b'"finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 4, '
    b'"totalTokenCount": 13}, "modelVersion": "gemini-2.0-flash"}\r\n\r\n',
]
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "Say hello in French"}]}],
               "generationConfig": {"maxOutputTokens": 20}}


async def test_gemini_stream_is_relayed_byte_for_byte_and_metered(env: Env):
    env.mock.enqueue(Reply(events=GEMINI_FRAMES, interval=0.02))
    path = f"/v1beta/models/{GEMINI}:streamGenerateContent?alt=sse&key=client-own-key"
    arrivals = []
    async with aiohttp.ClientSession() as http:
        async with http.post(env.url("gemini-native") + path, json=GEMINI_BODY) as answer:
            assert answer.status == 200 and answer.headers["X-Kong-LLM-Model"] == f"gemini/{GEMINI}"
            body = b""
            async for data in answer.content.iter_any():
                body += data
                arrivals.append(data)
    assert body == b"".join(GEMINI_FRAMES) and len(arrivals) >= 2
    sent = env.mock.requests[-1]
    assert sent.path == f"/v1beta/models/{GEMINI}:streamGenerateContent"
    assert sent.query == {"alt": "sse", "key": PROVIDER_KEYS["gemini"]}                 # the configured key only
    assert orjson.loads(sent.body) == GEMINI_BODY
    assert usage_of(await env.analytics_of(answer.headers)) == (9, 4, 13, False)


async def test_gemini_generate_content_json_and_the_pinned_model(env: Env):
    async with aiohttp.ClientSession() as http:
        async with http.post(env.url("gemini-native") + f"/v1beta/models/{GEMINI}:generateContent",
                             json=GEMINI_BODY) as answer:
            assert answer.status == 200
            data = await answer.json()
        meta = data["usageMetadata"]
        assert usage_of(await env.analytics_of(answer.headers)) == (
            meta["promptTokenCount"], meta["candidatesTokenCount"], meta["totalTokenCount"], False)
        async with http.post(env.url("gemini-native") + "/v1beta/models/gemini-2.5-pro:generateContent",
                             json=GEMINI_BODY) as answer:
            assert answer.status == 400 and (await answer.json())["error"]["code"] == "model_not_allowed"


# -- Bedrock ConverseStream (AWS event-stream), raw ------------------------------------------------------------------

BEDROCK_FRAMES = [
    event_frame("messageStart", {"role": "assistant"}),
    event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}}),
    event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " from Bedrock"}}),
    event_frame("contentBlockStop", {"contentBlockIndex": 0}),
    event_frame("messageStop", {"stopReason": "end_turn"}),
    event_frame("metadata", {"usage": {"inputTokens": 21, "outputTokens": 5, "totalTokens": 26},
                             "metrics": {"latencyMs": 120}}),
]
CONVERSE_BODY = {"messages": [{"role": "user", "content": [{"text": "Hello"}]}],
                 "inferenceConfig": {"maxTokens": 50}}


async def test_bedrock_event_stream_bytes_are_identical_and_metered(env: Env):
    env.mock.enqueue(Reply(events=BEDROCK_FRAMES, interval=0.01))
    async with aiohttp.ClientSession() as http:
        async with http.post(env.url("bedrock-native") + f"/model/{BEDROCK}/converse-stream",
                             json=CONVERSE_BODY, headers={"Authorization": "AWS4-HMAC-SHA256 client-own"}) as answer:
            assert answer.status == 200
            assert answer.headers["Content-Type"] == "application/vnd.amazon.eventstream"
            body = await answer.read()
    assert body == b"".join(BEDROCK_FRAMES)
    sent = env.mock.requests[-1]
    assert sent.path == f"/model/{BEDROCK}/converse-stream" and orjson.loads(sent.body) == CONVERSE_BODY
    host = env.mock.url.split("://", 1)[1]
    check_signature("POST", sent.path, host, dict(sent.headers), sent.body, secret=BEDROCK_SECRET,
                    region="us-west-2", key_id=BEDROCK_KEY_ID)                          # signed by the relay
    assert usage_of(await env.analytics_of(answer.headers)) == (21, 5, 26, False)


async def test_bedrock_converse_json(env: Env):
    async with aiohttp.ClientSession() as http:
        async with http.post(env.url("bedrock-native") + f"/model/{BEDROCK}/converse", json=CONVERSE_BODY) as answer:
            assert answer.status == 200
            data = await answer.json()
    assert data["output"]["message"]["content"][0]["text"] == "Hello"
    usage = data["usage"]
    assert usage_of(await env.analytics_of(answer.headers)) == (usage["inputTokens"], usage["outputTokens"],
                                                                usage["totalTokens"], False)

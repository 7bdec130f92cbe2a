"""Kong's own log sees Tollgate's usage, cost and latency (``ai.proxy.*``), through the tollgate-analytics
companion: its real handler.lua runs in the Kong double (LuaJIT), the relay hands it the entry on the response,
and nothing extra reaches the client.

    client -> Kong double (tollgate-proxy over its socket; tollgate-analytics and file-log in Lua/in-process)
      -> relay (tollgate serve) -> mock LLM
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import pytest_asyncio

from tests.harness import KongDouble
from tests.harness.lua import LuaPlugin
from tests.harness.procs import TollgateServer
from tests.proxy.e2e import BEDROCK_KEY_ID, BEDROCK_SECRET, CaptureLog
from tests.proxy.test_preserve_e2e import BEDROCK, BEDROCK_FRAMES, CONVERSE_BODY
from tollgate.mock import MockLLM, Reply
from tollgate.relay import kong_log

pytestmark = pytest.mark.asyncio(loop_scope="module")

PRICED = {"input_cost": 2.0, "output_cost": 8.0}      # USD per 1M tokens, Kong ai-proxy's option names
MESSAGES = [{"role": "user", "content": "Count the stars for me, please."}]


def proxy_config(mock_url: str) -> dict[str, Any]:
    return {"route_type": "llm/v1/chat", "timeout": 10,
            "model": {"provider": "openai", "name": "gpt-4o-mini",
                      "options": {"upstream_url": mock_url + "/v1/chat/completions", **PRICED}},
            "auth": {"header_name": "Authorization", "header_value": "Bearer sk-kong-log-0123456789abcdef"}}


def native_config(mock_url: str) -> dict[str, Any]:
    """route_type preserve: the client speaks Anthropic's Messages API, the answer passes through byte for byte."""
    return {"route_type": "preserve", "timeout": 10,
            "model": {"provider": "anthropic", "name": "claude-sonnet-4-5",
                      "options": {"upstream_url": mock_url, "anthropic_version": "2023-06-01", **PRICED}},
            "auth": {"header_name": "x-api-key", "header_value": "sk-ant-kong-log-0123456789"}}


def bedrock_config(mock_url: str) -> dict[str, Any]:
    """route_type preserve on Bedrock: streams are AWS event-stream frames (binary)."""
    return {"route_type": "preserve", "timeout": 10,
            "model": {"provider": "bedrock", "name": BEDROCK,
                      "options": {"upstream_url": mock_url, "bedrock": {"aws_region": "us-west-2"}, **PRICED}},
            "auth": {"aws_access_key_id": BEDROCK_KEY_ID, "aws_secret_access_key": BEDROCK_SECRET}}


NATIVE = {"native": native_config, "bedrock": bedrock_config}


class Env:
    def __init__(self, mock: MockLLM, proc: TollgateServer, kong: KongDouble, logs: CaptureLog):
        self.mock, self.proc, self.kong, self.logs = mock, proc, kong, logs

    def client(self, route: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.kong.url}/{route}/v1", api_key="unused", max_retries=0)

    async def relay_line(self, total_tokens: int) -> dict[str, Any]:
        """Tollgate's own log line of the request that used ``total_tokens`` (written at the end of a loop turn,
        so it may come just after the answer)."""
        for _ in range(100):
            for line in self.proc.stderr_text().splitlines():
                if line.startswith("{") and '"msg":"ai request"' in line:
                    entry = orjson.loads(line)
                    if entry["ai"]["proxy"].get("usage", {}).get("total_tokens") == total_tokens:
                        return entry
            await asyncio.sleep(0.02)
        raise AssertionError("no relay log line")

    async def relay_entry(self, kong_request_id: str) -> dict[str, Any]:
        """Tollgate's own log line of the request Kong numbered ``kong_request_id``."""
        for _ in range(100):
            for line in self.proc.stderr_text().splitlines():
                if line.startswith("{") and '"msg":"ai request"' in line and kong_request_id in line:
                    return orjson.loads(line)
            await asyncio.sleep(0.05)
        raise AssertionError("no relay log line")

    async def stream(self, route: str, body: dict[str, Any] | None = None, path: str = "/v1/chat/completions"
                     ) -> tuple[Any, bytes]:
        """A raw request, streamed by default (headers and bytes exactly as the client gets them)."""
        body = body or {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.kong.url}/{route}{path}", json=body) as r:
                return r.headers, await r.read()

    async def kong_entry(self) -> dict[str, Any]:
        """The newest serialized log entry (file-log runs in Kong's log phase, just after the response)."""
        for _ in range(100):
            if self.logs.entries:
                return self.logs.entries[-1]
            await asyncio.sleep(0.02)
        raise AssertionError("no log entry")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env():
    mock = MockLLM(shutdown_timeout=0.1)
    await mock.start()
    proc = TollgateServer(env={"TOLLGATE_LOG_LEVEL": "info"})
    await proc.astart()
    logs = CaptureLog()
    routes = [{"name": name, "paths": [f"/{name}/"], "strip_path": True,
               "plugins": [{"name": "tollgate-proxy",
                            "config": NATIVE[name](mock.url) if name in NATIVE else proxy_config(mock.url)},
                           {"name": "file-log"},
                           *([{"name": "tollgate-analytics"}] if name != "bare" else []),
                           *([{"name": "tollgate-semantic-cache", "config": {"scope": "route"}}]
                             if name == "cached" else [])]}
              for name in ("companion", "bare", "cached", "native", "bedrock")]
    config = {"_format_version": "3.0",
              "services": [{"name": "relay", "url": proc.relay_url, "retries": 0, "routes": routes}]}
    kong = KongDouble(proc.entries("3.9", ["tollgate-proxy", "tollgate-semantic-cache"]), config,
                      bundled={"file-log": logs, "tollgate-analytics": LuaPlugin("tollgate-analytics")})
    await kong.start()
    yield Env(mock, proc, kong, logs)
    await kong.stop()
    proc.cleanup()
    await mock.stop()


@pytest.fixture(autouse=True)
def fresh(env: Env):
    env.mock.reset()
    env.logs.entries.clear()


def cost(prompt: int, completion: int) -> float:
    return (prompt * PRICED["input_cost"] + completion * PRICED["output_cost"]) / 1_000_000


async def test_a_whole_answer_puts_kongs_ai_keys_in_kongs_log_and_nothing_extra_reaches_the_client(env: Env):
    env.mock.enqueue(Reply(content="Seven stars tonight.", prompt_tokens=21, completion_tokens=5))
    raw = await env.client("companion").chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES)
    assert kong_log.HEADER not in raw.headers
    assert raw.parse().choices[0].message.content == "Seven stars tonight."
    entry = (await env.kong_entry())["ai"]["proxy"]
    assert entry["usage"]["prompt_tokens"] == 21 and entry["usage"]["completion_tokens"] == 5
    assert entry["usage"]["total_tokens"] == 26 and entry["usage"]["cost"] == pytest.approx(cost(21, 5))
    assert entry["usage"]["time_per_token"] == pytest.approx(entry["meta"]["llm_latency"] / 5)
    assert entry["meta"]["provider_name"] == "openai" and entry["meta"]["response_model"] == "gpt-4o-mini"
    assert entry["meta"]["llm_latency"] >= 0 and "estimated" in entry["usage"]
    relay = (await env.relay_line(26))["ai"]["proxy"]
    assert relay["usage"]["cost"] == entry["usage"]["cost"]


async def test_a_stream_hands_its_final_usage_over_in_a_trailer_the_client_never_sees(env: Env):
    env.mock.enqueue(Reply(content="one two three four", prompt_tokens=17, completion_tokens=4, interval=0.01))
    headers, body = await env.stream("companion")
    assert kong_log.HEADER not in headers and kong_log.TRAILER not in body
    assert body.endswith(b"data: [DONE]\n\n")
    entry = (await env.kong_entry())["ai"]["proxy"]
    assert (entry["usage"]["prompt_tokens"], entry["usage"]["completion_tokens"]) == (17, 4)
    assert entry["usage"]["cost"] == pytest.approx(cost(17, 4)) and entry["usage"]["time_to_first_token"] >= 0
    assert entry["meta"]["provider_name"] == "openai"


async def test_the_openai_sdk_streams_through_the_companion_with_exact_usage(env: Env):
    env.mock.enqueue(Reply(content="alpha beta", prompt_tokens=9, completion_tokens=2))
    stream = await env.client("companion").chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "alpha beta"
    assert chunks[-1].usage.total_tokens == 11
    assert (await env.kong_entry())["ai"]["proxy"]["usage"]["total_tokens"] == 11


async def test_a_client_that_leaves_mid_stream_leaves_the_meta_in_kongs_log(env: Env):
    env.mock.enqueue(Reply(content=" ".join(["word"] * 40), interval=0.1))
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{env.kong.url}/companion/v1/chat/completions",
                             json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}) as r:
            await r.content.readline()          # the first event, then the client goes away
    logged = await env.kong_entry()
    entry = logged["ai"]["proxy"]
    assert entry["meta"]["provider_name"] == "openai" and entry["meta"]["request_model"] == "gpt-4o-mini"
    # nginx stops reading the relay the moment the client leaves and runs the log phase (the double does as nginx
    # does: tests/harness/kong.py, _until_client_leaves), before the relay even learns of it: the usage exists only
    # later, in Tollgate's own log line and metrics, never in Kong's (kong/plugins/tollgate-analytics/README.md).
    assert "usage" not in entry
    assert any("so upstream connection is closed too while sending to client" in r.message for r in env.kong.logs)
    relay = await env.relay_entry(logged["request"]["id"])
    assert relay["ai"]["proxy"]["usage"]["estimated"] is True and relay["ai"]["proxy"]["usage"]["prompt_tokens"] > 0


async def test_without_the_companion_the_relay_adds_nothing(env: Env):
    env.mock.enqueue(Reply(content="plain", prompt_tokens=3, completion_tokens=1, interval=0.01))
    headers, body = await env.stream("bare")
    assert kong_log.HEADER not in headers and kong_log.TRAILER not in body
    entry = await env.kong_entry()
    assert "usage" not in entry.get("ai", {}).get("proxy", {})


@pytest.mark.parametrize("stream", [False, True])
async def test_a_cache_hit_reaches_kongs_log_with_its_cache_status(env: Env, stream: bool):
    question = [{"role": "user", "content": f"What is the capital of France? (stream={stream})"}]
    env.mock.enqueue(Reply(content="Paris.", prompt_tokens=12, completion_tokens=2))
    client = env.client("cached")
    for expected in ("Miss", "Hit"):
        env.logs.entries.clear()
        if stream:
            chunks = [c async for c in await client.chat.completions.create(
                model="gpt-4o-mini", messages=question, stream=True)]
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Paris."
        else:
            answer = await client.chat.completions.create(model="gpt-4o-mini", messages=question)
            assert answer.choices[0].message.content == "Paris."
        entry = (await env.kong_entry())["ai"]["proxy"]
        assert entry["cache"]["cache_status"] == expected
    assert len(env.mock.requests) == 1                     # the hit never reached the provider


async def test_a_native_json_answer_hands_its_entry_over_in_a_header(env: Env):
    """route_type preserve, a whole answer: held until complete so its entry can go in the header."""
    env.mock.enqueue(Reply(content="Native stars.", prompt_tokens=31, completion_tokens=4))
    headers, body = await env.stream("native", {"model": "claude-sonnet-4-5", "max_tokens": 32, "messages": MESSAGES},
                                     "/v1/messages")
    assert kong_log.HEADER not in headers and orjson.loads(body)["content"][0]["text"] == "Native stars."
    assert int(headers["Content-Length"]) == len(body)
    logged = await env.kong_entry()
    entry = logged["ai"]["proxy"]
    assert (entry["usage"]["prompt_tokens"], entry["usage"]["completion_tokens"]) == (31, 4)
    assert entry["usage"]["cost"] == pytest.approx(cost(31, 4)) and entry["meta"]["provider_name"] == "anthropic"
    assert (await env.relay_entry(logged["request"]["id"]))["ai"]["proxy"]["usage"]["cost"] == entry["usage"]["cost"]


async def test_a_native_stream_reaches_the_client_byte_for_byte_and_kong_gets_the_trailer(env: Env):
    """route_type preserve, a stream: the trailer follows the provider's last byte; the companion cuts it out."""
    events = [b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_k","type":"message",'
              b'"role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,'
              b'"usage":{"input_tokens":42,"output_tokens":1}}}\n\n',
              b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
              b'"delta":{"type":"text_delta","text":": tollgate-analytics {}"}}\n\n',
              b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
              b'"usage":{"output_tokens":17}}\n\n',
              b'event: message_stop\ndata: {"type":"message_stop"}\n\n']
    env.mock.enqueue(Reply(events=events, interval=0.01))
    headers, body = await env.stream("native", {"model": "claude-sonnet-4-5", "max_tokens": 32, "stream": True,
                                                "messages": MESSAGES}, "/v1/messages")
    assert body == b"".join(events) and kong_log.HEADER not in headers
    logged = await env.kong_entry()
    entry = logged["ai"]["proxy"]
    assert (entry["usage"]["prompt_tokens"], entry["usage"]["completion_tokens"]) == (42, 17)
    assert entry["usage"]["cost"] == pytest.approx(cost(42, 17)) and entry["usage"]["time_to_first_token"] >= 0
    assert (await env.relay_entry(logged["request"]["id"]))["ai"]["proxy"]["usage"]["completion_tokens"] == 17



async def test_a_binary_native_stream_reaches_the_client_unchanged_and_kong_gets_the_trailer(env: Env):
    """Bedrock ConverseStream (AWS event-stream frames): the trailer follows the last frame and is cut out."""
    env.mock.enqueue(Reply(events=BEDROCK_FRAMES, interval=0.01))
    headers, body = await env.stream("bedrock", CONVERSE_BODY, f"/model/{BEDROCK}/converse-stream")
    assert body == b"".join(BEDROCK_FRAMES) and headers["Content-Type"] == "application/vnd.amazon.eventstream"
    entry = (await env.kong_entry())["ai"]["proxy"]
    assert (entry["usage"]["prompt_tokens"], entry["usage"]["completion_tokens"]) == (21, 5)
    assert entry["usage"]["cost"] == pytest.approx(cost(21, 5)) and entry["meta"]["provider_name"] == "bedrock"

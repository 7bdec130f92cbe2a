"""route_type preserve on the relay path in process (the mock LLM over HTTP): failover between targets of one
provider, the provider's own errors, answers cut short, streaming rules, what is and is not forwarded."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from tollgate.mock import Reply

from .helpers import post

MESSAGES = "/v1/messages"
SECRET = "sk-ant-preserve-0123456789abcdef"
BODY = {"model": "claude-haiku-4-5", "max_tokens": 32, "messages": [{"role": "user", "content": "hello there"}]}
HEADERS = {"anthropic-version": "2023-06-01"}


def target(mock_url: str, name: str, **extra) -> dict:
    """An Anthropic target served by the mock under ``/<name>/`` (a prefix before the client's path)."""
    return {"model": {"provider": "anthropic", "name": "claude-haiku-4-5",
                      "options": {"upstream_url": f"{mock_url}/{name}/"}},
            "auth": {"header_name": "x-api-key", "header_value": SECRET}, "description": name, **extra}


def two(mock) -> dict:
    return {"route_type": "preserve", "targets": [target(mock.url, "primary"),
                                                  target(mock.url, "secondary", priority=2)],
            "balancer": {"algorithm": "priority"}, "timeout": 5}


async def test_a_failing_primary_fails_over_and_the_native_answer_comes_back(mock, relay):
    r = await relay(two(mock))
    mock.enqueue(Reply.fail(529), path="/primary" + MESSAGES)
    result = await post(r.url, BODY, headers=HEADERS, path=MESSAGES)
    assert result.status == 200 and result.target == "secondary" and result.headers["X-Tollgate-Attempts"] == "2"
    answer = result.json()
    assert answer["type"] == "message" and answer["content"][0]["text"] == "hello there"      # Anthropic's shape
    assert [q.path for q in mock.requests] == ["/primary/v1/messages", "/secondary/v1/messages"]
    assert mock.requests[-1].body == orjson.dumps(BODY)
    usage = r.contexts[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (answer["usage"]["input_tokens"],
                                                              answer["usage"]["output_tokens"])
    assert not usage.estimated


async def test_a_request_error_is_the_providers_own_and_never_fails_over(mock, relay):
    r = await relay(two(mock))
    mock.enqueue(Reply.fail(400, f"bad request, and your key {SECRET} is echoed"), path="/primary" + MESSAGES)
    result = await post(r.url, BODY, headers=HEADERS, path=MESSAGES)
    assert result.status == 400 and result.target == "primary" and len(mock.requests) == 1
    error = result.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert SECRET not in result.text and "[redacted]" in error["error"]["message"]
    assert result.headers["request-id"].startswith("req_mock")


async def test_every_target_failing_is_tollgates_own_502(mock, relay):
    r = await relay(two(mock))
    mock.add_rule(Reply.fail(503))
    result = await post(r.url, BODY, headers=HEADERS, path=MESSAGES)
    assert result.status == 502 and result.json()["error"]["code"] == "all_targets_failed"


async def test_a_lone_targets_error_passes_through_with_its_retry_after(mock, relay):
    r = await relay({"route_type": "preserve", **{k: v for k, v in target(mock.url, "only").items()
                                                  if k in ("model", "auth")}})
    mock.enqueue(Reply.fail(429, retry_after=4))
    result = await post(r.url, BODY, headers=HEADERS, path=MESSAGES)
    assert result.status == 429 and result.headers["Retry-After"] == "4"
    assert result.json()["error"]["type"] == "rate_limit_error"


async def test_a_stream_cut_after_its_first_bytes_is_cut_for_the_client_too(mock, relay):
    r = await relay(two(mock))
    mock.enqueue(Reply(content="one two three four five", disconnect_after=2), path="/primary" + MESSAGES)
    async with aiohttp.ClientSession() as http:
        async with http.post(r.url + MESSAGES, json={**BODY, "stream": True}, headers=HEADERS) as answer:
            assert answer.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await answer.read()
    assert len(mock.requests) == 1                                              # no failover after the first bytes
    usage = r.contexts[-1].usage
    assert usage.estimated and usage.completion_tokens > 0 and usage.prompt_tokens == 0


async def test_streaming_rules_and_forwarded_headers(mock, relay):
    config = {"route_type": "preserve", "response_streaming": "deny",
              "model": {"provider": "gemini", "options": {"upstream_url": mock.url}},
              "auth": {"param_name": "key", "param_value": "AIza-configured-0123456789", "param_location": "query"}}
    r = await relay(config)
    gemini = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    denied = await post(r.url, gemini, path="/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse")
    assert denied.status == 400 and denied.json()["error"]["code"] == "streaming_denied"
    result = await post(r.url, gemini, path="/v1beta/models/gemini-2.0-flash:generateContent?key=mine&apikey=kong",
                        headers={"x-goog-api-key": "client", "Authorization": "Bearer kong", "X-Custom": "no"})
    assert result.status == 200 and "candidates" in result.json()
    sent = mock.requests[-1]
    assert sent.query == {"key": "AIza-configured-0123456789"}
    assert {k.lower() for k in sent.headers} & {"x-goog-api-key", "authorization", "x-custom"} == set()
    assert r.contexts[-1].meta["model"] == "gemini-2.0-flash"                  # from the path, for analytics
    assert result.headers["X-Tollgate-Target"] == "gemini/gemini-2.0-flash"
    assert r.contexts[-1].usage is not None and not r.contexts[-1].usage.estimated


async def test_a_provider_without_a_model_in_the_config_lets_the_client_choose(mock, relay):
    r = await relay({"route_type": "preserve", "model": {"provider": "anthropic",
                                                         "options": {"upstream_url": mock.url}},
                     "auth": {"header_name": "x-api-key", "header_value": SECRET}})
    result = await post(r.url, {**BODY, "model": "claude-opus-4-7"}, headers=HEADERS, path=MESSAGES)
    assert result.status == 200 and mock.requests[-1].model == "claude-opus-4-7"


async def test_the_timeout_bounds_a_streams_start_and_a_plain_answer_but_not_a_started_stream(mock, relay):
    """The same bounds as the OpenAI-format path (attempt.attempt_timeouts)."""
    r = await relay({**two(mock), "timeout": 0.8, "targets": [target(mock.url, "only")]})
    mock.enqueue(Reply(content="one two three four five six", chunks=6, interval=0.25), path="/only" + MESSAGES)
    async with aiohttp.ClientSession() as http:
        async with http.post(r.url + MESSAGES, json={**BODY, "stream": True}, headers=HEADERS) as answer:
            text = (await answer.read()).decode()
    assert answer.status == 200 and "message_stop" in text and text.count("text_delta") == 6, text

    for reply in (Reply(content="late", latency=1.5), Reply(content="late", latency=1.5, stream=True)):
        mock.enqueue(reply, path="/only" + MESSAGES)
        result = await post(r.url, {**BODY, "stream": reply.stream is True}, headers=HEADERS, path=MESSAGES)
        assert result.status == 504 and result.elapsed < 1.4, result.text

"""Azure OpenAI driver: URLs, auth, api-version handling, Azure's content-filter extras and error bodies.

Bodies follow Azure OpenAI's REST reference (chat completions with ``prompt_filter_results`` /
``content_filter_results``, the stream's first choice-less ``prompt_filter_results`` chunk, ``finish_reason:
content_filter``), and Azure's documented errors: the 400 ``content_filter`` body with
``innererror.content_filter_result``, the 429 token-rate-limit body with ``retry-after`` / ``retry-after-ms``, 401 and
404. The end-to-end tests at the bottom drive the relay (ProxyPolicy) with the openai SDK against the mock's Azure
format.
"""

from __future__ import annotations

import asyncio

import openai
import orjson
import pytest
from multidict import CIMultiDict

from tollgate.mock import Reply, ToolCall
from tollgate.providers import driver_for
from tollgate.providers.base import CHAT, COMPLETIONS, EMBEDDINGS, ProviderError, Target

driver = driver_for("azure")
OPTIONS = {"azure_instance": "my-resource", "azure_deployment_id": "gpt-4o-prod", "azure_api_version": "2024-10-21"}
TARGET = Target(provider="azure", model="gpt-4o", options=OPTIONS,
                auth={"header_name": "api-key", "header_value": "az-secret"})


def build(body, route=CHAT, stream=False, target=TARGET):
    request = driver.build_request(route, body, target, stream)
    return request, orjson.loads(request.body)


def feed_bytewise(decoder, data: bytes) -> list[dict]:
    chunks = []
    for i in range(len(data)):
        chunks += decoder.feed(data[i:i + 1])
    return chunks + decoder.close()


# ---------------------------------------------------------------------------------------------------------- requests


@pytest.mark.parametrize("route, path", [(CHAT, "chat/completions"), (COMPLETIONS, "completions"),
                                         (EMBEDDINGS, "embeddings")])
def test_urls(route, path):
    request, _ = build({"messages": [], "prompt": "x", "input": "x"}, route)
    assert request.url == (f"https://my-resource.openai.azure.com/openai/deployments/gpt-4o-prod/{path}"
                           "?api-version=2024-10-21")
    assert request.headers["api-key"] == "az-secret"
    assert b"az-secret" not in request.body


def test_deployment_falls_back_to_the_model_and_default_api_version():
    target = Target(provider="azure", model=None, options={"azure_instance": "res"},
                    auth={"header_name": "Authorization", "header_value": "Bearer eyJ0eXAi"})
    request, payload = build({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                             target=target)
    assert request.url == ("https://res.openai.azure.com/openai/deployments/gpt-4o-mini/chat/completions"
                           "?api-version=2023-05-15")
    assert request.headers["Authorization"] == "Bearer eyJ0eXAi"
    assert payload["model"] == "gpt-4o-mini"


def test_upstream_url_gets_an_api_version_unless_it_has_one():
    target = Target(provider="azure", model="m", options={"upstream_url": "http://mock/openai/deployments/d/chat/"
                                                                          "completions", "azure_api_version": "v9"})
    assert build({"messages": []}, target=target)[0].url.endswith("/chat/completions?api-version=v9")
    target.options["upstream_url"] += "?api-version=2024-06-01"
    assert build({"messages": []}, target=target)[0].url.endswith("?api-version=2024-06-01")


def test_body_is_openai_with_options_and_stream_usage_by_api_version():
    target = Target(provider="azure", model="gpt-4o", options={**OPTIONS, "max_tokens": 77, "temperature": 0.3},
                    auth=TARGET.auth)
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "auto", "temperature": 1}
    _, payload = build(body, stream=True, target=target)
    assert payload == {**body, "model": "gpt-4o", "max_tokens": 77, "stream": True,
                       "stream_options": {"include_usage": True}}
    target.options["azure_api_version"] = "2024-02-01"  # before stream_options existed
    _, payload = build(body, stream=True, target=target)
    assert "stream_options" not in payload and payload["stream"] is True


def test_misconfiguration_is_refused():
    for options, auth in (({}, TARGET.auth),
                          ({"azure_instance": "res"}, TARGET.auth),
                          (OPTIONS, {"azure_use_managed_identity": True}),
                          (OPTIONS, {"azure_client_id": "c", "azure_client_secret": "sekrit", "azure_tenant_id": "t"})):
        with pytest.raises(ProviderError) as err:
            build({"messages": []}, target=Target(provider="azure", model=None, options=options, auth=auth))
        assert err.value.status == 500 and err.value.code == "misconfigured"
        assert "sekrit" not in err.value.message
    with pytest.raises(ProviderError) as err:
        build({}, "preserve")
    assert err.value.status == 400


# ---------------------------------------------------------------------------------------------------------- answers

FILTERS = {"hate": {"filtered": False, "severity": "safe"}, "self_harm": {"filtered": False, "severity": "safe"},
           "sexual": {"filtered": False, "severity": "safe"}, "violence": {"filtered": False, "severity": "safe"}}
ANSWER = {
    "id": "chatcmpl-7R1nGnsXO8n4oi9UPz2f3UHdgAYMn", "object": "chat.completion", "created": 1686676106,
    "model": "gpt-4o-2024-08-06",
    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTERS}],
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "content_filter_results": FILTERS,
                 "message": {"role": "assistant", "content": "Yes, customer managed keys are supported.",
                             "refusal": None}}],
    "usage": {"completion_tokens": 10, "prompt_tokens": 20, "total_tokens": 30,
              "prompt_tokens_details": {"cached_tokens": 16}, "completion_tokens_details": {"reasoning_tokens": 0}},
    "system_fingerprint": "fp_mock",
}


def test_parse_answer_passes_filters_through():
    data, usage = driver.parse_response(CHAT, orjson.dumps(ANSWER), TARGET)
    assert data == ANSWER
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (20, 10, 16)
    filtered = dict(ANSWER, choices=[{"index": 0, "finish_reason": "content_filter", "message": {
        "role": "assistant", "content": None}, "content_filter_results": {
        "violence": {"filtered": True, "severity": "medium"}}}])
    data, _ = driver.parse_response(CHAT, orjson.dumps(filtered), TARGET)
    assert data["choices"][0]["finish_reason"] == "content_filter"


def chunk(choices, **extra) -> bytes:
    data = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "choices": choices, **extra}
    return b"data: " + orjson.dumps(data) + b"\n\n"


STREAM = (
    b'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,'
    b'"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}\n\n'
    + chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None,
              "content_filter_results": {}}])
    + chunk([{"index": 0, "delta": {"content": "Hello é"}, "finish_reason": None, "content_filter_results": FILTERS}])
    + chunk([{"index": 0, "finish_reason": None, "content_filter_offsets": {"check_offset": 0, "start_offset": 0,
                                                                            "end_offset": 7},
              "content_filter_results": FILTERS}])
    + chunk([{"index": 0, "delta": {}, "finish_reason": "content_filter", "content_filter_results": {}}])
    + chunk([], usage={"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14})
    + b"data: [DONE]\n\n"
)


def test_stream_one_byte_at_a_time():
    decoder = driver.stream_decoder(CHAT, TARGET)
    chunks = feed_bytewise(decoder, STREAM)
    assert chunks[0]["choices"] == [] and "prompt_filter_results" in chunks[0] and "usage" not in chunks[0]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Hello é"
    assert chunks[3]["choices"][0]["delta"] == {}  # a filter-only choice still has a delta for OpenAI clients
    assert chunks[4]["choices"][0]["finish_reason"] == "content_filter"
    assert chunks[-1]["usage"]["total_tokens"] == 14 and decoder.usage.prompt_tokens == 11


def test_stream_error_frame_raises():
    decoder = driver.stream_decoder(CHAT, TARGET)
    with pytest.raises(ProviderError) as err:
        decoder.feed(b'data: {"error":{"code":"server_error","message":"The server had an error"}}\n\n')
    assert err.value.message == "The server had an error"


# ---------------------------------------------------------------------------------------------------------- errors


def test_content_filter_error():
    body = orjson.dumps({"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
                   "Please modify your prompt and retry.", "type": None, "param": "prompt", "code": "content_filter",
        "status": 400, "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
            "hate": {"filtered": False, "severity": "safe"}, "jailbreak": {"filtered": True, "detected": True}}}}})
    error = driver.parse_error(400, CIMultiDict(), body)
    assert (error.status, error.type, error.code) == (400, "invalid_request_error", "content_filter")
    assert error.message.startswith("The response was filtered")


def test_rate_limit_and_other_errors():
    body = (b'{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI '
            b'API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please '
            b'retry after 6 seconds."}}')
    error = driver.parse_error(429, CIMultiDict({"retry-after": "6", "retry-after-ms": "5800"}), body)
    assert (error.status, error.type, error.code, error.retry_after) == (429, "rate_limit_exceeded",
                                                                         "rate_limit_exceeded", 6.0)
    assert "Please retry after 6 seconds" in error.message
    assert driver.parse_error(429, CIMultiDict({"retry-after-ms": "1500"}), body).retry_after == 1.5
    error = driver.parse_error(401, CIMultiDict(), b'{"error":{"code":"401","message":"Access denied due to invalid '
                                                   b'subscription key or wrong API endpoint."}}')
    assert (error.type, error.code) == ("authentication_error", None)
    error = driver.parse_error(404, CIMultiDict(), b'{"error":{"code":"DeploymentNotFound","message":"The API '
                                                   b'deployment for this resource does not exist."}}')
    assert (error.type, error.code) == ("not_found_error", "DeploymentNotFound")
    error = driver.parse_error(500, None, b"oops")
    assert (error.type, error.message) == ("api_error", "upstream answered 500")


# ---------------------------------------------------------------------------------------------------------- relay


def proxy_config(mock_url: str, route: str = CHAT, kind: str = "chat/completions") -> dict:
    return {"route_type": route, "auth": {"header_name": "api-key", "header_value": "az-key"},
            "model": {"provider": "azure", "name": "gpt-4o",
                      "options": {"upstream_url": f"{mock_url}/openai/deployments/gpt-4o-prod/{kind}",
                                  "azure_api_version": "2024-10-21"}}}


async def test_relay_chat_async_and_sync(mock_llm, relay):
    url = await relay(proxy_config(mock_llm.url))
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    mock_llm.enqueue(Reply(content="Hi from Azure", prompt_tokens=6, completion_tokens=3, cached_tokens=2))
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello"}], max_tokens=10)
    answer = raw.parse()
    assert answer.choices[0].message.content == "Hi from Azure"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (6, 3)
    assert answer.usage.prompt_tokens_details.cached_tokens == 2
    data = orjson.loads(raw.content)
    assert data["prompt_filter_results"][0]["content_filter_results"]["violence"]["filtered"] is False
    sent = mock_llm.requests[-1]
    assert sent.endpoint == "azure.chat"
    assert sent.query == {"api-version": "2024-10-21"} and sent.headers["api-key"] == "az-key"
    assert sent.json == {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 10}

    sync_client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    mock_llm.enqueue(Reply(finish_reason="content_filter", content=""))
    answer = await asyncio.to_thread(sync_client.chat.completions.create, model="gpt-4o",
                                     messages=[{"role": "user", "content": "x"}])
    assert answer.choices[0].finish_reason == "content_filter"


async def test_relay_streams_with_tools(mock_llm, relay):
    url = await relay(proxy_config(mock_llm.url))
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    mock_llm.enqueue(Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"}, "call_w1")], prompt_tokens=8))
    stream = await client.chat.completions.create(
        model="gpt-4o", stream=True, stream_options={"include_usage": True},
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        messages=[{"role": "user", "content": "weather in Oslo"}])
    chunks = [chunk async for chunk in stream]
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert calls[0].id == "call_w1" and "".join(tc.function.arguments for tc in calls) == '{"city":"Oslo"}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage.prompt_tokens == 8
    assert mock_llm.requests[-1].json["stream_options"] == {"include_usage": True}

    sync_client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    mock_llm.enqueue(Reply(content="a b c"))
    chunks = await asyncio.to_thread(lambda: list(sync_client.chat.completions.create(
        model="gpt-4o", stream=True, messages=[{"role": "user", "content": "x"}])))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b c"
    assert all(c.usage is None for c in chunks)
    assert chunks[0].choices == []  # Azure's prompt_filter_results chunk


async def test_relay_errors_completions_and_embeddings(mock_llm, relay):
    url = await relay(proxy_config(mock_llm.url))
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    mock_llm.enqueue(Reply(extra={"content_filter": {"violence": "high"}}))
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert err.value.code == "content_filter"
    mock_llm.enqueue(Reply.fail(429, retry_after=3))
    with pytest.raises(openai.RateLimitError) as err:
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert err.value.response.headers["retry-after"] == "3"
    assert "az-key" not in str(err.value)

    url = await relay(proxy_config(mock_llm.url, COMPLETIONS, "completions"))
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    mock_llm.enqueue(Reply(content="done"))
    completion = await client.completions.create(model="gpt-4o", prompt="Say done")
    assert completion.choices[0].text == "done" and mock_llm.requests[-1].endpoint == "azure.completions"

    url = await relay(proxy_config(mock_llm.url, EMBEDDINGS, "embeddings"))
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    result = await client.embeddings.create(model="gpt-4o", input=["one", "two"], dimensions=4)
    assert [len(d.embedding) for d in result.data] == [4, 4] and result.usage.prompt_tokens == 2
    assert mock_llm.requests[-1].endpoint == "azure.embeddings"

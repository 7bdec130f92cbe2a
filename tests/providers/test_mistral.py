"""Mistral driver: requests built, answers / streams / errors parsed, on Mistral's documented bodies.

Bodies come from Mistral's API reference and SDK models (mistralai/client-python: ChatCompletionRequest fields,
finish reasons stop/length/model_length/error/tool_calls, ToolChoiceEnum auto/none/any/required, UsageInfo with
prompt_tokens_details / num_cached_tokens), a recorded /v1/chat/completions answer and stream (usage in the last
chunk, then [DONE]) and Mistral's 422 / 401 / 429 error bodies. The end-to-end tests at the bottom drive the relay
(ProxyPolicy) with the openai SDK against the mock's Mistral format.
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
from tollgate.providers.mistral import tool_call_id

driver = driver_for("mistral")
TARGET = Target(provider="mistral", model="mistral-large-latest",
                auth={"header_name": "Authorization", "header_value": "Bearer mi-secret"})


def build(body, route=CHAT, stream=False, target=TARGET):
    request = driver.build_request(route, body, target, stream)
    return request, orjson.loads(request.body)


def feed_bytewise(decoder, data: bytes) -> list[dict]:
    chunks = []
    for i in range(len(data)):
        chunks += decoder.feed(data[i:i + 1])
    return chunks + decoder.close()


# ---------------------------------------------------------------------------------------------------------- requests


def test_chat_request_keeps_only_mistral_fields():
    request, payload = build({
        "model": "mistral-large-latest",
        "messages": [{"role": "developer", "content": "You are an assistant for the company Coca Cola"},
                     {"role": "user", "content": "hello", "name": "bob"},
                     {"role": "assistant", "content": "hello how can I help you", "refusal": None,
                      "reasoning_content": "hidden"},
                     {"role": "user", "content": "what is Coca Cola"}],
        "temperature": 0.7, "top_p": 1, "max_completion_tokens": 100, "seed": 42, "store": False, "user": "u1",
        "stream_options": {"include_usage": True}, "logprobs": False, "safe_prompt": True, "n": 1,
        "presence_penalty": 0.1, "stop": ["\n\n"], "response_format": {"type": "json_object"},
    }, stream=True)
    assert request.url == "https://api.mistral.ai/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer mi-secret"
    assert request.headers["Accept"] == "text/event-stream"
    assert payload == {
        "model": "mistral-large-latest",
        "messages": [{"role": "system", "content": "You are an assistant for the company Coca Cola"},
                     {"role": "user", "content": "hello"},
                     {"role": "assistant", "content": "hello how can I help you"},
                     {"role": "user", "content": "what is Coca Cola"}],
        "temperature": 0.7, "top_p": 1, "max_tokens": 100, "random_seed": 42, "safe_prompt": True, "n": 1,
        "presence_penalty": 0.1, "stop": ["\n\n"], "response_format": {"type": "json_object"}, "stream": True,
    }
    assert b"mi-secret" not in request.body


def test_options_are_defaults_and_mistral_names_pass():
    target = Target(provider="mistral", model=None, options={"max_tokens": 64, "temperature": 0.2, "top_p": 0.9,
                                                             "top_k": 5})
    _, payload = build({"model": "open-mistral-nemo", "messages": [{"role": "user", "content": "x"}],
                        "temperature": 1.0, "random_seed": 3, "stream": False}, target=target)
    assert payload == {"model": "open-mistral-nemo", "messages": [{"role": "user", "content": "x"}],
                       "temperature": 1.0, "random_seed": 3, "max_tokens": 64, "top_p": 0.9}


def test_tool_call_ids_become_nine_characters_consistently():
    assert tool_call_id("D681PevKs") == "D681PevKs"
    converted = tool_call_id("call_Z9a8b7c6d5e4f3g2h1")
    assert len(converted) == 9 and converted.isalnum() and converted == tool_call_id("call_Z9a8b7c6d5e4f3g2h1")
    assert tool_call_id("call_other") != converted
    _, payload = build({"messages": [
        {"role": "user", "content": "What's the status of my transaction T1001?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_Z9a8b7c6d5e4f3g2h1", "type": "function",
             "function": {"name": "retrieve_payment_status", "arguments": "{\"transaction_id\": \"T1001\"}"}}]},
        {"role": "tool", "tool_call_id": "call_Z9a8b7c6d5e4f3g2h1", "name": "retrieve_payment_status",
         "content": "{\"status\": \"Paid\"}"},
    ], "tools": [{"type": "function", "function": {"name": "retrieve_payment_status", "parameters": {
        "type": "object", "properties": {"transaction_id": {"type": "string"}}, "required": ["transaction_id"]}}}],
        "tool_choice": "required", "parallel_tool_calls": False})
    assert payload["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": converted, "type": "function",
         "function": {"name": "retrieve_payment_status", "arguments": "{\"transaction_id\": \"T1001\"}"}}]}
    assert payload["messages"][2] == {"role": "tool", "tool_call_id": converted, "name": "retrieve_payment_status",
                                      "content": "{\"status\": \"Paid\"}"}
    assert payload["tool_choice"] == "any"
    assert payload["parallel_tool_calls"] is False
    assert payload["tools"][0]["function"]["name"] == "retrieve_payment_status"


@pytest.mark.parametrize("choice, sent", [("auto", "auto"), ("none", "none"), ("required", "any"),
                                          ({"type": "function", "function": {"name": "f"}},
                                           {"type": "function", "function": {"name": "f"}})])
def test_tool_choice(choice, sent):
    _, payload = build({"messages": [{"role": "user", "content": "x"}], "tool_choice": choice,
                        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]})
    assert payload["tool_choice"] == sent


def test_images_pass_in_mistral_shape():
    content = [{"type": "text", "text": "What's in this image?"},
               {"type": "image_url", "image_url": {"url": "https://tripfixers.com/eiffel.jpg"}},
               {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ", "detail": "high"}}]
    _, payload = build({"model": "pixtral-12b-2409", "messages": [{"role": "user", "content": content}]})
    assert payload["messages"] == [{"role": "user", "content": content}]


def test_completions_and_embeddings_requests():
    request, payload = build({"model": "m", "prompt": ["Once upon a time"], "max_tokens": 10, "echo": False},
                             COMPLETIONS)
    assert request.url == "https://api.mistral.ai/v1/chat/completions"
    assert payload == {"model": "mistral-large-latest", "max_tokens": 10,
                       "messages": [{"role": "user", "content": "Once upon a time"}]}
    request, payload = build({"model": "mistral-embed", "input": ["Embed this sentence.", "As well as this one."],
                              "encoding_format": "float", "dimensions": 512, "user": "x"}, EMBEDDINGS,
                             target=Target(provider="mistral", model=None))
    assert request.url == "https://api.mistral.ai/v1/embeddings"
    assert payload == {"model": "mistral-embed", "input": ["Embed this sentence.", "As well as this one."],
                       "encoding_format": "float", "output_dimension": 512}
    for bad in ({"messages": []}, {"messages": [{"role": "function", "content": "x"}]}):
        with pytest.raises(ProviderError) as err:
            build(bad)
        assert err.value.status == 400
    with pytest.raises(ProviderError):
        build({"messages": [{"role": "user", "content": "x"}]}, "preserve")


def test_upstream_url_and_query_auth():
    target = Target(provider="mistral", model="m", options={"upstream_url": "http://mock/mistral/v1/chat/completions"},
                    auth={"param_name": "key", "param_value": "s3", "param_location": "query"})
    request, _ = build({"messages": [{"role": "user", "content": "x"}]}, target=target)
    assert request.url == "http://mock/mistral/v1/chat/completions?key=s3"


# ---------------------------------------------------------------------------------------------------------- answers

# A /v1/chat/completions answer as Mistral documents it (content shortened)
ANSWER = {"id": "b5899875951449e9a2997246a3a54d21", "object": "chat.completion", "created": 1732548590,
          "model": "mistral-large-latest",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "Coca-Cola, often referred to as Coke",
                                               "tool_calls": None}, "finish_reason": "length"}],
          "usage": {"prompt_tokens": 34, "total_tokens": 134, "completion_tokens": 100}}

TOOL_ANSWER = {"id": "a1b2", "object": "chat.completion", "created": 1, "model": "mistral-large-latest",
               "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                   "role": "assistant", "content": "", "prefix": False,
                   "tool_calls": [{"id": "D681PevKs", "function": {"name": "retrieve_payment_status",
                                                                  "arguments": "{\"transaction_id\": \"T1001\"}"},
                                   "index": 0},
                                  {"id": "t2Xe0xYz1", "type": "function",
                                   "function": {"name": "retrieve_payment_date",
                                                "arguments": {"transaction_id": "T1001"}}}]}}],
               "usage": {"prompt_tokens": 90, "total_tokens": 121, "completion_tokens": 31,
                         "prompt_tokens_details": {"cached_tokens": 64}}}


def test_parse_answer():
    data, usage = driver.parse_response(CHAT, orjson.dumps(ANSWER), TARGET)
    assert data == {"id": "b5899875951449e9a2997246a3a54d21", "object": "chat.completion", "created": 1732548590,
                    "model": "mistral-large-latest",
                    "choices": [{"index": 0, "message": {"role": "assistant",
                                                         "content": "Coca-Cola, often referred to as Coke"},
                                 "logprobs": None, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 34, "completion_tokens": 100, "total_tokens": 134}}
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (34, 100, 134)


def test_parse_tool_calls_cached_tokens_and_finish_reasons():
    data, usage = driver.parse_response(CHAT, orjson.dumps(TOOL_ANSWER), TARGET)
    message = data["choices"][0]["message"]
    assert message["tool_calls"] == [
        {"id": "D681PevKs", "type": "function",
         "function": {"name": "retrieve_payment_status", "arguments": "{\"transaction_id\": \"T1001\"}"}},
        {"id": "t2Xe0xYz1", "type": "function",
         "function": {"name": "retrieve_payment_date", "arguments": "{\"transaction_id\":\"T1001\"}"}}]
    assert data["choices"][0]["finish_reason"] == "tool_calls"
    assert usage.cached_tokens == 64 and data["usage"]["prompt_tokens_details"] == {"cached_tokens": 64}

    body = dict(ANSWER, choices=[{"index": 0, "finish_reason": "model_length", "message": {
        "role": "assistant", "content": [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]},
                                         {"type": "text", "text": "Final answer"}]}}],
                usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "num_cached_tokens": 3})
    data, usage = driver.parse_response(CHAT, orjson.dumps(body), TARGET)
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["choices"][0]["message"]["content"] == "Final answer"
    assert usage.cached_tokens == 3
    data, _ = driver.parse_response(COMPLETIONS, orjson.dumps(body), TARGET)
    assert data["object"] == "text_completion" and data["choices"][0]["text"] == "Final answer"
    body["choices"][0]["finish_reason"] = "error"
    with pytest.raises(ProviderError) as err:
        driver.parse_response(CHAT, orjson.dumps(body), TARGET)
    assert err.value.status == 502


def test_parse_embeddings():
    body = {"id": "cf8a2e6f", "object": "list", "data": [
        {"object": "embedding", "embedding": [-0.0165, 0.0703], "index": 0},
        {"object": "embedding", "embedding": [-0.0230, 0.0394], "index": 1}],
        "model": "mistral-embed", "usage": {"prompt_tokens": 15, "total_tokens": 15, "completion_tokens": 0}}
    data, usage = driver.parse_response(EMBEDDINGS, orjson.dumps(body), TARGET)
    assert data == body
    assert usage.prompt_tokens == 15 and usage.completion_tokens == 0


# ---------------------------------------------------------------------------------------------------------- streams

_HEAD = b'{"id":"f798ebd5c41a45d88bb079635121cade","object":"chat.completion.chunk","created":1732548656,' \
        b'"model":"mistral-large-latest","choices":'
TEXT_STREAM = b"".join(b"data: " + _HEAD + part + b"\n\n" for part in (
    b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}',
    b'[{"index":0,"delta":{"content":"C"},"finish_reason":null}]}',
    b'[{"index":0,"delta":{"content":"oca"},"finish_reason":null}]}',
    b'[{"index":0,"delta":{"content":"-Cola \\u00e9"},"finish_reason":null}]}',
    b'[{"index":0,"delta":{"content":"izable"},"finish_reason":"length"}],'
    b'"usage":{"prompt_tokens":34,"total_tokens":134,"completion_tokens":100}}',
)) + b"data: [DONE]\n\n"

TOOL_STREAM = b"".join(b"data: " + _HEAD + part + b"\n\n" for part in (
    b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}',
    b'[{"index":0,"delta":{"tool_calls":[{"id":"D681PevKs","function":{"name":"retrieve_payment_status",'
    b'"arguments":"{\\"transaction_id\\": \\"T1001\\"}"},"index":0},{"id":"Kx9wQ2mN4","function":'
    b'{"name":"retrieve_payment_date","arguments":"{\\"transaction_id\\": \\"T1001\\"}"},"index":0}]},'
    b'"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":90,"total_tokens":121,"completion_tokens":31}}',
)) + b"data: [DONE]\n\n"


def test_text_stream_one_byte_at_a_time_splits_the_usage_chunk():
    decoder = driver.stream_decoder(CHAT, TARGET)
    chunks = feed_bytewise(decoder, TEXT_STREAM)
    assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [
        {"role": "assistant", "content": ""}, {"content": "C"}, {"content": "oca"}, {"content": "-Cola é"},
        {"content": "izable"}]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, None, None, None, "length"]
    assert all("usage" not in c for c in chunks[:-1])
    assert chunks[-1] == {"id": "f798ebd5c41a45d88bb079635121cade", "object": "chat.completion.chunk",
                          "created": 1732548656, "model": "mistral-large-latest", "choices": [],
                          "usage": {"prompt_tokens": 34, "completion_tokens": 100, "total_tokens": 134}}
    assert decoder.usage.total_tokens == 134


def test_stream_chunks_come_out_as_frames_arrive():
    decoder = driver.stream_decoder(CHAT, TARGET)
    cut = TEXT_STREAM.index(b"data:", 10)
    assert len(decoder.feed(TEXT_STREAM[:cut])) == 1
    assert decoder.feed(b"") == []


def test_tool_stream_gets_openai_indexes_and_types():
    decoder = driver.stream_decoder(CHAT, TARGET)
    chunks = feed_bytewise(decoder, TOOL_STREAM.replace(b"\n", b"\r\n"))
    calls = chunks[1]["choices"][0]["delta"]["tool_calls"]
    assert calls == [
        {"index": 0, "id": "D681PevKs", "type": "function",
         "function": {"name": "retrieve_payment_status", "arguments": "{\"transaction_id\": \"T1001\"}"}},
        {"index": 1, "id": "Kx9wQ2mN4", "type": "function",
         "function": {"name": "retrieve_payment_date", "arguments": "{\"transaction_id\": \"T1001\"}"}}]
    assert chunks[1]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["prompt_tokens"] == 90


def test_completions_stream_and_error_finish():
    decoder = driver.stream_decoder(COMPLETIONS, TARGET)
    chunks = feed_bytewise(decoder, TEXT_STREAM)
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "Coca-Cola éizable"
    assert chunks[-1]["usage"]["completion_tokens"] == 100
    decoder = driver.stream_decoder(CHAT, TARGET)
    with pytest.raises(ProviderError) as err:
        decoder.feed(b"data: " + _HEAD + b'[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}\n\n')
    assert err.value.status == 502
    with pytest.raises(ProviderError):
        driver.stream_decoder(CHAT, TARGET).feed(b'data: {"object":"error","error":{"message":"boom"}}\n\n')


# ---------------------------------------------------------------------------------------------------------- errors


def test_errors():
    body = (b'{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","max_completion_tokens"],'
            b'"msg":"Extra inputs are not permitted","input":32000}]},"type":"invalid_request_error","param":null,'
            b'"code":null}')
    error = driver.parse_error(422, CIMultiDict(), body)
    assert (error.status, error.type) == (422, "invalid_request_error")
    assert error.message == "body.max_completion_tokens: Extra inputs are not permitted"
    error = driver.parse_error(422, None, b'{"detail":[{"type":"float_type","loc":["body","top_p"],'
                                          b'"msg":"Input should be a valid number","input":null}]}')
    assert error.message == "body.top_p: Input should be a valid number"
    error = driver.parse_error(429, CIMultiDict({"Retry-After": "4"}), b'{"message":"Requests rate limit exceeded"}')
    assert (error.type, error.code, error.retry_after, error.message) == (
        "rate_limit_exceeded", "rate_limit_exceeded", 4.0, "Requests rate limit exceeded")
    error = driver.parse_error(401, None, b'{"message":"Unauthorized","request_id":"a1"}')
    assert (error.type, error.message) == ("authentication_error", "Unauthorized")
    error = driver.parse_error(400, None, b'{"object":"error","message":"Tool call id was call_1 but must be a-z, '
                                          b'A-Z, 0-9, with a length of 9.","type":"invalid_request_error",'
                                          b'"param":null,"code":"3280"}')
    assert error.code == "3280" and error.message.startswith("Tool call id was call_1")
    error = driver.parse_error(502, None, b"bad gateway")
    assert (error.type, error.message) == ("api_error", "upstream answered 502")


# ---------------------------------------------------------------------------------------------------------- relay


def proxy_config(mock_url: str, route: str = CHAT, path: str = "/mistral/v1/chat/completions") -> dict:
    return {"route_type": route, "auth": {"header_name": "Authorization", "header_value": "Bearer mi-key"},
            "model": {"provider": "mistral", "name": "mistral-large-latest",
                      "options": {"upstream_url": mock_url + path}}}


async def test_relay_chat_async_sync_and_strict_fields(mock_llm, relay):
    url = await relay(proxy_config(mock_llm.url))
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    mock_llm.enqueue(Reply(content="Bonjour", prompt_tokens=9, completion_tokens=2, cached_tokens=4))
    answer = await client.chat.completions.create(
        model="mistral-large-latest", messages=[{"role": "user", "content": "salut", "name": "bob"}],
        max_completion_tokens=20, seed=1, user="u1", store=False, metadata={"a": "b"})
    assert answer.choices[0].message.content == "Bonjour"
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (9, 2)
    assert answer.usage.prompt_tokens_details.cached_tokens == 4
    sent = mock_llm.requests[-1]
    assert sent.endpoint == "mistral.chat" and sent.status == 200
    assert sent.headers["Authorization"] == "Bearer mi-key"
    assert sent.json == {"model": "mistral-large-latest", "messages": [{"role": "user", "content": "salut"}],
                         "max_tokens": 20, "random_seed": 1, "metadata": {"a": "b"}}

    sync_client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    mock_llm.enqueue(Reply(content="too long", finish_reason="model_length"))
    answer = await asyncio.to_thread(sync_client.chat.completions.create, model="mistral-large-latest",
                                     messages=[{"role": "user", "content": "x"}])
    assert answer.choices[0].finish_reason == "length"


async def test_relay_stream_tools_and_round_trip(mock_llm, relay):
    url = await relay(proxy_config(mock_llm.url))
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    mock_llm.enqueue(Reply(content="alpha beta gamma", prompt_tokens=5, completion_tokens=3))
    stream = await client.chat.completions.create(model="mistral-large-latest", stream=True,
                                                  stream_options={"include_usage": True},
                                                  messages=[{"role": "user", "content": "go"}])
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "alpha beta gamma"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 8
    assert "stream_options" not in mock_llm.requests[-1].json

    tools = [{"type": "function", "function": {"name": "retrieve_payment_status", "parameters": {
        "type": "object", "properties": {"transaction_id": {"type": "string"}}}}}]
    mock_llm.enqueue(Reply(tool_calls=[ToolCall("retrieve_payment_status", {"transaction_id": "T1001"})]))
    sync_client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)

    def consume():
        stream = sync_client.chat.completions.create(model="mistral-large-latest", stream=True, tools=tools,
                                                     tool_choice="required",
                                                     messages=[{"role": "user", "content": "status of T1001?"}])
        return list(stream)

    chunks = await asyncio.to_thread(consume)
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert len(calls) == 1 and calls[0].index == 0 and calls[0].type == "function"
    assert len(calls[0].id) == 9 and calls[0].function.arguments == '{"transaction_id":"T1001"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls" and chunks[-1].usage is None
    assert mock_llm.requests[-1].json["tool_choice"] == "any"

    # The client sends the conversation back with an OpenAI-style id: Mistral only takes 9-character ids.
    answer = await client.chat.completions.create(model="mistral-large-latest", tools=tools, messages=[
        {"role": "user", "content": "status of T1001?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_abc123XYZ", "type": "function", "function": {
            "name": "retrieve_payment_status", "arguments": '{"transaction_id":"T1001"}'}}]},
        {"role": "tool", "tool_call_id": "call_abc123XYZ", "content": '{"status":"Paid"}'}])
    assert answer.choices[0].message.content
    sent = mock_llm.requests[-1].json["messages"]
    assert sent[1]["tool_calls"][0]["id"] == sent[2]["tool_call_id"] == tool_call_id("call_abc123XYZ")


async def test_relay_errors_and_embeddings(mock_llm, relay):
    url = await relay(proxy_config(mock_llm.url))
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    mock_llm.enqueue(Reply.fail(429, retry_after=5))
    with pytest.raises(openai.RateLimitError) as err:
        await client.chat.completions.create(model="mistral-large-latest", messages=[{"role": "user", "content": "x"}])
    assert err.value.body["message"] == "Requests rate limit exceeded"
    assert err.value.response.headers["retry-after"] == "5"

    config = proxy_config(mock_llm.url, EMBEDDINGS, "/mistral/v1/embeddings")
    config["model"]["name"] = "mistral-embed"
    url = await relay(config)
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    result = await client.embeddings.create(model="mistral-embed", input="Embed this sentence.", dimensions=16,
                                            encoding_format="float")
    assert len(result.data[0].embedding) == 16 and result.usage.prompt_tokens == 4
    assert mock_llm.requests[-1].json == {"model": "mistral-embed", "input": "Embed this sentence.",
                                          "encoding_format": "float", "output_dimension": 16}

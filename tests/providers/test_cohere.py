"""Cohere v2 driver: requests built, answers / streams / errors parsed, on Cohere's documented bodies.

Bodies come from Cohere's API reference (cohere-openapi.yaml in cohere-ai/cohere-developer-experience: the chatv2
"Default", "Tools" and streaming examples, the embedv2 example, the error responses) and the v2 streaming guide.
The end-to-end tests at the bottom drive the relay (ProxyPolicy) with the openai SDK against the mock's Cohere format.
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

driver = driver_for("cohere")
TARGET = Target(provider="cohere", model="command-a-03-2025",
                auth={"header_name": "Authorization", "header_value": "Bearer co-secret"})


def build(body, route=CHAT, stream=False, target=TARGET):
    request = driver.build_request(route, body, target, stream)
    return request, orjson.loads(request.body)


def feed_bytewise(decoder, data: bytes) -> list[dict]:
    chunks = []
    for i in range(len(data)):
        chunks += decoder.feed(data[i:i + 1])
    return chunks + decoder.close()


def sse(events: list[dict]) -> bytes:
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events)


# ---------------------------------------------------------------------------------------------------------- requests


def test_chat_request_url_auth_and_plain_messages():
    request, payload = build({"model": "command-a-03-2025", "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Tell me about LLMs", "name": "bob"},
    ]})
    assert request.method == "POST"
    assert request.url == "https://api.cohere.com/v2/chat"
    assert request.headers["Authorization"] == "Bearer co-secret"
    assert request.headers["Accept"] == "application/json"
    assert payload == {"model": "command-a-03-2025", "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Tell me about LLMs"},
    ]}
    assert b"co-secret" not in request.body


def test_chat_request_parameters_renamed_and_options_as_defaults():
    target = Target(provider="cohere", model="command-r", options={"max_tokens": 99, "temperature": 0.1,
                                                                   "top_p": 0.5, "top_k": 40})
    _, payload = build({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 256,
                        "temperature": 0.7, "stop": "END", "seed": 7, "presence_penalty": 0.2, "user": "u-1",
                        "logprobs": True, "stream_options": {"include_usage": True}}, stream=True, target=target)
    assert payload == {"model": "command-r", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 256,
                       "temperature": 0.7, "p": 0.5, "k": 40, "stop_sequences": ["END"], "seed": 7,
                       "presence_penalty": 0.2, "stream": True}
    _, payload = build({"messages": [{"role": "user", "content": "hi"}], "top_p": 0.9, "top_k": 3,
                        "stop": ["a", "b"], "max_tokens": 5}, target=target)
    assert (payload["p"], payload["k"], payload["stop_sequences"], payload["max_tokens"]) == (0.9, 3, ["a", "b"], 5)


def test_images_and_developer_role():
    _, payload = build({"messages": [
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [
            {"type": "text", "text": "Describe"},
            {"type": "image_url", "image_url": {"url": "https://cohere.com/favicon-32x32.png", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]},
    ]})
    assert payload["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "Describe"},
            {"type": "image_url", "image_url": {"url": "https://cohere.com/favicon-32x32.png", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]},
    ]
    with pytest.raises(ProviderError) as err:
        build({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]})
    assert err.value.status == 400


TOOLS = [{"type": "function", "function": {
    "name": "query_daily_sales_report",
    "description": "Connects to a database to retrieve overall sales volumes and sales information for a given day.",
    "parameters": {"type": "object", "properties": {"day": {"type": "string"}}, "required": ["day"]}}},
    {"type": "function", "function": {"name": "query_product_catalog", "strict": True,
                                      "parameters": {"type": "object",
                                                     "properties": {"category": {"type": "string"}}}}}]


def test_tools_tool_calls_and_tool_results():
    _, payload = build({"messages": [
        {"role": "user", "content": "Sales summary for 29th September 2023?"},
        {"role": "assistant", "content": "I will look up the sales report.", "tool_calls": [
            {"id": "query_daily_sales_report_hgxxmkby3wta", "type": "function",
             "function": {"name": "query_daily_sales_report", "arguments": "{\"day\": \"2023-09-29\"}"}}]},
        {"role": "tool", "tool_call_id": "query_daily_sales_report_hgxxmkby3wta",
         "content": "{\"total_sales_amount\": 10000}"},
        {"role": "tool", "tool_call_id": "x2", "content": [{"type": "text", "text": "ok"}]},
    ], "tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False})
    assert payload["messages"][1] == {"role": "assistant", "tool_plan": "I will look up the sales report.",
                                      "tool_calls": [{"id": "query_daily_sales_report_hgxxmkby3wta",
                                                      "type": "function",
                                                      "function": {"name": "query_daily_sales_report",
                                                                   "arguments": "{\"day\": \"2023-09-29\"}"}}]}
    assert payload["messages"][2] == {"role": "tool", "tool_call_id": "query_daily_sales_report_hgxxmkby3wta",
                                      "content": "{\"total_sales_amount\": 10000}"}
    assert payload["messages"][3]["content"] == [{"type": "text", "text": "ok"}]
    assert payload["tools"][0] == {"type": "function", "function": {
        "name": "query_daily_sales_report", "description": TOOLS[0]["function"]["description"],
        "parameters": TOOLS[0]["function"]["parameters"]}}
    assert payload["tools"][1]["function"] == {"name": "query_product_catalog",
                                               "parameters": TOOLS[1]["function"]["parameters"]}
    assert payload["strict_tools"] is True
    assert payload["tool_choice"] == "REQUIRED"
    assert "parallel_tool_calls" not in payload


@pytest.mark.parametrize("choice, expected, tools", [
    ("auto", None, 2), ("none", "NONE", 2), ("required", "REQUIRED", 2),
    ({"type": "function", "function": {"name": "query_product_catalog"}}, "REQUIRED", 1),
])
def test_tool_choice(choice, expected, tools):
    _, payload = build({"messages": [{"role": "user", "content": "x"}], "tools": TOOLS, "tool_choice": choice})
    assert payload.get("tool_choice") == expected
    assert len(payload["tools"]) == tools
    with pytest.raises(ProviderError):
        build({"messages": [{"role": "user", "content": "x"}], "tools": TOOLS,
               "tool_choice": {"type": "function", "function": {"name": "missing"}}})


def test_response_format_and_refusals():
    _, payload = build({"messages": [{"role": "user", "content": "JSON"}],
                        "response_format": {"type": "json_schema",
                                            "json_schema": {"name": "p", "schema": {"type": "object"}}}})
    assert payload["response_format"] == {"type": "json_object", "json_schema": {"type": "object"}}
    _, payload = build({"messages": [{"role": "user", "content": "JSON"}], "response_format": {"type": "text"}})
    assert "response_format" not in payload
    for bad in ({"messages": [{"role": "user", "content": "x"}], "n": 2}, {"messages": []},
                {"messages": [{"role": "function", "content": "x"}]}):
        with pytest.raises(ProviderError) as err:
            build(bad)
        assert err.value.status == 400


def test_completions_route_is_one_user_message():
    request, payload = build({"model": "command-r", "prompt": "Say this is a test", "max_tokens": 7}, COMPLETIONS,
                             stream=True, target=Target(provider="cohere", model=None))
    assert request.url == "https://api.cohere.com/v2/chat"
    assert payload == {"model": "command-r", "messages": [{"role": "user", "content": "Say this is a test"}],
                       "max_tokens": 7, "stream": True}


def test_embed_request_and_upstream_url():
    target = Target(provider="cohere", model="embed-v4.0", options={"upstream_url": "http://mock/v2/embed"})
    request, payload = build({"input": ["hello", "goodbye"], "dimensions": 256}, EMBEDDINGS, target=target)
    assert request.url == "http://mock/v2/embed"
    assert payload == {"model": "embed-v4.0", "texts": ["hello", "goodbye"], "input_type": "search_document",
                       "embedding_types": ["float"], "output_dimension": 256}
    _, payload = build({"input": "hi", "encoding_format": "base64", "input_type": "search_query"}, EMBEDDINGS)
    assert (payload["texts"], payload["input_type"], payload["embedding_types"]) == (["hi"], "search_query",
                                                                                      ["base64"])
    with pytest.raises(ProviderError):
        build({"input": [[1, 2, 3]]}, EMBEDDINGS)
    with pytest.raises(ProviderError) as err:
        build({"messages": []}, "preserve")
    assert err.value.status == 400


# ---------------------------------------------------------------------------------------------------------- answers

# cohere-openapi.yaml, chatv2 "Default" example response (text shortened)
DEFAULT_RESPONSE = {
    "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
    "message": {"role": "assistant", "content": [{"type": "text", "text": "LLMs stand for Large Language Models."}]},
    "finish_reason": "COMPLETE",
    "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 418},
              "tokens": {"input_tokens": 71, "output_tokens": 418}},
}

# cohere-openapi.yaml, chatv2 "Tools" example response
TOOLS_RESPONSE = {
    "id": "9e5f00aa-bf1e-481a-abe3-0eceac18c3ec",
    "message": {
        "role": "assistant",
        "tool_plan": "I will first find the sales summary for 29th September 2023. Then, I will find the details of "
                     "the products in the 'Electronics' category.",
        "tool_calls": [
            {"id": "query_daily_sales_report_hgxxmkby3wta", "type": "function",
             "function": {"name": "query_daily_sales_report", "arguments": "{\"day\": \"2023-09-29\"}"}},
            {"id": "query_product_catalog_rpg0z5h8yyz2", "type": "function",
             "function": {"name": "query_product_catalog", "arguments": "{\"category\": \"Electronics\"}"}},
        ],
    },
    "finish_reason": "TOOL_CALL",
    "usage": {"billed_units": {"input_tokens": 127, "output_tokens": 69},
              "tokens": {"input_tokens": 1032, "output_tokens": 124}},
}


def test_parse_text_answer_uses_tokens_not_billed_units():
    data, usage = driver.parse_response(CHAT, orjson.dumps(DEFAULT_RESPONSE), TARGET)
    assert data["object"] == "chat.completion"
    assert data["id"] == "c14c80c3-18eb-4519-9460-6c92edd8cfb4"
    assert data["model"] == "command-a-03-2025"
    assert data["choices"] == [{"index": 0, "message": {"role": "assistant",
                                                        "content": "LLMs stand for Large Language Models."},
                                "logprobs": None, "finish_reason": "stop"}]
    assert data["usage"] == {"prompt_tokens": 71, "completion_tokens": 418, "total_tokens": 489}
    assert (usage.prompt_tokens, usage.completion_tokens, usage.estimated) == (71, 418, False)


def test_parse_tool_calls_answer():
    data, usage = driver.parse_response(CHAT, orjson.dumps(TOOLS_RESPONSE), TARGET)
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == TOOLS_RESPONSE["message"]["tool_plan"]
    assert choice["message"]["tool_calls"] == TOOLS_RESPONSE["message"]["tool_calls"]
    assert (usage.prompt_tokens, usage.completion_tokens) == (1032, 124)


def test_parse_thinking_billed_units_fallback_cached_and_finish_reasons():
    body = {"id": "x", "finish_reason": "MAX_TOKENS",
            "message": {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm"},
                                                         {"type": "text", "text": "A"},
                                                         {"type": "text", "text": "B"}]},
            "usage": {"billed_units": {"input_tokens": 3, "output_tokens": 2}, "cached_tokens": 1}}
    data, usage = driver.parse_response(CHAT, orjson.dumps(body), TARGET)
    assert data["choices"][0]["message"]["content"] == "AB"
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
                             "prompt_tokens_details": {"cached_tokens": 1}}
    body["finish_reason"] = "STOP_SEQUENCE"
    assert driver.parse_response(CHAT, orjson.dumps(body), TARGET)[0]["choices"][0]["finish_reason"] == "stop"
    data, _ = driver.parse_response(COMPLETIONS, orjson.dumps(body), TARGET)
    assert data["object"] == "text_completion"
    assert data["choices"][0]["text"] == "AB"
    body["finish_reason"] = "ERROR"
    with pytest.raises(ProviderError) as err:
        driver.parse_response(CHAT, orjson.dumps(body), TARGET)
    assert err.value.status == 502
    with pytest.raises(ProviderError):
        driver.parse_response(CHAT, b"<html>", TARGET)


def test_parse_embed_answer():
    # cohere-openapi.yaml, embedv2 example (vectors shortened)
    body = {"id": "da6e531f-54c6-4a73-bf92-f60566d8d753", "texts": ["hello", "goodbye"],
            "embeddings": {"float": [[0.016296387, -0.008354187], [0.030441284, 0.030960083]]},
            "meta": {"api_version": {"version": "2", "is_experimental": True}, "billed_units": {"input_tokens": 2}},
            "response_type": "embeddings_by_type"}
    data, usage = driver.parse_response(EMBEDDINGS, orjson.dumps(body), TARGET)
    assert data == {"object": "list", "model": "command-a-03-2025",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.016296387, -0.008354187]},
                             {"object": "embedding", "index": 1, "embedding": [0.030441284, 0.030960083]}],
                    "usage": {"prompt_tokens": 2, "total_tokens": 2}}
    assert usage.prompt_tokens == 2


# ---------------------------------------------------------------------------------------------------------- streams

# cohere-openapi.yaml, chatv2 streaming example (content shortened)
TEXT_STREAM = [
    {"type": "message-start", "id": "29f14a5a-11de-4cae-9800-25e4747408ea",
     "delta": {"message": {"role": "assistant"}}},
    {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
    {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "LL"}}}},
    {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Ms"}}}},
    {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": " é."}}}},
    {"type": "content-end", "index": 0},
    {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": {
        "billed_units": {"input_tokens": 5, "output_tokens": 26},
        "tokens": {"input_tokens": 71, "output_tokens": 26}}}},
]

# cohere-openapi.yaml, chatv2 tools streaming example (plan and argument fragments shortened)
TOOL_STREAM = [
    {"type": "message-start", "id": "2edfdf70-019c-4f7a-be20-3cdbfaa3dca6",
     "delta": {"message": {"role": "assistant"}}},
    {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will use"}}},
    {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": " the tools."}}},
    {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
        "id": "query_daily_sales_report_j3f0adww9pmr", "type": "function",
        "function": {"name": "query_daily_sales_report", "arguments": ""}}}}},
    {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": "{\""}}}}},
    {"type": "tool-call-delta", "index": 0,
     "delta": {"message": {"tool_calls": {"function": {"arguments": "day\": \"2023-09-29\"}"}}}}},
    {"type": "tool-call-end", "index": 0},
    {"type": "tool-call-start", "index": 1, "delta": {"message": {"tool_calls": {
        "id": "query_product_catalog_c66nf11r6s8g", "type": "function",
        "function": {"name": "query_product_catalog", "arguments": ""}}}}},
    {"type": "tool-call-delta", "index": 1,
     "delta": {"message": {"tool_calls": {"function": {"arguments": "{\"category\": \"Electronics\"}"}}}}},
    {"type": "tool-call-end", "index": 1},
    {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": {
        "billed_units": {"input_tokens": 126, "output_tokens": 84},
        "tokens": {"input_tokens": 1589, "output_tokens": 135}}}},
]


def test_text_stream_fed_one_byte_at_a_time():
    decoder = driver.stream_decoder(CHAT, TARGET)
    chunks = feed_bytewise(decoder, sse(TEXT_STREAM))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert {c["id"] for c in chunks} == {"29f14a5a-11de-4cae-9800-25e4747408ea"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "LLMs é."
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and finish[0]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {"prompt_tokens": 71, "completion_tokens": 26,
                                                                   "total_tokens": 97}
    assert decoder.usage.prompt_tokens == 71


def test_stream_chunks_come_out_as_frames_arrive():
    decoder = driver.stream_decoder(CHAT, TARGET)
    data = sse(TEXT_STREAM)
    first_delta = data.index(b"LL")
    assert decoder.feed(data[:first_delta]) != []  # message-start already translated
    out = decoder.feed(data[first_delta:data.index(b"\n\n", first_delta) + 2])
    assert [c["choices"][0]["delta"] for c in out] == [{"content": "LL"}]


def test_tool_stream_in_odd_splits():
    decoder = driver.stream_decoder(CHAT, TARGET)
    data = sse(TOOL_STREAM).replace(b"\n", b"\r\n")
    chunks = []
    for i in range(0, len(data), 7):
        chunks += decoder.feed(data[i:i + 7])
    chunks += decoder.close()
    plan = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert plan == "I will use the tools."
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for call in (chunk["choices"][0]["delta"].get("tool_calls") or []) if chunk["choices"] else []:
            entry = calls.setdefault(call["index"], {"id": None, "name": "", "arguments": ""})
            entry["id"] = call.get("id") or entry["id"]
            entry["name"] += call.get("function", {}).get("name") or ""
            entry["arguments"] += call.get("function", {}).get("arguments") or ""
    assert calls == {0: {"id": "query_daily_sales_report_j3f0adww9pmr", "name": "query_daily_sales_report",
                         "arguments": "{\"day\": \"2023-09-29\"}"},
                     1: {"id": "query_product_catalog_c66nf11r6s8g", "name": "query_product_catalog",
                         "arguments": "{\"category\": \"Electronics\"}"}}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert decoder.usage.prompt_tokens == 1589 and decoder.usage.completion_tokens == 135


def test_completions_stream_and_done_marker():
    decoder = driver.stream_decoder(COMPLETIONS, TARGET)
    chunks = feed_bytewise(decoder, sse(TEXT_STREAM) + b"data: [DONE]\n\n")
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "LLMs é."
    assert chunks[-1]["usage"]["total_tokens"] == 97


def test_stream_error_event_raises():
    decoder = driver.stream_decoder(CHAT, TARGET)
    decoder.feed(sse(TEXT_STREAM[:3]))
    with pytest.raises(ProviderError) as err:
        decoder.feed(sse([{"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "model overloaded"}}]))
    assert err.value.status == 502 and err.value.message == "model overloaded"
    with pytest.raises(ProviderError):
        driver.stream_decoder(CHAT, TARGET).feed(b"data: {not json\n\n")


# ---------------------------------------------------------------------------------------------------------- errors


def test_errors():
    error = driver.parse_error(429, CIMultiDict({"Retry-After": "3"}),
                               b'{"id":"abc","message":"You are using a Trial key"}')
    assert (error.status, error.type, error.code, error.retry_after) == (429, "rate_limit_exceeded",
                                                                         "rate_limit_exceeded", 3.0)
    assert error.message == "You are using a Trial key"
    error = driver.parse_error(401, {}, b'{"message":"invalid api token"}')
    assert (error.status, error.type, error.message) == (401, "authentication_error", "invalid api token")
    error = driver.parse_error(400, {}, b'{"id":"1","message":"invalid request: message must be at least 1 token"}')
    assert error.type == "invalid_request_error" and error.message.startswith("invalid request")
    error = driver.parse_error(503, None, b"<html>busy</html>")
    assert (error.status, error.type, error.message) == (503, "api_error", "upstream answered 503")


# ---------------------------------------------------------------------------------------------------------- relay


def proxy_config(mock_url: str, route: str = CHAT, path: str = "/v2/chat") -> dict:
    return {"route_type": route, "auth": {"header_name": "Authorization", "header_value": "Bearer co-key"},
            "model": {"provider": "cohere", "name": "command-a-03-2025",
                      "options": {"upstream_url": mock_url + path, "top_k": 10}}}


async def test_relay_chat_async_and_sync(mock_llm, relay):
    url = await relay(proxy_config(mock_llm.url))
    mock_llm.enqueue(Reply(content="Hello from Cohere", prompt_tokens=12, completion_tokens=4,
                           extra={"billed_input_tokens": 3}))
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    answer = await client.chat.completions.create(
        model="command-a-03-2025", messages=[{"role": "system", "content": "Be nice"},
                                             {"role": "user", "content": "hi"}], top_p=0.5, max_tokens=50)
    assert answer.choices[0].message.content == "Hello from Cohere"
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (12, 4, 16)
    sent = mock_llm.requests[-1]
    assert sent.endpoint == "cohere.chat" and sent.headers["Authorization"] == "Bearer co-key"
    assert sent.json == {"model": "command-a-03-2025", "messages": [{"role": "system", "content": "Be nice"},
                                                                     {"role": "user", "content": "hi"}],
                         "max_tokens": 50, "p": 0.5, "k": 10}
    assert relay.contexts[-1].usage.prompt_tokens == 12

    sync_client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    mock_llm.enqueue(Reply(content="sync answer"))
    answer = await asyncio.to_thread(sync_client.chat.completions.create, model="command-a-03-2025",
                                     messages=[{"role": "user", "content": "hello there"}])
    assert answer.choices[0].message.content == "sync answer"
    assert answer.usage.prompt_tokens == 2  # the mock counted "hello there"


async def test_relay_stream_with_usage_and_tool_calls(mock_llm, relay):
    url = await relay(proxy_config(mock_llm.url))
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    mock_llm.enqueue(Reply(content="one two three", chunks=3, prompt_tokens=7, completion_tokens=3))
    stream = await client.chat.completions.create(model="command-a-03-2025", stream=True,
                                                  stream_options={"include_usage": True},
                                                  messages=[{"role": "user", "content": "count"}])
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.prompt_tokens == 7 and chunks[-1].usage.completion_tokens == 3
    assert mock_llm.requests[-1].json["stream"] is True

    mock_llm.enqueue(Reply(tool_calls=[ToolCall("get_weather", {"location": "Toronto"}, "get_weather_nsz5zm3w56q3")],
                           content="I will check the weather."))
    stream = await client.chat.completions.create(
        model="command-a-03-2025", stream=True, tools=[{"type": "function", "function": {
            "name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}],
        tool_choice="required", messages=[{"role": "user", "content": "weather in Toronto?"}])
    chunks = [chunk async for chunk in stream]
    assert all(c.usage is None for c in chunks)  # not asked for: the relay drops the usage chunk
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert calls[0].id == "get_weather_nsz5zm3w56q3" and calls[0].function.name == "get_weather"
    assert "".join(tc.function.arguments or "" for tc in calls) == '{"location":"Toronto"}'
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "I will check the weather."
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    sent = mock_llm.requests[-1].json
    assert sent["tool_choice"] == "REQUIRED"
    assert sent["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}


async def test_relay_tool_round_trip_and_errors(mock_llm, relay):
    url = await relay(proxy_config(mock_llm.url))
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    mock_llm.enqueue(Reply(tool_calls=[ToolCall("get_weather", {"location": "Paris"}, "get_weather_abc")]))
    answer = await client.chat.completions.create(model="command-a-03-2025",
                                                  messages=[{"role": "user", "content": "weather?"}])
    call = answer.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == ("get_weather_abc", "get_weather",
                                                                       '{"location":"Paris"}')
    assert answer.choices[0].finish_reason == "tool_calls"
    await client.chat.completions.create(model="command-a-03-2025", messages=[
        {"role": "user", "content": "weather?"},
        answer.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "{\"temp\": 21}"}])
    sent = mock_llm.requests[-1].json["messages"]
    assert sent[1] == {"role": "assistant", "tool_calls": [{"id": "get_weather_abc", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"location":"Paris"}'}}]}
    assert sent[2] == {"role": "tool", "tool_call_id": "get_weather_abc", "content": "{\"temp\": 21}"}

    mock_llm.enqueue(Reply.fail(429, retry_after=2))
    with pytest.raises(openai.RateLimitError) as err:
        await client.chat.completions.create(model="command-a-03-2025", messages=[{"role": "user", "content": "x"}])
    assert err.value.response.headers["retry-after"] == "2"
    assert "Trial key" in err.value.message and "co-key" not in err.value.message


async def test_relay_embeddings(mock_llm, relay):
    config = proxy_config(mock_llm.url, EMBEDDINGS, "/v2/embed")
    config["model"]["name"] = "embed-v4.0"
    url = await relay(config)
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    result = await client.embeddings.create(model="embed-v4.0", input=["hello world", "goodbye"], dimensions=8)
    assert [len(item.embedding) for item in result.data] == [8, 8]
    assert result.usage.prompt_tokens == 3
    assert mock_llm.requests[-1].json == {"model": "embed-v4.0", "texts": ["hello world", "goodbye"],
                                          "input_type": "search_document", "embedding_types": ["base64"],
                                          "output_dimension": 8}  # the SDK asks for base64 by default

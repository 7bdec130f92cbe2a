"""The Anthropic driver on Anthropic's documented bodies (pure functions, no I/O).

Sources of the bodies below:
* Messages API reference / "How to implement tool use" (docs.anthropic.com, platform.claude.com): the request and
  ``message`` shapes, ``tool_use`` / ``tool_result`` blocks, image ``base64`` and ``url`` sources;
* "Streaming messages": the event flow and the ``event: error`` / ``overloaded_error`` frame;
* "Errors": ``{"type": "error", "error": {"type", "message"}, "request_id"}`` and the type per HTTP status;
* anthropics/anthropic-sdk-python ``tests/lib/streaming/fixtures/*.txt`` (basic_response, tool_use_response,
  message_delta_fields_response, usage_omitted_with_optional_fields_response, refusal_response): recorded streams,
  copied verbatim below.
"""

from __future__ import annotations

import orjson
import pytest

from tollgate.providers import driver_for
from tollgate.providers.anthropic import AnthropicDriver, finish_reason_of, usage_of
from tollgate.providers.base import CHAT, COMPLETIONS, EMBEDDINGS, ProviderError, Target

SECRET = "sk-ant-api03-SECRETSECRETSECRET"


def target(**options) -> Target:
    return Target(provider="anthropic", model="claude-sonnet-4-5", options=options,
                  auth={"header_name": "x-api-key", "header_value": SECRET})


@pytest.fixture
def driver() -> AnthropicDriver:
    return driver_for("anthropic")  # the registry finds this module


def body_of(request) -> dict:
    return orjson.loads(request.body)


# ------------------------------------------------------------------------------------------------------------------
# requests
# ------------------------------------------------------------------------------------------------------------------


def test_basic_request_url_headers_and_defaults(driver):
    req = driver.build_request(CHAT, {"model": "ignored-when-configured", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello, Claude"},
    ]}, target(), stream=False)
    assert req.method == "POST"
    assert req.url == "https://api.anthropic.com/v1/messages"
    assert req.headers["x-api-key"] == SECRET
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert req.headers["Content-Type"] == "application/json"
    assert body_of(req) == {
        "model": "claude-sonnet-4-5",
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Hello, Claude"}],
        "max_tokens": 4096,  # Anthropic requires it; the documented default when neither request nor config set it
    }
    assert SECRET.encode() not in req.body


def test_model_from_body_when_not_configured(driver):
    req = driver.build_request(CHAT, {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]},
                               Target("anthropic", None), stream=False)
    assert body_of(req)["model"] == "claude-haiku-4-5"


def test_options_are_defaults_and_the_request_wins(driver):
    t = target(max_tokens=512, temperature=0.2, top_p=0.9, top_k=40, anthropic_version="2024-01-01",
               upstream_url="http://mock:9000/v1/messages")
    req = driver.build_request(CHAT, {"messages": [{"role": "user", "content": "hi"}]}, t, stream=True)
    body = body_of(req)
    assert req.url == "http://mock:9000/v1/messages"
    assert req.headers["anthropic-version"] == "2024-01-01"
    assert req.headers["Accept"] == "text/event-stream"
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["top_k"]) == (512, 0.2, 0.9, 40)
    assert body["stream"] is True

    req = driver.build_request(CHAT, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100,
                                      "max_completion_tokens": 50, "temperature": 0.7, "top_p": 0.5,
                                      "stop": "END", "user": "user-42"}, t, stream=False)
    body = body_of(req)
    assert body["max_tokens"] == 50  # max_completion_tokens is the newer name and wins
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.7, 0.5, 40)
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "user-42"}
    assert "stream" not in body

    body = body_of(driver.build_request(CHAT, {"messages": [{"role": "user", "content": "hi"}],
                                               "stop": ["\n\nHuman:", "###"]}, t, stream=False))
    assert body["stop_sequences"] == ["\n\nHuman:", "###"]


def test_generic_auth_and_query_param(driver):
    t = Target("anthropic", "claude", {}, {"param_name": "key", "param_value": SECRET, "param_location": "query"})
    req = driver.build_request(CHAT, {"messages": [{"role": "user", "content": "hi"}]}, t, stream=False)
    assert req.url == f"https://api.anthropic.com/v1/messages?key={SECRET}"
    assert SECRET.encode() not in req.body


def test_several_system_messages_become_text_blocks(driver):
    body = body_of(driver.build_request(CHAT, {"messages": [
        {"role": "system", "content": "Rule one."},
        {"role": "user", "content": "hi"},
        {"role": "developer", "content": [{"type": "text", "text": "Rule two."}]},
    ]}, target(), stream=False))
    assert body["system"] == [{"type": "text", "text": "Rule one."}, {"type": "text", "text": "Rule two."}]
    assert body["messages"] == [{"role": "user", "content": "hi"}]


def test_tools_tool_choice_and_a_full_tool_round_trip(driver):
    # The documented get_weather conversation, in OpenAI's words.
    location = {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}
    weather = {"type": "object", "properties": {"location": location}, "required": ["location"]}
    openai_body = {
        "messages": [
            {"role": "user", "content": "What's the weather like in San Francisco?"},
            {"role": "assistant", "content": "I'll check the current weather in San Francisco for you.",
             "tool_calls": [{"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
                             "function": {"name": "get_weather",
                                          "arguments": "{\"location\": \"San Francisco, CA\"}"}},
                            {"id": "toolu_02", "type": "function",
                             "function": {"name": "get_time", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"},
            {"role": "tool", "tool_call_id": "toolu_02", "content": [{"type": "text", "text": "10:00"}]},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather",
                                                    "description": "Get the current weather in a given location",
                                                    "parameters": weather}},
                  {"type": "function", "function": {"name": "get_time"}}],
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }
    body = body_of(driver.build_request(CHAT, openai_body, target(), stream=False))
    assert body["tools"] == [
        {"name": "get_weather", "description": "Get the current weather in a given location", "input_schema": weather},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["messages"] == [
        {"role": "user", "content": "What's the weather like in San Francisco?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
             "input": {"location": "San Francisco, CA"}},
            {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}},
        ]},
        # parallel results share one user turn, results first, then the user's next words
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"},
            {"type": "tool_result", "tool_use_id": "toolu_02", "content": [{"type": "text", "text": "10:00"}]},
            {"type": "text", "text": "And tomorrow?"},
        ]},
    ]


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"type": "auto"}),
    ("none", {"type": "none"}),
    ("required", {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
])
def test_tool_choice(driver, choice, expected):
    body = body_of(driver.build_request(CHAT, {
        "messages": [{"role": "user", "content": "hi"}], "tool_choice": choice,
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    }, target(), stream=False))
    assert body["tool_choice"] == expected


def test_images_data_url_and_http_url(driver):
    body = body_of(driver.build_request(CHAT, {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe both."},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/ant.jpg", "detail": "high"}},
    ]}]}, target(), stream=False))
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Describe both."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/ant.jpg"}},
    ]


def test_pdf_file_part(driver):
    body = body_of(driver.build_request(CHAT, {"messages": [{"role": "user", "content": [
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
        {"type": "text", "text": "Summarise."},
    ]}]}, target(), stream=False))
    assert body["messages"][0]["content"][0] == {
        "type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}


@pytest.mark.parametrize("content", [
    [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}],
    [{"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}],
    [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}],
])
def test_unsupported_parts_are_a_400(driver, content):
    with pytest.raises(ProviderError) as err:
        driver.build_request(CHAT, {"messages": [{"role": "user", "content": content}]}, target(), stream=False)
    assert err.value.status == 400


def test_invalid_requests(driver):
    for bad in ({"messages": []}, {"messages": [{"role": "system", "content": "only a system prompt"}]},
                {"messages": [{"role": "user", "content": "hi"}], "n": 2},
                {"messages": [{"role": "assistant", "tool_calls": [
                    {"id": "x", "function": {"name": "f", "arguments": "{not json"}}]}]}):
        with pytest.raises(ProviderError) as err:
            driver.build_request(CHAT, bad, target(), stream=False)
        assert err.value.status == 400
        assert SECRET not in err.value.message


def test_completions_prompt_becomes_one_user_message(driver):
    body = body_of(driver.build_request(COMPLETIONS, {"prompt": "Once upon a time", "max_tokens": 20, "stop": "."},
                                        target(), stream=True))
    assert body == {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Once upon a time"}],
                    "max_tokens": 20, "stop_sequences": ["."], "stream": True}
    assert body_of(driver.build_request(COMPLETIONS, {"prompt": ["One"]}, target(), False))["messages"] == [
        {"role": "user", "content": "One"}]
    for prompt in (["one", "two"], [1, 2, 3], ""):
        with pytest.raises(ProviderError) as err:
            driver.build_request(COMPLETIONS, {"prompt": prompt}, target(), stream=False)
        assert err.value.status == 400


def test_embeddings_are_not_served(driver):
    with pytest.raises(ProviderError) as err:
        driver.build_request(EMBEDDINGS, {"input": "hello"}, target(), stream=False)
    assert err.value.status == 400
    assert "embeddings" in err.value.message


# ------------------------------------------------------------------------------------------------------------------
# responses
# ------------------------------------------------------------------------------------------------------------------

# Messages API reference, response example.
DOC_MESSAGE = b"""{
  "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
  "type": "message",
  "role": "assistant",
  "content": [{"type": "text", "text": "Hi! My name is Claude."}],
  "model": "claude-sonnet-4-20250514",
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "usage": {"input_tokens": 2095, "output_tokens": 503}
}"""

# "How to implement tool use": the assistant answer with a tool_use block (usage with prompt caching fields).
DOC_TOOL_USE = b"""{
  "id": "msg_01Aq9w938a90dw8q",
  "model": "claude-sonnet-4-5",
  "stop_reason": "tool_use",
  "role": "assistant",
  "type": "message",
  "content": [
    {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
    {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
     "input": {"location": "San Francisco, CA", "unit": "celsius"}}
  ],
  "usage": {"input_tokens": 472, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1024,
            "output_tokens": 89, "output_tokens_details": {"thinking_tokens": 12}, "service_tier": "standard"}
}"""


def test_parse_documented_message(driver):
    data, usage = driver.parse_response(CHAT, DOC_MESSAGE, target())
    assert data["object"] == "chat.completion"
    assert data["id"] == "msg_013Zva2CMHLNnXjNJJKqJ2EF"
    assert data["model"] == "claude-sonnet-4-20250514"
    assert isinstance(data["created"], int)
    assert data["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hi! My name is Claude."},
                                "logprobs": None, "finish_reason": "stop"}]
    assert data["usage"] == {"prompt_tokens": 2095, "completion_tokens": 503, "total_tokens": 2598}
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (2095, 503, 0)


def test_parse_tool_use_with_cache_and_thinking_usage(driver):
    data, usage = driver.parse_response(CHAT, DOC_TOOL_USE, target())
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check the current weather in San Francisco for you."
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "toolu_01A09q90qw90lq917835lq9"
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"location": "San Francisco, CA", "unit": "celsius"}
    # prompt = uncached + cache reads + cache writes; cached = cache reads
    assert data["usage"] == {"prompt_tokens": 472 + 1024 + 100, "completion_tokens": 89,
                             "total_tokens": 472 + 1024 + 100 + 89,
                             "prompt_tokens_details": {"cached_tokens": 1024},
                             "completion_tokens_details": {"reasoning_tokens": 12}}
    assert (usage.prompt_tokens, usage.cached_tokens, usage.reasoning_tokens) == (1596, 1024, 12)


def test_tool_only_answer_has_null_content_and_thinking_is_hidden(driver):
    body = orjson.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
                         "content": [{"type": "thinking", "thinking": "Let me think...", "signature": "sig"},
                                     {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}],
                         "stop_reason": "tool_use", "stop_sequence": None,
                         "usage": {"input_tokens": 5, "output_tokens": 7}})
    message = driver.parse_response(CHAT, body, target())[0]["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}


def test_parse_completions_route(driver):
    data, usage = driver.parse_response(COMPLETIONS, DOC_MESSAGE, target())
    assert data["object"] == "text_completion"
    assert data["choices"] == [{"index": 0, "text": "Hi! My name is Claude.", "logprobs": None,
                                "finish_reason": "stop"}]
    assert usage.total_tokens == 2598


@pytest.mark.parametrize("stop_reason, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("pause_turn", "stop"), ("model_context_window_exceeded", "length"),
    ("some_future_reason", "stop"),
])
def test_finish_reasons_never_leak_provider_values(driver, stop_reason, finish):
    assert finish_reason_of(stop_reason) == finish
    body = DOC_MESSAGE.replace(b'"end_turn"', b'"' + stop_reason.encode() + b'"')
    assert driver.parse_response(CHAT, body, target())[0]["choices"][0]["finish_reason"] == finish


def test_usage_of_reports_what_the_provider_said():
    assert usage_of(None) is None
    usage = usage_of({"input_tokens": 25, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 5,
                      "output_tokens": 8})
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.cached_tokens,
            usage.estimated) == (40, 8, 48, 5, False)


def test_malformed_answers_are_502(driver):
    for body in (b"<html>", b"[1, 2]"):
        with pytest.raises(ProviderError) as err:
            driver.parse_response(CHAT, body, target())
        assert err.value.status == 502


# ------------------------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------------------------

def error_body(kind: str, message: str, **extra) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message, **extra},
                         "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"})


@pytest.mark.parametrize("status, kind, message, openai_type", [
    (400, "invalid_request_error", 'messages: roles must alternate between "user" and "assistant"',
     "invalid_request_error"),
    (401, "authentication_error", "invalid x-api-key", "authentication_error"),
    (403, "permission_error", "Your API key does not have permission to use the specified resource.",
     "permission_error"),
    (404, "not_found_error", "model: claude-nope", "not_found_error"),
    (413, "request_too_large", "Request exceeds the maximum allowed number of bytes.", "invalid_request_error"),
    (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit",
     "rate_limit_exceeded"),
    (500, "api_error", "Internal server error", "api_error"),
    (529, "overloaded_error", "Overloaded", "api_error"),
])
def test_documented_errors(driver, status, kind, message, openai_type):
    err = driver.parse_error(status, {}, error_body(kind, message))
    assert err.status == status  # the provider's status is kept (529 included)
    assert err.message == message
    assert err.type == openai_type
    assert err.code == ("rate_limit_exceeded" if status == 429 else kind)


def test_retry_after_headers(driver):
    err = driver.parse_error(429, {"retry-after": "17"}, error_body("rate_limit_error", "slow down"))
    assert err.retry_after == 17.0
    err = driver.parse_error(529, {"retry-after-ms": "1500"}, error_body("overloaded_error", "Overloaded"))
    assert err.retry_after == 1.5
    assert driver.parse_error(500, {}, error_body("api_error", "x")).retry_after is None


def test_spend_limit_is_told_apart_from_a_rate_limit(driver):
    body = error_body("rate_limit_error", "You have reached your specified API usage limits.",
                      details={"error_code": "enforced_spend_limit_reached"})
    err = driver.parse_error(429, {}, body)
    assert (err.type, err.code) == ("rate_limit_exceeded", "enforced_spend_limit_reached")


def test_error_bodies_that_are_not_anthropic(driver):
    err = driver.parse_error(502, {}, b"<html>Bad Gateway</html>")
    assert (err.status, err.type) == (502, "api_error")
    assert "502" in err.message
    err = driver.parse_error(429, {"retry-after": "2"}, b"")
    assert (err.type, err.retry_after) == ("rate_limit_exceeded", 2.0)


def test_error_messages_never_carry_the_key(driver):
    # Whatever the request carried, the message is the provider's own text.
    err = driver.parse_error(401, {}, error_body("authentication_error", "invalid x-api-key"))
    assert SECRET not in err.message


# ------------------------------------------------------------------------------------------------------------------
# streams
# ------------------------------------------------------------------------------------------------------------------

# anthropic-sdk-python tests/lib/streaming/fixtures/basic_response.txt
BASIC_STREAM = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK","type":"message","role":"assistant","content":[],"model":"claude-3-opus-latest","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":11,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":6}}

event: message_stop
data: {"type":"message_stop"}"""

# anthropic-sdk-python tests/lib/streaming/fixtures/tool_use_response.txt
TOOL_STREAM = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_019Q1hrJbZG26Fb9BQhrkHEr","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":377,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"I"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"'ll check the current weather in Paris for you."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01NRLabsLyVHZPKxbKvkfSMn","name":"get_weather","caller":{"type":"direct"},"input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"locati"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"on\\": \\"P"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ar"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"is\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":65}}

event: message_stop
data: {"type":"message_stop"}"""

# anthropic-sdk-python tests/lib/streaming/fixtures/message_delta_fields_response.txt (cumulative usage in the
# message_delta replaces message_start's; cache fields and thinking tokens present)
CACHED_STREAM = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_01MessageDeltaFields00000001","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"stop_details":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":10,"cache_read_input_tokens":5,"cache_creation":{"ephemeral_5m_input_tokens":10,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello there!"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null,"stop_details":null,"container":{"id":"container_01AbCdEfGh","expires_at":"2025-01-01T00:00:00Z"}},"usage":{"input_tokens":40,"cache_creation_input_tokens":12,"cache_read_input_tokens":7,"output_tokens":8,"output_tokens_details":{"thinking_tokens":3},"server_tool_use":{"web_search_requests":1,"web_fetch_requests":0}}}

event: message_stop
data: {"type":"message_stop"}
"""

# anthropic-sdk-python tests/lib/streaming/fixtures/usage_omitted_with_optional_fields_response.txt
NO_START_USAGE_STREAM = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_usage_omitted_optional","type":"message","role":"assistant","content":[],"model":"claude-test","stop_reason":null,"stop_sequence":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":12,"cache_creation_input_tokens":4,"cache_read_input_tokens":3,"output_tokens":6,"output_tokens_details":{"thinking_tokens":2},"server_tool_use":{"web_search_requests":1,"web_fetch_requests":0}}}

event: message_stop
data: {"type":"message_stop"}
"""

# anthropic-sdk-python tests/lib/streaming/fixtures/refusal_response.txt
REFUSAL_STREAM = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_01RefusalTestMessage123456789","type":"message","role":"assistant","content":[],"model":"claude-opus-4-7","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":20,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"refusal","stop_sequence":null,"stop_details":{"type":"refusal","category":"cyber","explanation":"This request was refused due to policy."}},"usage":{"output_tokens":120,"output_tokens_details":{"thinking_tokens":67}}}

event: message_stop
data: {"type":"message_stop"}
"""

# "Streaming messages", error events: an error can arrive after a 200 (e.g. overloaded during high usage).
ERROR_EVENT = b"""event: error
data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

"""


def decode(driver, stream: bytes, split: int | None = None, route=CHAT):
    """Feed ``stream`` whole (split=None) or in pieces of ``split`` bytes; returns (chunks, decoder)."""
    decoder = driver.stream_decoder(route, target())
    chunks = []
    if split is None:
        chunks += decoder.feed(stream)
    else:
        for i in range(0, len(stream), split):
            chunks += decoder.feed(stream[i:i + split])
    chunks += decoder.close()
    return chunks, decoder


def assemble(chunks):
    """What an OpenAI client makes of the chunks: text, tool calls, finish reason, usage."""
    text, calls, finish, usage = "", {}, None, None
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        if chunk.get("usage"):
            assert chunk["choices"] == []
            usage = chunk["usage"]
        for choice in chunk["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            for call in delta.get("tool_calls") or ():
                slot = calls.setdefault(call["index"], {"id": None, "name": None, "arguments": ""})
                slot["id"] = call.get("id") or slot["id"]
                slot["name"] = call.get("function", {}).get("name") or slot["name"]
                slot["arguments"] += call.get("function", {}).get("arguments") or ""
            if choice["finish_reason"]:
                finish = choice["finish_reason"]
    return text, [calls[i] for i in sorted(calls)], finish, usage


@pytest.mark.parametrize("split", [None, 1, 2, 7, 64])
def test_basic_stream_in_any_split(driver, split):
    chunks, decoder = decode(driver, BASIC_STREAM, split)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[0]["id"] == "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK"
    assert chunks[0]["model"] == "claude-3-opus-latest"
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:4]] == ["Hello", " there", "!"]
    text, calls, finish, usage = assemble(chunks)
    assert (text, calls, finish) == ("Hello there!", [], "stop")
    assert usage == {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}
    assert chunks[-1]["choices"] == [] and chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert (decoder.usage.prompt_tokens, decoder.usage.completion_tokens) == (11, 6)
    # the finish chunk is the last choice chunk, and only one carries it
    assert sum(1 for c in chunks for ch in c["choices"] if ch["finish_reason"]) == 1


def test_stream_with_crlf_line_ends(driver):
    chunks, _ = decode(driver, BASIC_STREAM.replace(b"\n", b"\r\n"), 3)
    assert assemble(chunks)[0] == "Hello there!"


@pytest.mark.parametrize("split", [None, 1, 5])
def test_tool_use_stream(driver, split):
    chunks, decoder = decode(driver, TOOL_STREAM, split)
    text, calls, finish, usage = assemble(chunks)
    assert text == "I'll check the current weather in Paris for you."
    assert calls == [{"id": "toolu_01NRLabsLyVHZPKxbKvkfSMn", "name": "get_weather",
                      "arguments": '{"location": "Paris"}'}]
    assert finish == "tool_calls"
    assert usage == {"prompt_tokens": 377, "completion_tokens": 65, "total_tokens": 442}
    first_call = next(c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls"))
    assert first_call["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}}]


def test_cumulative_usage_with_cache_and_thinking(driver):
    chunks, decoder = decode(driver, CACHED_STREAM, 11)
    _, _, finish, usage = assemble(chunks)
    assert finish == "stop"
    assert usage == {"prompt_tokens": 40 + 12 + 7, "completion_tokens": 8, "total_tokens": 67,
                     "prompt_tokens_details": {"cached_tokens": 7},
                     "completion_tokens_details": {"reasoning_tokens": 3}}
    assert decoder.usage.cached_tokens == 7


def test_usage_only_in_message_delta(driver):
    _, _, _, usage = assemble(decode(driver, NO_START_USAGE_STREAM)[0])
    assert usage == {"prompt_tokens": 19, "completion_tokens": 6, "total_tokens": 25,
                     "prompt_tokens_details": {"cached_tokens": 3},
                     "completion_tokens_details": {"reasoning_tokens": 2}}


def test_refusal_is_content_filter(driver):
    text, _, finish, usage = assemble(decode(driver, REFUSAL_STREAM)[0])
    assert (text, finish) == ("", "content_filter")
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 67}


def test_chunks_come_out_as_frames_arrive(driver):
    decoder = driver.stream_decoder(CHAT, target())
    cut = BASIC_STREAM.index(b"event: content_block_delta")
    assert [c["choices"][0]["delta"] for c in decoder.feed(BASIC_STREAM[:cut])] == [
        {"role": "assistant", "content": ""}]
    second = BASIC_STREAM.index(b"event: content_block_delta", cut + 1)
    chunks = decoder.feed(BASIC_STREAM[cut:second])
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["Hello"]
    assert decoder.usage is None  # not known before message_delta


def test_stream_cut_after_message_delta_still_reports_usage(driver):
    cut = BASIC_STREAM.index(b"event: message_stop")
    chunks, decoder = decode(driver, BASIC_STREAM[:cut], 9)
    assert assemble(chunks)[3] == {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}
    assert chunks[-1]["choices"] == []


@pytest.mark.parametrize("split", [None, 1])
def test_error_event_mid_stream(driver, split):
    decoder = driver.stream_decoder(CHAT, target())
    head = BASIC_STREAM[:BASIC_STREAM.index(b"event: content_block_stop")]
    chunks = decoder.feed(head)
    assert assemble(chunks)[0] == "Hello there!"
    with pytest.raises(ProviderError) as err:
        if split is None:
            decoder.feed(ERROR_EVENT)
        else:
            for i in range(len(ERROR_EVENT)):
                decoder.feed(ERROR_EVENT[i:i + 1])
    assert (err.value.status, err.value.message, err.value.code) == (529, "Overloaded", "overloaded_error")


def test_error_in_the_same_read_as_content(driver):
    # The text decoded before the error still reaches the client; the error is raised on the next call.
    decoder = driver.stream_decoder(CHAT, target())
    head = BASIC_STREAM[:BASIC_STREAM.index(b"event: content_block_stop")]
    chunks = decoder.feed(head + ERROR_EVENT)
    assert assemble(chunks)[0] == "Hello there!"
    with pytest.raises(ProviderError) as err:
        decoder.close()
    assert err.value.status == 529
    with pytest.raises(ProviderError):
        decoder.feed(b"event: ping\ndata: {}\n\n")


def test_rate_limit_error_event(driver):
    decoder = driver.stream_decoder(CHAT, target())
    with pytest.raises(ProviderError) as err:
        decoder.feed(b'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error","message":"slow"}}\n\n')
    assert (err.value.status, err.value.type) == (429, "rate_limit_exceeded")


def test_malformed_stream_frame(driver):
    decoder = driver.stream_decoder(CHAT, target())
    with pytest.raises(ProviderError) as err:
        decoder.feed(b'event: content_block_delta\ndata: {"type":"content_block_del\n\n')
    assert err.value.status == 502


def test_tool_block_without_argument_fragments_gets_its_input(driver):
    stream = b"".join([
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
        b'"role":"assistant","content":[],"model":"claude","stop_reason":null,"stop_sequence":null,'
        b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":'
        b'{"type":"tool_use","id":"toolu_9","name":"now","input":{}}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
        b'{"type":"input_json_delta","partial_json":""}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use",'
        b'"stop_sequence":null},"usage":{"output_tokens":4}}\n\n',
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ])
    text, calls, finish, _ = assemble(decode(driver, stream, 4)[0])
    assert calls == [{"id": "toolu_9", "name": "now", "arguments": "{}"}]
    assert (text, finish) == ("", "tool_calls")


def test_completions_stream(driver):
    chunks, decoder = decode(driver, BASIC_STREAM, 5, route=COMPLETIONS)
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(ch["text"] for c in chunks for ch in c["choices"]) == "Hello there!"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] == 17

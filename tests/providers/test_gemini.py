"""The Gemini driver on Google's documented bodies (Generative Language API and Vertex AI).

Response, stream and error bodies below are the shapes Google documents for ``generateContent``,
``streamGenerateContent?alt=sse``, ``embedContent``/``batchEmbedContents`` and ``google.rpc.Status`` errors
(ai.google.dev/api, cloud.google.com/vertex-ai/.../model-reference), as captured in Google's SDK test fixtures.
"""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from multidict import CIMultiDict

from tollgate.providers import driver_for
from tollgate.providers.base import CHAT, COMPLETIONS, EMBEDDINGS, ProviderError, Target, UnreadableAnswer
from tollgate.providers.gemini import driver

KEY = "AIzaSyTEST-not-a-real-key-0123456789ab"
KEY_AUTH = {"param_name": "key", "param_value": KEY, "param_location": "query"}
VERTEX = {"gemini": {"project_id": "my-project", "location_id": "us-central1"}}
BEARER = {"header_name": "Authorization", "header_value": "Bearer ya29.token"}


def target(model: str | None = "gemini-2.0-flash", options: dict | None = None, auth: dict | None = None) -> Target:
    return Target("gemini", model, options or {}, KEY_AUTH if auth is None else auth)


def chat(messages, **extra):
    return {"model": "gemini-2.0-flash", "messages": messages, **extra}


def sent(request) -> dict:
    return orjson.loads(request.body)


def feed_bytewise(decoder, raw: bytes) -> list[dict]:
    chunks = []
    for i in range(len(raw)):
        chunks.extend(decoder.feed(raw[i:i + 1]))
    return chunks + decoder.close()


def test_registered_under_gemini():
    assert driver_for("gemini") is driver


# ------------------------------------------------------------------------------------------------ URLs and auth


def test_generative_language_url_with_key_in_query():
    request = driver.build_request(CHAT, chat([{"role": "user", "content": "hi"}]), target(), False)
    parts = urlsplit(request.url)
    assert (parts.scheme, parts.netloc) == ("https", "generativelanguage.googleapis.com")
    assert parts.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert parse_qs(parts.query) == {"key": [KEY]}
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"


def test_stream_url_asks_for_sse():
    request = driver.build_request(CHAT, chat([{"role": "user", "content": "hi"}]), target(), True)
    parts = urlsplit(request.url)
    assert parts.path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    assert parse_qs(parts.query) == {"alt": ["sse"], "key": [KEY]}
    assert "stream" not in sent(request)


def test_api_key_header_and_model_from_the_body():
    auth = {"header_name": "x-goog-api-key", "header_value": KEY}
    body = {"model": "models/gemini-2.5-pro", "messages": [{"role": "user", "content": "hi"}]}
    request = driver.build_request(CHAT, body, target(None, auth=auth), False)
    assert request.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent"
    assert request.headers["x-goog-api-key"] == KEY
    assert "model" not in sent(request)


def test_vertex_url_and_bearer_token():
    request = driver.build_request(CHAT, chat([{"role": "user", "content": "hi"}]), target(options=VERTEX, auth=BEARER),
                                   True)
    assert request.url == ("https://us-central1-aiplatform.googleapis.com/v1/projects/my-project/locations/"
                           "us-central1/publishers/google/models/gemini-2.0-flash:streamGenerateContent?alt=sse")
    assert request.headers["Authorization"] == "Bearer ya29.token"


def test_vertex_global_location_and_explicit_endpoint():
    options = {"gemini": {"project_id": "p", "location_id": "global"}}
    hello = chat([{"role": "user", "content": "hi"}])
    request = driver.build_request(CHAT, hello, target(options=options, auth=BEARER), False)
    assert request.url.startswith("https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/")
    options = {"gemini": {"api_endpoint": "europe-west4-aiplatform.googleapis.com", "project_id": "p",
                          "location_id": "europe-west4"}}
    hello = chat([{"role": "user", "content": "hi"}])
    request = driver.build_request(CHAT, hello, target(options=options, auth=BEARER), False)
    assert request.url == ("https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/europe-west4/"
                           "publishers/google/models/gemini-2.0-flash:generateContent")


def test_vertex_without_location_is_a_configuration_error():
    with pytest.raises(ProviderError) as info:
        driver.build_request(CHAT, chat([{"role": "user", "content": "hi"}]),
                             target(options={"gemini": {"project_id": "p"}}, auth=BEARER), False)
    assert info.value.status == 500 and info.value.code == "misconfigured"


@pytest.mark.parametrize("upstream, stream, expected", [
    ("http://mock:9/v1beta/models/gemini-2.0-flash:generateContent", True,
     "http://mock:9/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"),
    ("http://mock:9/v1beta/models/other:streamGenerateContent?alt=sse&x=1", False,
     "http://mock:9/v1beta/models/other:generateContent?x=1"),
    ("http://mock:9/v1beta/models/gemini-2.0-flash", False,
     "http://mock:9/v1beta/models/gemini-2.0-flash:generateContent"),
    ("http://mock:9", False, "http://mock:9/v1beta/models/gemini-2.0-flash:generateContent"),
    ("http://mock:9/v1beta/", True, "http://mock:9/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"),
    ("http://mock:9/v1/projects/p/locations/l/publishers/google/models", False,
     "http://mock:9/v1/projects/p/locations/l/publishers/google/models/gemini-2.0-flash:generateContent"),
])
def test_upstream_url_overrides_the_url(upstream, stream, expected):
    request = driver.build_request(CHAT, chat([{"role": "user", "content": "hi"}]),
                                   target(options={"upstream_url": upstream}, auth={}), stream)
    assert request.url == expected


def test_service_account_without_a_token_is_refused_before_sending():
    with pytest.raises(ProviderError) as info:
        driver.build_request(CHAT, chat([{"role": "user", "content": "hi"}]),
                             target(options=VERTEX, auth={"gcp_use_service_account": True}), False)
    assert info.value.status == 500


def test_unsupported_route_type():
    with pytest.raises(ProviderError) as info:
        driver.build_request("llm/v1/assistants", {"model": "m"}, target(), False)
    assert info.value.status == 400


# ------------------------------------------------------------------------------------------------ request body


def test_messages_system_and_generation_config():
    body = chat([{"role": "system", "content": "You are terse."},
                 {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                 {"role": "user", "content": "Hello"},
                 {"role": "assistant", "content": "Bonjour"},
                 {"role": "user", "content": [{"type": "text", "text": "How are you?"}]}],
                max_completion_tokens=100, max_tokens=5, temperature=0.2, top_p=0.9, stop="END", n=2, seed=7,
                presence_penalty=0.5, frequency_penalty=0.25, stream_options={"include_usage": True}, user="u1")
    payload = sent(driver.build_request(CHAT, body, target(options={"top_k": 40, "temperature": 1.5}), False))
    assert payload == {
        "contents": [{"role": "user", "parts": [{"text": "Hello"}]},
                     {"role": "model", "parts": [{"text": "Bonjour"}]},
                     {"role": "user", "parts": [{"text": "How are you?"}]}],
        "systemInstruction": {"parts": [{"text": "You are terse."}, {"text": "Answer in French."}]},
        "generationConfig": {"maxOutputTokens": 100, "temperature": 0.2, "topP": 0.9, "topK": 40,
                             "stopSequences": ["END"], "candidateCount": 2, "presencePenalty": 0.5,
                             "frequencyPenalty": 0.25, "seed": 7},
    }


def test_options_are_defaults_only():
    body = chat([{"role": "user", "content": "hi"}])
    payload = sent(driver.build_request(CHAT, body, target(options={"max_tokens": 256, "temperature": 0.1,
                                                                    "top_p": 0.5}), False))
    assert payload["generationConfig"] == {"maxOutputTokens": 256, "temperature": 0.1, "topP": 0.5}
    body = chat([{"role": "user", "content": "hi"}], max_tokens=12, stop=["a", "b"])
    payload = sent(driver.build_request(CHAT, body, target(options={"max_tokens": 256}), False))
    assert payload["generationConfig"] == {"maxOutputTokens": 12, "stopSequences": ["a", "b"]}


def test_images_become_inline_data_and_file_data():
    png = base64.b64encode(b"\x89PNG fake").decode()
    body = chat([{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/dog.jpg"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ]}])
    parts = sent(driver.build_request(CHAT, body, target(), False))["contents"][0]["parts"]
    assert parts == [
        {"text": "What is in these?"},
        {"inlineData": {"mimeType": "image/png", "data": png}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://bucket/dog.jpg"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
    ]


def test_tools_and_tool_choice():
    weather = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"],
               "additionalProperties": False}
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a place",
                                               "parameters": weather, "strict": True}},
             {"type": "function", "function": {"name": "now"}}]
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    payload = sent(driver.build_request(CHAT, chat(messages, tools=tools), target(), False))
    assert payload["tools"] == [{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather of a place", "parametersJsonSchema": weather},
        {"name": "now"}]}]
    assert "toolConfig" not in payload
    for choice, config in [("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"}),
                           ({"type": "function", "function": {"name": "now"}},
                            {"mode": "ANY", "allowedFunctionNames": ["now"]})]:
        payload = sent(driver.build_request(CHAT, chat(messages, tools=tools, tool_choice=choice), target(), False))
        assert payload["toolConfig"] == {"functionCallingConfig": config}


def test_tool_call_history_becomes_function_call_and_response_parts():
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "sunny, 25C"},
        {"role": "user", "content": "Thanks!"},
    ]
    payload = sent(driver.build_request(CHAT, chat(messages), target(), False))
    assert payload["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}},
                                   {"functionResponse": {"name": "get_weather",
                                                         "response": {"output": "sunny, 25C"}}},
                                   {"text": "Thanks!"}]},
    ]


def test_tool_message_without_its_call_is_rejected():
    messages = [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_zz", "content": "1"}]
    with pytest.raises(ProviderError) as info:
        driver.build_request(CHAT, chat(messages), target(), False)
    assert info.value.status == 400


def test_response_format_json_schema():
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    body = chat([{"role": "user", "content": "hi"}],
                response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    config = sent(driver.build_request(CHAT, body, target(), False))["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}


def test_completions_prompt_is_one_user_turn():
    body = {"model": "gemini-2.0-flash", "prompt": "Say this is a test", "max_tokens": 7}
    payload = sent(driver.build_request(COMPLETIONS, body, target(), False))
    assert payload == {"contents": [{"role": "user", "parts": [{"text": "Say this is a test"}]}],
                       "generationConfig": {"maxOutputTokens": 7}}


# ------------------------------------------------------------------------------------------------ responses

# generateContent response as documented (candidates, finishReason, index, usageMetadata, modelVersion, responseId)
TEXT_RESPONSE = b"""{
  "candidates": [
    {
      "content": {"parts": [{"text": "The capital of France is Paris."}], "role": "model"},
      "finishReason": "STOP",
      "index": 0,
      "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
    }
  ],
  "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 7, "totalTokenCount": 12,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 5}]},
  "modelVersion": "gemini-2.0-flash",
  "responseId": "mHchaNyOFpO1qtsP8u2p0Ao"
}"""

# a thinking model answering with a thought summary, text and a function call, from a cached prompt
THINKING_TOOL_RESPONSE = b"""{
  "candidates": [{
    "content": {"parts": [
      {"text": "pondering...", "thought": true},
      {"text": "The answer is 4."},
      {"functionCall": {"name": "lookup", "args": {"q": "2+2"}}, "thoughtSignature": "CtwBAVSoXO4="}
    ], "role": "model"},
    "finishReason": "STOP",
    "index": 0
  }],
  "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 8, "totalTokenCount": 30,
                    "cachedContentTokenCount": 4, "thoughtsTokenCount": 10},
  "modelVersion": "gemini-2.5-flash",
  "responseId": "resp-123"
}"""


def test_parse_text_response():
    answer, usage = driver.parse_response(CHAT, TEXT_RESPONSE, target())
    assert answer["object"] == "chat.completion"
    assert answer["id"] == "chatcmpl-mHchaNyOFpO1qtsP8u2p0Ao"
    assert answer["model"] == "gemini-2.0-flash"
    assert isinstance(answer["created"], int)
    assert answer["choices"] == [{"index": 0, "message": {"role": "assistant",
                                                          "content": "The capital of France is Paris."},
                                  "logprobs": None, "finish_reason": "stop"}]
    assert answer["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (5, 7, 12)


def test_parse_thinking_tool_response_usage_and_calls():
    answer, usage = driver.parse_response(CHAT, THINKING_TOOL_RESPONSE, target())
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "The answer is 4."  # the thought summary is not answer text
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["function"] == {"name": "lookup", "arguments": '{"q":"2+2"}'}
    assert call["id"].startswith("call_")
    assert answer["usage"] == {"prompt_tokens": 12, "completion_tokens": 18, "total_tokens": 30,
                               "prompt_tokens_details": {"cached_tokens": 4},
                               "completion_tokens_details": {"reasoning_tokens": 10}}
    assert (usage.cached_tokens, usage.reasoning_tokens) == (4, 10)
    again, _ = driver.parse_response(CHAT, THINKING_TOOL_RESPONSE, target())
    assert again["choices"][0]["message"]["tool_calls"][0]["id"] == call["id"]  # stable ids


def test_thought_signature_goes_back_with_the_call():
    answer, _ = driver.parse_response(CHAT, THINKING_TOOL_RESPONSE, target())
    message = answer["choices"][0]["message"]
    call_id = message["tool_calls"][0]["id"]
    history = [{"role": "user", "content": "2+2?"}, message,
               {"role": "tool", "tool_call_id": call_id, "content": "4"}]
    contents = sent(driver.build_request(CHAT, chat(history), target(), False))["contents"]
    assert contents[1] == {"role": "model", "parts": [
        {"text": "The answer is 4."},
        {"functionCall": {"name": "lookup", "args": {"q": "2+2"}}, "thoughtSignature": "CtwBAVSoXO4="}]}
    assert contents[2] == {"role": "user", "parts": [{"functionResponse": {"name": "lookup",
                                                                           "response": {"output": 4}}}]}


@pytest.mark.parametrize("reason, expected", [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("BLOCKLIST", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
    ("OTHER", "stop"), ("MALFORMED_FUNCTION_CALL", "stop"), ("FINISH_REASON_UNSPECIFIED", "stop"),
])
def test_finish_reasons(reason, expected):
    body = {"candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"}, "finishReason": reason,
                            "index": 0}]}
    answer, usage = driver.parse_response(CHAT, orjson.dumps(body), target())
    assert answer["choices"][0]["finish_reason"] == expected
    assert usage is None and "usage" not in answer


def test_safety_block_without_content():
    body = {"candidates": [{"finishReason": "SAFETY", "index": 0,
                            "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                                               "probability": "HIGH", "blocked": True}]}],
            "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}}
    answer, usage = driver.parse_response(CHAT, orjson.dumps(body), target())
    assert answer["choices"][0]["finish_reason"] == "content_filter"
    assert answer["choices"][0]["message"]["content"] == ""
    assert usage.prompt_tokens == 9 and usage.completion_tokens == 0


def test_blocked_prompt_has_no_candidates():
    body = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
            "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}}
    answer, _ = driver.parse_response(CHAT, orjson.dumps(body), target())
    assert answer["choices"] == [{"index": 0, "message": {"role": "assistant", "content": None},
                                  "logprobs": None, "finish_reason": "content_filter"}]


def test_several_candidates():
    body = {"candidates": [
        {"content": {"parts": [{"text": "A"}], "role": "model"}, "finishReason": "STOP", "index": 0},
        {"content": {"parts": [{"text": "B"}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 1}]}
    answer, _ = driver.parse_response(CHAT, orjson.dumps(body), target())
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in answer["choices"]] == [
        (0, "A", "stop"), (1, "B", "length")]


def test_completions_response_is_a_text_completion():
    answer, usage = driver.parse_response(COMPLETIONS, TEXT_RESPONSE, target())
    assert answer["object"] == "text_completion"
    assert answer["choices"] == [{"text": "The capital of France is Paris.", "index": 0, "logprobs": None,
                                  "finish_reason": "stop"}]
    assert usage.total_tokens == 12


def test_bad_bodies():
    with pytest.raises(ProviderError) as info:
        driver.parse_response(CHAT, b"<html>oops", target())
    assert info.value.status == 502


# ------------------------------------------------------------------------------------------------ embeddings


def test_embed_one_input():
    request = driver.build_request(EMBEDDINGS, {"model": "text-embedding-004", "input": "Hello world",
                                                "dimensions": 3}, target("text-embedding-004"), False)
    assert urlsplit(request.url).path == "/v1beta/models/text-embedding-004:embedContent"
    assert sent(request) == {"model": "models/text-embedding-004", "content": {"parts": [{"text": "Hello world"}]},
                             "outputDimensionality": 3}
    answer, usage = driver.parse_response(EMBEDDINGS, b'{"embedding": {"values": [0.013168523, -0.008711934, '
                                                      b'-0.046782676]}}', target("text-embedding-004"))
    assert answer == {"object": "list", "model": "text-embedding-004",
                      "data": [{"object": "embedding", "index": 0,
                                "embedding": [0.013168523, -0.008711934, -0.046782676]}]}
    assert usage is None


def test_embed_a_list_in_one_batch():
    request = driver.build_request(EMBEDDINGS, {"input": ["a", "b"]}, target("gemini-embedding-001"), False)
    assert urlsplit(request.url).path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent(request) == {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}}]}
    answer, _ = driver.parse_response(EMBEDDINGS, b'{"embeddings": [{"values": [1.0, 0.0]}, {"values": [0.0, 1.0]}]}',
                                      target("gemini-embedding-001"))
    assert [(d["index"], d["embedding"]) for d in answer["data"]] == [(0, [1.0, 0.0]), (1, [0.0, 1.0])]


def test_embed_on_vertex_reports_usage():
    request = driver.build_request(EMBEDDINGS, {"input": "x"}, target("gemini-embedding-001", VERTEX, BEARER), False)
    assert request.url.endswith("/publishers/google/models/gemini-embedding-001:embedContent")
    assert sent(request) == {"content": {"parts": [{"text": "x"}]}}
    body = b'{"embedding": {"values": [0.5]}, "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}}'
    answer, usage = driver.parse_response(EMBEDDINGS, body, target("gemini-embedding-001", VERTEX, BEARER))
    assert answer["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert (usage.prompt_tokens, usage.total_tokens) == (3, 3)


def test_embed_token_arrays_are_refused():
    with pytest.raises(ProviderError) as info:
        driver.build_request(EMBEDDINGS, {"input": [[1, 2, 3]]}, target("text-embedding-004"), False)
    assert info.value.status == 400


# ------------------------------------------------------------------------------------------------ streams

# streamGenerateContent?alt=sse as the Generative Language API sends it (CRLF frame ends, usage in every frame,
# older models repeat finishReason on every frame; multi-byte UTF-8 text)
UTF8_STREAM = (
    'data: {"candidates": [{"content": {"parts": [{"text": "秋风瑟瑟，"}], "role": "model"}, '
    '"finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}}\r\n\r\n'
    'data: {"candidates": [{"content": {"parts": [{"text": "叶落纷纷。"}], "role": "model"}, '
    '"finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 12, '
    '"totalTokenCount": 20}, "modelVersion": "gemini-1.5-flash", "responseId": "abc"}\r\n\r\n'
).encode()

# Vertex AI's stream: early frames carry only trafficType, the last one the counts and the finish
VERTEX_STREAM = (
    b'data: {"candidates": [{"content": {"role": "model","parts": [{"text": "Hello!"}]}}],'
    b'"usageMetadata": {"trafficType": "ON_DEMAND"},"modelVersion": "gemini-2.5-flash",'
    b'"createTime": "2026-03-10T14:54:45.066123Z","responseId": "tTCwacuEBMvnitYP06qsgQY"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"role": "model","parts": [{"text": " How can I help you today?"}]}}],'
    b'"usageMetadata": {"trafficType": "ON_DEMAND"},"modelVersion": "gemini-2.5-flash",'
    b'"createTime": "2026-03-10T14:54:45.066123Z","responseId": "tTCwacuEBMvnitYP06qsgQY"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"role": "model","parts": [{"text": "","thoughtSignature": "AY89a18i"}]},'
    b'"finishReason": "STOP"}],"usageMetadata": {"promptTokenCount": 1,"candidatesTokenCount": 9,'
    b'"totalTokenCount": 30,"thoughtsTokenCount": 20,"trafficType": "ON_DEMAND"},'
    b'"modelVersion": "gemini-2.5-flash","createTime": "2026-03-10T14:54:45.066123Z",'
    b'"responseId": "tTCwacuEBMvnitYP06qsgQY"}\r\n\r\n'
)

TOOL_STREAM = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "Let me check."}],"role": "model"},"index": 0}],'
    b'"responseId": "r1"}\n\n'
    b'data: {"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather",'
    b'"args": {"location": "Paris"}}},{"functionCall": {"name": "get_time","args": {}}}],"role": "model"},'
    b'"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 30,"candidatesTokenCount": 14,'
    b'"totalTokenCount": 44},"responseId": "r1"}\n\n'
)


def test_stream_utf8_byte_by_byte():
    decoder = driver.stream_decoder(CHAT, target("gemini-1.5-flash"))
    chunks = feed_bytewise(decoder, UTF8_STREAM)
    content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert "".join(c["choices"][0]["delta"]["content"] for c in content) == "秋风瑟瑟，叶落纷纷。"
    assert content[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["stop"]  # once, at the end, though every frame repeated STOP
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 8, "completion_tokens": 12, "total_tokens": 20}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert decoder.usage.total_tokens == 20


def test_stream_chunks_leave_as_frames_arrive():
    decoder = driver.stream_decoder(CHAT, target())
    first_end = VERTEX_STREAM.index(b"\r\n\r\n") + 4
    early = decoder.feed(VERTEX_STREAM[:first_end])
    assert [c["choices"][0]["delta"]["content"] for c in early] == ["Hello!"]
    assert decoder.feed(VERTEX_STREAM[first_end:first_end + 10]) == []
    rest = decoder.feed(VERTEX_STREAM[first_end + 10:]) + decoder.close()
    assert [c["choices"][0]["delta"].get("content") for c in rest if c["choices"]] == [" How can I help you today?",
                                                                                        None]
    assert rest[-2]["choices"][0]["finish_reason"] == "stop"
    assert rest[-1]["usage"] == {"prompt_tokens": 1, "completion_tokens": 29, "total_tokens": 30,
                                 "completion_tokens_details": {"reasoning_tokens": 20}}
    assert rest[-1]["model"] == "gemini-2.5-flash"


def test_stream_function_calls():
    decoder = driver.stream_decoder(CHAT, target())
    chunks = feed_bytewise(decoder, TOOL_STREAM)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": "Let me check."}
    calls = deltas[1]["tool_calls"]
    assert [(c["index"], c["type"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        (0, "function", "get_weather", '{"location":"Paris"}'), (1, "function", "get_time", "{}")]
    assert all(c["id"].startswith("call_") for c in calls) and calls[0]["id"] != calls[1]["id"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["total_tokens"] == 44
    # the same calls, answered without streaming, get the same ids
    whole = orjson.loads(TOOL_STREAM.split(b"\n\n")[1][len(b"data: "):])
    answer, _ = driver.parse_response(CHAT, orjson.dumps(whole), target())
    assert [c["id"] for c in answer["choices"][0]["message"]["tool_calls"]] == [c["id"] for c in calls]


# The same answer as one JSON array (what streamGenerateContent sends without alt=sse), pretty-printed as Google does.
ARRAY_STREAM = (
    b'[{\r\n  "candidates": [{"content": {"parts": [{"text": "Let me check. [1]"}],"role": "model"},"index": 0}],'
    b'\r\n  "responseId": "r1"\r\n}\r\n,\r\n' + TOOL_STREAM.split(b"\n\n")[1][len(b"data: "):] + b"\r\n]"
)


@pytest.mark.parametrize("cut", range(len(ARRAY_STREAM) + 1))
def test_array_stream_split_at_every_byte(cut):
    decoder = driver.stream_decoder(CHAT, target())
    chunks = decoder.feed(ARRAY_STREAM[:cut]) + decoder.feed(ARRAY_STREAM[cut:]) + decoder.close()
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": "Let me check. [1]"}
    assert [c["function"]["name"] for c in deltas[1]["tool_calls"]] == ["get_weather", "get_time"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["total_tokens"] == 44


def test_array_stream_yields_before_the_array_closes():
    decoder = driver.stream_decoder(CHAT, target())
    first_element_end = ARRAY_STREAM.index(b"\r\n,")
    chunks = decoder.feed(ARRAY_STREAM[:first_element_end])
    assert chunks and chunks[0]["choices"][0]["delta"]["content"] == "Let me check. [1]"


def test_array_stream_cut_before_it_closes():
    decoder = driver.stream_decoder(CHAT, target())
    decoder.feed(ARRAY_STREAM[:-3])
    with pytest.raises(UnreadableAnswer) as info:
        decoder.close()
    assert info.value.code == "upstream_incomplete_stream"
    with pytest.raises(UnreadableAnswer):
        driver.stream_decoder(CHAT, target()).feed(b'[{"candidates": []}] {"more": 1}')


def test_stream_error_frame_raises():
    decoder = driver.stream_decoder(CHAT, target())
    assert decoder.feed(UTF8_STREAM.split(b"\r\n\r\n")[0] + b"\r\n\r\n")
    with pytest.raises(ProviderError) as info:
        decoder.feed(b'data: {"error": {"code": 503, "message": "The model is overloaded. Please try again later.", '
                     b'"status": "UNAVAILABLE"}}\r\n\r\n')
    assert info.value.status == 503
    assert info.value.message == "The model is overloaded. Please try again later."


def test_stream_malformed_frame():
    decoder = driver.stream_decoder(CHAT, target())
    with pytest.raises(ProviderError) as info:
        decoder.feed(b'data: {"candidates": [{"content\n\n')
    assert info.value.status == 502


def test_stream_blocked_prompt():
    decoder = driver.stream_decoder(CHAT, target())
    chunks = decoder.feed(b'data: {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": '
                          b'{"promptTokenCount": 4, "totalTokenCount": 4}}\n\n') + decoder.close()
    assert chunks[0]["choices"][0]["finish_reason"] == "content_filter"
    assert chunks[-1]["usage"]["prompt_tokens"] == 4


def test_stream_completions_are_text_completion_chunks():
    decoder = driver.stream_decoder(COMPLETIONS, target())
    chunks = feed_bytewise(decoder, UTF8_STREAM)
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "秋风瑟瑟，叶落纷纷。"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] == 20


# ------------------------------------------------------------------------------------------------ errors

RATE_LIMITED = b"""{
  "error": {
    "code": 429,
    "message": "You exceeded your current quota, please check your plan and billing details.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
      {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
       "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}]},
      {"@type": "type.googleapis.com/google.rpc.Help",
       "links": [{"description": "Learn more", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
      {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "58s"}
    ]
  }
}"""


def test_rate_limit_with_retry_info():
    error = driver.parse_error(429, CIMultiDict(), RATE_LIMITED)
    assert (error.status, error.type, error.code) == (429, "rate_limit_exceeded", "resource_exhausted")
    assert error.message == "You exceeded your current quota, please check your plan and billing details."
    assert error.retry_after == 58.0


def test_retry_after_header_wins():
    error = driver.parse_error(429, CIMultiDict({"Retry-After": "3"}), RATE_LIMITED)
    assert error.retry_after == 3.0


def test_vertex_error_wrapped_in_an_array():
    body = (b'[{\n  "error": {\n    "code": 429,\n    "message": "Resource exhausted. Please try again later. '
            b'Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more '
            b'details.",\n    "status": "RESOURCE_EXHAUSTED"\n  }\n}\n]')
    error = driver.parse_error(429, CIMultiDict(), body)
    assert error.message.startswith("Resource exhausted. Please try again later.")
    assert error.type == "rate_limit_exceeded" and error.retry_after is None


@pytest.mark.parametrize("status, rpc, message, type_", [
    (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", "invalid_request_error"),
    (401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", "authentication_error"),
    (403, "PERMISSION_DENIED", "Permission denied on resource project my-project.", "permission_error"),
    (404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta.", "not_found_error"),
    (500, "INTERNAL", "An internal error has occurred.", "api_error"),
    (503, "UNAVAILABLE", "The model is overloaded. Please try again later.", "api_error"),
    (504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.", "timeout"),
])
def test_error_types(status, rpc, message, type_):
    body = orjson.dumps({"error": {"code": status, "message": message, "status": rpc}})
    error = driver.parse_error(status, CIMultiDict(), body)
    assert (error.status, error.message, error.type, error.code) == (status, message, type_, rpc.lower())


def test_errors_never_carry_the_key():
    body = orjson.dumps({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                   "message": f"bad request to /v1beta/models/x:generateContent?key={KEY}&alt=sse "
                                              f"with key {KEY}"}})
    error = driver.parse_error(400, CIMultiDict(), body)
    assert KEY not in error.message and "[redacted]" in error.message


def test_error_body_that_is_not_json():
    error = driver.parse_error(502, CIMultiDict(), b"<html><body>Bad Gateway</body></html>")
    assert error.status == 502 and "Bad Gateway" in error.message
    error = driver.parse_error(500, CIMultiDict(), b"")
    assert error.message == "upstream answered 500"


def test_stream_error_after_content_in_the_same_read():
    decoder = driver.stream_decoder(CHAT, target())
    first = UTF8_STREAM.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    error = b'data: {"error": {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}}\n\n'
    chunks = decoder.feed(first + error)
    assert chunks[0]["choices"][0]["delta"]["content"] == "秋风瑟瑟，"  # what came before the error is not lost
    with pytest.raises(ProviderError) as info:
        decoder.close()
    assert (info.value.status, info.value.code) == (500, "internal")

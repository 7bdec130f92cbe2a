"""route_type preserve, driver side: the native request each driver sends (URL, forwarded headers, auth, SigV4) and
the usage it reads from native answers and native stream frames (the documented bodies of each provider's tests)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from tollgate.providers import driver_for, native
from tollgate.providers.base import ProviderError, Target, Usage

from .test_anthropic import BASIC_STREAM, CACHED_STREAM, DOC_MESSAGE, DOC_TOOL_USE, ERROR_EVENT
from .test_bedrock import (CONVERSE_TEXT, KEY_ID, MODEL as BEDROCK_MODEL, REGION, TEXT_STREAM as BEDROCK_STREAM,
                           TOOL_STREAM as BEDROCK_TOOL_STREAM, check_signature, driver as bedrock_driver,
                           target as bedrock_target)
from .test_cohere import DEFAULT_RESPONSE as COHERE_ANSWER, TEXT_STREAM as COHERE_STREAM, sse as cohere_sse
from .test_gemini import TEXT_RESPONSE as GEMINI_ANSWER, THINKING_TOOL_RESPONSE, VERTEX_STREAM
from .test_mistral import ANSWER as MISTRAL_ANSWER, TEXT_STREAM as MISTRAL_STREAM

BODY = b'{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}'
CLIENT_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream", "anthropic-version": "2023-06-01",
                  "anthropic-beta": "prompt-caching-2024-07-31", "x-api-key": "client-own-key",
                  "Authorization": "Bearer kong-credential", "Host": "kong:8000", "X-Forwarded-For": "10.0.0.1",
                  "X-Tollgate-Attachment": "token", "Cookie": "a=b", "x-goog-api-key": "AIza-client",
                  "x-goog-user-project": "proj", "X-Amzn-Bedrock-GuardrailIdentifier": "gr-1",
                  "X-Amz-Date": "20240101T000000Z", "OpenAI-Beta": "assistants=v2", "X-Client-Name": "my-app",
                  "OpenAI-Organization": "org-other", "x-goog-api-client": "genai-py/1.0"}


def feed(reader, data: bytes, step: int = 1) -> Usage | None:
    for i in range(0, len(data), step):
        reader.feed(data[i:i + step])
    reader.close()
    return reader.usage


# ---------------------------------------------------------------------------------------------------- shared pieces

def test_forwarded_headers_keep_the_api_headers_and_never_a_credential():
    out = native.forwarded_headers(CLIENT_HEADERS)
    assert out == {"Content-Type": "application/json", "Accept": "text/event-stream",
                   "anthropic-version": "2023-06-01", "anthropic-beta": "prompt-caching-2024-07-31",
                   "x-goog-api-client": "genai-py/1.0", "X-Amzn-Bedrock-GuardrailIdentifier": "gr-1",
                   "OpenAI-Beta": "assistants=v2", "X-Client-Name": "my-app"}


@pytest.mark.parametrize("options, path, query, expected", [
    ({}, "/v1/messages", "", "https://api.example.com/v1/messages"),
    ({}, "/v1beta/models/m:streamGenerateContent", "alt=sse&key=AIza-client&apikey=kong",
     "https://api.example.com/v1beta/models/m:streamGenerateContent?alt=sse"),
    ({"upstream_url": "http://mock:9000"}, "/v1/messages", "", "http://mock:9000/v1/messages"),
    ({"upstream_url": "http://mock:9000/"}, "/v1/messages/count_tokens", "",
     "http://mock:9000/v1/messages/count_tokens"),
    ({"upstream_url": "http://vllm:8000/v1"}, "/v1/chat/completions", "", "http://vllm:8000/v1/chat/completions"),
    ({"upstream_url": "http://vllm:8000/v1/"}, "/v1/chat/completions", "", "http://vllm:8000/v1/chat/completions"),
    ({"upstream_url": "https://gw.example/acc/anthropic/"}, "/v1/messages", "",
     "https://gw.example/acc/anthropic/v1/messages"),
    ({"upstream_url": "https://gw.example/acc/anthropic/", "upstream_path": "/v1/messages"}, "/x", "",
     "https://gw.example/acc/anthropic/v1/messages"),
    ({"upstream_url": "http://mock:9000/v1/messages"}, "/anything/else", "beta=true",
     "http://mock:9000/v1/messages?beta=true"),
    ({"upstream_url": "http://mock:9000/fixed?api-version=1"}, "/x", "api-version=2&y=1",
     "http://mock:9000/fixed?api-version=1&y=1"),
    ({"upstream_path": "/v2/chat"}, "/whatever", "", "https://api.example.com/v2/chat"),
    ({"upstream_url": "http://mock:9000", "upstream_path": "v2/chat"}, "/x", "", "http://mock:9000/v2/chat"),
])
def test_native_url(options, path, query, expected):
    assert native.native_url("https://api.example.com", path, query, options) == expected


def test_native_url_drops_the_configured_auth_parameter_from_the_client_query():
    auth = {"param_name": "token", "param_value": "configured"}
    assert native.native_url("https://h", "/p", "token=client&x=1", {}, auth) == "https://h/p?x=1"


def test_native_url_without_any_origin_is_misconfigured():
    with pytest.raises(ProviderError) as caught:
        native.native_url(None, "/v1/chat/completions", "", {})
    assert caught.value.status == 500 and caught.value.code == "misconfigured"


def test_apply_auth_header_query_and_body():
    headers = {"authorization": "Bearer client"}
    url, body = native.apply_auth("https://h/p?a=1", headers, BODY,
                                  {"header_name": "Authorization", "header_value": "Bearer sk-configured"})
    assert headers == {"Authorization": "Bearer sk-configured"} and body is BODY and url == "https://h/p?a=1"
    url, body = native.apply_auth("https://h/p?key=client", {}, BODY,
                                  {"param_name": "key", "param_value": "AIza-configured"})
    assert parse_qsl(urlsplit(url).query) == [("key", "AIza-configured")] and body is BODY
    url, body = native.apply_auth("https://h/p", {}, BODY, {"param_name": "api_key", "param_value": "v",
                                                            "param_location": "body"})
    assert orjson.loads(body)["api_key"] == "v" and orjson.loads(body)["messages"] == [
        {"role": "user", "content": "hi"}]


def test_stream_usage_survives_what_the_decoder_refuses():
    reader = driver_for("anthropic").native_stream_usage(Target("anthropic", "claude"))
    cut = BASIC_STREAM.index(b"event: message_stop")
    reader.feed(BASIC_STREAM[:cut])
    reader.feed(b"\n\n" + ERROR_EVENT)
    reader.feed(b"event: message_delta\ndata: {not json\n\n")
    reader.close()
    assert reader.usage == Usage(prompt_tokens=11, completion_tokens=6, total_tokens=17)
    assert reader.stopped


def test_is_stream():
    assert native.is_stream("text/event-stream; charset=utf-8")
    assert native.is_stream("application/vnd.amazon.eventstream")
    assert not native.is_stream("application/json")
    assert not native.is_stream(None)


# ---------------------------------------------------------------------------------------------------- requests

def native_request(provider: str, target: Target, path: str, query: str = "", body: bytes = BODY):
    return driver_for(provider).native_request("POST", path, query, native.forwarded_headers(CLIENT_HEADERS), body,
                                               target)


def test_anthropic_request_keeps_the_body_and_the_clients_version():
    target = Target("anthropic", "claude-sonnet-4-5", {"anthropic_version": "2024-01-01"},
                    {"header_name": "x-api-key", "header_value": "sk-ant-configured"})
    request = native_request("anthropic", target, "/v1/messages")
    assert request.url == "https://api.anthropic.com/v1/messages" and request.body is BODY
    assert request.headers["x-api-key"] == "sk-ant-configured"
    assert request.headers["anthropic-version"] == "2023-06-01"           # the client's, its body is written for it
    assert "Authorization" not in request.headers and "Cookie" not in request.headers
    bare = driver_for("anthropic").native_request("POST", "/v1/messages", "", {}, BODY, target)
    assert bare.headers["anthropic-version"] == "2024-01-01"              # else the config's


def test_openai_family_requests():
    bearer = {"header_name": "Authorization", "header_value": "Bearer sk-configured"}
    request = native_request("openai", Target("openai", "gpt-4o", {}, bearer), "/v1/responses")
    assert request.url == "https://api.openai.com/v1/responses"
    assert request.headers["Authorization"] == "Bearer sk-configured" and request.body is BODY
    mistral = native_request("mistral", Target("mistral", None, {}, bearer), "/v1/chat/completions")
    assert mistral.url == "https://api.mistral.ai/v1/chat/completions"
    compat = native_request("openai-compatible",
                            Target("openai-compatible", None, {"upstream_url": "http://vllm:8000/v1"}, bearer),
                            "/v1/chat/completions")
    assert compat.url == "http://vllm:8000/v1/chat/completions"
    with pytest.raises(ProviderError, match="upstream_url"):
        native_request("openai-compatible", Target("openai-compatible", None, {}, bearer), "/v1/chat/completions")
    azure = native_request("azure", Target("azure", None, {"azure_instance": "contoso", "azure_api_version":
                                                           "2024-10-21"},
                                           {"header_name": "api-key", "header_value": "az-key"}),
                           "/openai/deployments/prod/chat/completions")
    assert azure.url == ("https://contoso.openai.azure.com/openai/deployments/prod/chat/completions"
                         "?api-version=2024-10-21")
    assert azure.headers["api-key"] == "az-key"


def test_cohere_request():
    request = native_request("cohere", Target("cohere", None, {}, {"header_name": "Authorization",
                                                                   "header_value": "Bearer co-key"}), "/v2/chat")
    assert request.url == "https://api.cohere.com/v2/chat" and request.headers["X-Client-Name"] == "my-app"


def test_gemini_requests_key_in_the_query_or_vertex_bearer():
    key = {"param_name": "key", "param_value": "AIza-configured", "param_location": "query"}
    request = native_request("gemini", Target("gemini", None, {}, key),
                             "/v1beta/models/gemini-2.0-flash:streamGenerateContent", "alt=sse&key=AIza-client")
    parts = urlsplit(request.url)
    assert parts.netloc == "generativelanguage.googleapis.com"
    assert parts.path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    assert parse_qsl(parts.query) == [("alt", "sse"), ("key", "AIza-configured")]
    assert "x-goog-api-key" not in {k.lower() for k in request.headers}
    vertex = Target("gemini", None, {"gemini": {"project_id": "p", "location_id": "europe-west4"}},
                    {"header_name": "Authorization", "header_value": "Bearer ya29.t"})
    path = "/v1/projects/p/locations/europe-west4/publishers/google/models/gemini-2.5-flash:generateContent"
    request = native_request("gemini", vertex, path)
    assert request.url == "https://europe-west4-aiplatform.googleapis.com" + path
    assert request.headers["Authorization"] == "Bearer ya29.t"


def test_bedrock_request_is_signed_as_sent():
    arn = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0"
    path = "/model/" + arn.replace(":", "%3A").replace("/", "%2F") + "/converse-stream"
    body = b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]}'
    request = bedrock_driver().native_request("POST", path, "", native.forwarded_headers(CLIENT_HEADERS), body,
                                              bedrock_target())
    sent = urlsplit(request.url)
    assert sent.netloc == f"bedrock-runtime.{REGION}.amazonaws.com"
    assert request.body is body
    assert request.headers["X-Amzn-Bedrock-GuardrailIdentifier"] == "gr-1"
    assert request.headers["X-Amz-Date"] == "20240501T123045Z"          # the driver's clock, not the client's
    signed = check_signature("POST", sent.path, sent.netloc, request.headers, body)
    assert "x-amzn-bedrock-guardrailidentifier" in signed
    assert request.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")


def test_bedrock_request_with_a_bearer_key_and_a_base_upstream_url():
    target = bedrock_target(auth={"header_name": "Authorization", "header_value": "Bearer bedrock-api-key"},
                            upstream_url="http://mock:9000")
    request = bedrock_driver().native_request("POST", f"/model/{BEDROCK_MODEL}/converse", "", {}, b"{}", target)
    assert request.url == f"http://mock:9000/model/{BEDROCK_MODEL}/converse"
    assert request.headers == {"Authorization": "Bearer bedrock-api-key"}


# ---------------------------------------------------------------------------------------------------- usage: answers

def test_openai_usage_of_chat_and_responses_answers():
    chat = {"id": "chatcmpl-1", "object": "chat.completion", "choices": [],
            "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
                      "prompt_tokens_details": {"cached_tokens": 4},
                      "completion_tokens_details": {"reasoning_tokens": 3}}}
    assert driver_for("openai").native_usage(orjson.dumps(chat)) == Usage(19, 10, 29, 4, 3)
    responses = {"id": "resp_1", "object": "response", "status": "completed",
                 "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 87,
                           "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 123}}
    assert driver_for("openai").native_usage(orjson.dumps(responses)) == Usage(36, 87, 123)
    assert driver_for("openai").native_usage(b"not json") is None
    assert driver_for("azure").native_usage(orjson.dumps(chat)) == Usage(19, 10, 29, 4, 3)


def test_anthropic_usage_counts_cache_reads_and_writes_as_prompt():
    assert driver_for("anthropic").native_usage(DOC_MESSAGE) == Usage(2095, 503, 2598)
    assert driver_for("anthropic").native_usage(DOC_TOOL_USE) == Usage(1596, 89, 1685, cached_tokens=1024,
                                                                       reasoning_tokens=12)
    assert driver_for("anthropic").native_usage(b'{"input_tokens": 14}') is None      # count_tokens: not a use


def test_gemini_usage_of_an_answer_and_of_a_json_array_stream():
    gemini = driver_for("gemini")
    assert gemini.native_usage(GEMINI_ANSWER) == Usage(5, 7, 12)
    assert gemini.native_usage(THINKING_TOOL_RESPONSE) == Usage(12, 18, 30, cached_tokens=4, reasoning_tokens=10)
    array = b"[" + GEMINI_ANSWER.replace(b'"candidatesTokenCount": 7', b'"candidatesTokenCount": 1') + b"," \
        + GEMINI_ANSWER + b"]"
    assert gemini.native_usage(array) == Usage(5, 7, 12)


def test_bedrock_usage_from_converse_titan_and_invoke_headers():
    bedrock = driver_for("bedrock")
    assert bedrock.native_usage(orjson.dumps(CONVERSE_TEXT)) == Usage(30, 628, 658)
    assert bedrock.native_usage(b'{"embedding": [0.1], "inputTextTokenCount": 7}') == Usage(7, 0, 7)
    invoke = {"X-Amzn-Bedrock-Input-Token-Count": "21", "X-Amzn-Bedrock-Output-Token-Count": "9"}
    assert bedrock.native_usage(b'{"content": []}', invoke) == Usage(21, 9, 30)
    anthropic_invoke = {"type": "message", "usage": {"input_tokens": 10, "output_tokens": 3}}
    assert bedrock.native_usage(orjson.dumps(anthropic_invoke)) == Usage(10, 3, 13)


def test_cohere_and_mistral_usage():
    assert driver_for("cohere").native_usage(orjson.dumps(COHERE_ANSWER)) == Usage(71, 418, 489)
    embed = {"id": "e", "embeddings": {"float": [[0.1]]}, "meta": {"billed_units": {"input_tokens": 6}}}
    assert driver_for("cohere").native_usage(orjson.dumps(embed)) == Usage(6, 0, 6)
    assert driver_for("mistral").native_usage(orjson.dumps(MISTRAL_ANSWER)) == Usage(34, 100, 134)


# ---------------------------------------------------------------------------------------------------- usage: streams

OPENAI_STREAM = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],'
    b'"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}\n\n'
    b'data: [DONE]\n\n')

RESPONSES_STREAM = (
    b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_1","status":"in_progress",'
    b'"usage":null}}\n\n'
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n'
    b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_1",'
    b'"status":"completed","usage":{"input_tokens":36,"output_tokens":2,"total_tokens":38}}}\n\n')


@pytest.mark.parametrize("provider, data, expected", [
    ("openai", OPENAI_STREAM, Usage(9, 1, 10)),
    ("openai", RESPONSES_STREAM, Usage(36, 2, 38)),
    ("mistral", MISTRAL_STREAM, Usage(34, 100, 134)),
    ("anthropic", BASIC_STREAM, Usage(11, 6, 17)),
    ("anthropic", CACHED_STREAM, Usage(59, 8, 67, cached_tokens=7, reasoning_tokens=3)),
    ("gemini", VERTEX_STREAM, Usage(1, 29, 30, reasoning_tokens=20)),
    ("cohere", cohere_sse(COHERE_STREAM), Usage(71, 26, 97)),
    ("bedrock", b"".join(BEDROCK_STREAM), Usage(1212, 2, 1214, cached_tokens=1200)),
    ("bedrock", b"".join(BEDROCK_TOOL_STREAM), Usage(375, 56, 431)),
])
@pytest.mark.parametrize("step", [1, 7, 1 << 20])
def test_stream_usage_read_from_native_frames(provider, data, expected, step):
    reader = driver_for(provider).native_stream_usage(Target(provider, "m"))
    assert feed(reader, data, step) == expected

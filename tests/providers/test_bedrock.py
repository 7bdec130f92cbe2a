"""The Bedrock driver as pure functions, on Bedrock's documented bodies.

Sources of the fixtures:
- request/response shapes: the Bedrock Runtime service model shipped in botocore (``bedrock-runtime`` 2023-09-30:
  ConverseRequest, ConverseResponse, ConverseStreamOutput, TokenUsage, StopReason, the exception shapes and their
  HTTP status codes) and the Bedrock user guide's tool-use walk-through (the ``top_song`` / ``WZPZ`` example),
  its prompt-caching usage example and the Titan / Cohere embedding model parameter pages;
- event-stream frames: the AWS event-stream encoding test vectors (also in botocore's own decoder tests) and frames
  assembled by hand below from the documented layout (prelude, CRC32 of the prelude, headers, payload, CRC32);
- SigV4: a verifier written here from AWS's documented algorithm, itself checked against the AWS SigV4 test
  suite's ``get-vanilla`` vector.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import struct
import zlib
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import pytest

from tollgate.mock.formats.bedrock import encode_message, event_frame, exception_frame
from tollgate.providers import driver_for
from tollgate.providers.base import CHAT, COMPLETIONS, EMBEDDINGS, ProviderError, Target, Usage
from tollgate.providers.bedrock import BedrockDriver, usage_from
from tollgate.providers.eventstream import EventStreamDecoder, EventStreamError

NOW = datetime.datetime(2024, 5, 1, 12, 30, 45, tzinfo=datetime.timezone.utc)
KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
REGION = "us-west-2"

# AWS's own test-suite values (Sigv4 "get-vanilla" and the event-stream encoding vectors)
GET_VANILLA_SIGNATURE = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
VECTOR_EMPTY = b"\x00\x00\x00\x10\x00\x00\x00\x00\x05\xc2H\xeb}\x98\xc8\xff"
VECTOR_ONE_STR_HEADER = (b"\x00\x00\x00=\x00\x00\x00 \x07\xfd\x83\x96\x0ccontent-type\x07\x00\x10"
                         b"application/json{'foo':'bar'}\x8d\x9c\x08\xb1")
VECTOR_INT32_HEADER = b"\x00\x00\x00\x1d\x00\x00\x00\r\x83\xe3\xf0\xe7\x07integer\x04\xff\xff\xff\xff\x8b\x8e\x12\xeb"
VECTOR_ERROR = (b"\x00\x00\x00\x52\x00\x00\x00\x42\xbf\x23\x63\x7e"
                b"\x0d:message-type\x07\x00\x05error"
                b"\x0b:error-code\x07\x00\x04code"
                b"\x0e:error-message\x07\x00\x07message"
                b"\x6b\x6c\xea\x3d")
VECTOR_CORRUPT_PAYLOAD = b"\x00\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'\x8d\xc3e96"


def driver(**env: str) -> BedrockDriver:
    return BedrockDriver(clock=lambda: NOW, environ=env)


def target(model: str | None = MODEL, auth: dict[str, Any] | None = None, **options: Any) -> Target:
    opts = {"bedrock": {"aws_region": REGION}, **options}
    return Target("bedrock", model, opts, {"aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET}
                  if auth is None else auth)


def built(body: dict[str, Any], route: str = CHAT, stream: bool = False, **kw: Any) -> tuple[Any, dict[str, Any]]:
    request = driver().build_request(route, body, target(**kw), stream)
    return request, orjson.loads(request.body)


# ---------------------------------------------------------------------------------------------------- SigV4

def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4(method: str, raw_path: str, headers: dict[str, str], signed: list[str], body: bytes, secret: str,
          region: str, service: str, query: str = "") -> str:
    """AWS SigV4 from the documented algorithm: canonical request over the path as sent on the wire (URI-encoded
    once more), string to sign, derived key, signature."""
    amz_date = headers["x-amz-date"]
    canonical = "\n".join([method, quote(raw_path, safe="/~"), query,
                           "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in signed),
                           ";".join(signed), hashlib.sha256(body).hexdigest()])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, f"{amz_date[:8]}/{region}/{service}/aws4_request",
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode(), amz_date[:8]), region), service), "aws4_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def check_signature(method: str, raw_path: str, host: str, headers: dict[str, str], body: bytes,
                    secret: str = SECRET, region: str = REGION, key_id: str = KEY_ID) -> list[str]:
    """Assert the Authorization header is a valid SigV4 signature of this request; returns the signed headers."""
    lower = {k.lower(): v for k, v in headers.items()}
    lower.setdefault("host", host)
    authorization = lower["authorization"]
    algorithm, _, fields = authorization.partition(" ")
    assert algorithm == "AWS4-HMAC-SHA256"
    parts = dict(item.strip().split("=", 1) for item in fields.split(","))
    assert parts["Credential"] == f"{key_id}/{lower['x-amz-date'][:8]}/{region}/bedrock/aws4_request"
    signed = parts["SignedHeaders"].split(";")
    assert "host" in signed and "x-amz-date" in signed
    assert parts["Signature"] == sigv4(method, raw_path, lower, signed, body, secret, region, "bedrock")
    return signed


def test_sigv4_verifier_matches_the_aws_test_suite():
    headers = {"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z"}
    assert sigv4("GET", "/", headers, ["host", "x-amz-date"], b"", SECRET, "us-east-1", "service") \
        == GET_VANILLA_SIGNATURE


def test_request_is_sigv4_signed_with_the_injected_clock():
    request, _ = built({"messages": [{"role": "user", "content": "Hello"}]})
    assert request.method == "POST"
    assert request.url == f"https://bedrock-runtime.{REGION}.amazonaws.com/model/{MODEL}/converse"
    assert request.headers["X-Amz-Date"] == "20240501T123045Z"
    url = urlsplit(request.url)
    signed = check_signature("POST", url.path, url.netloc, request.headers, request.body)
    assert signed == ["accept", "content-type", "host", "x-amz-date"]
    assert "X-Amz-Security-Token" not in request.headers
    # same clock, same request: same bytes (the driver is pure given its clock)
    again, _ = built({"messages": [{"role": "user", "content": "Hello"}]})
    assert again.headers == request.headers and again.body == request.body


def test_session_token_is_sent_and_signed():
    auth = {"aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET, "aws_session_token": "FwoGZXIvYXdzEXAMPLE"}
    request = driver().build_request(CHAT, {"messages": [{"role": "user", "content": "Hi"}]}, target(auth=auth),
                                     False)
    assert request.headers["X-Amz-Security-Token"] == "FwoGZXIvYXdzEXAMPLE"
    url = urlsplit(request.url)
    assert "x-amz-security-token" in check_signature("POST", url.path, url.netloc, request.headers, request.body)


def test_credentials_and_region_from_the_environment():
    d = driver(AWS_ACCESS_KEY_ID="AKIDENV", AWS_SECRET_ACCESS_KEY="envsecret", AWS_SESSION_TOKEN="envtoken",
               AWS_DEFAULT_REGION="eu-central-1")
    request = d.build_request(CHAT, {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
                              Target("bedrock", None), True)
    assert request.url == f"https://bedrock-runtime.eu-central-1.amazonaws.com/model/{MODEL}/converse-stream"
    assert request.headers["Accept"] == "application/vnd.amazon.eventstream"
    assert request.headers["X-Amz-Security-Token"] == "envtoken"
    url = urlsplit(request.url)
    check_signature("POST", url.path, url.netloc, request.headers, request.body, secret="envsecret",
                    region="eu-central-1", key_id="AKIDENV")


def test_config_credentials_win_over_the_environment():
    d = driver(AWS_ACCESS_KEY_ID="AKIDENV", AWS_SECRET_ACCESS_KEY="envsecret", AWS_REGION="eu-west-1")
    request = d.build_request(CHAT, {"messages": [{"role": "user", "content": "Hi"}]}, target(), False)
    assert f"Credential={KEY_ID}/20240501/{REGION}/bedrock" in request.headers["Authorization"]


def test_bearer_api_key_from_auth_header_or_environment():
    auth = {"header_name": "Authorization", "header_value": "Bearer ABSKexample"}
    request = driver().build_request(CHAT, {"messages": [{"role": "user", "content": "Hi"}]}, target(auth=auth),
                                     False)
    assert request.headers["Authorization"] == "Bearer ABSKexample"
    assert "X-Amz-Date" not in request.headers
    request = driver(AWS_BEARER_TOKEN_BEDROCK="ABSKenv").build_request(
        CHAT, {"messages": [{"role": "user", "content": "Hi"}]}, target(auth={}), False)
    assert request.headers["Authorization"] == "Bearer ABSKenv"


def test_misconfigurations_are_refused_without_leaking_secrets():
    body = {"messages": [{"role": "user", "content": "Hi"}]}
    with pytest.raises(ProviderError) as exc:
        driver().build_request(CHAT, body, Target("bedrock", MODEL, {}, {"aws_access_key_id": KEY_ID,
                                                                          "aws_secret_access_key": SECRET}), False)
    assert exc.value.status == 500 and "region" in exc.value.message and SECRET not in exc.value.message
    with pytest.raises(ProviderError) as exc:
        driver().build_request(CHAT, body, target(auth={}), False)
    assert exc.value.status == 500 and "credentials" in exc.value.message
    with pytest.raises(ProviderError) as exc:
        driver().build_request(CHAT, body, target(auth={"aws_access_key_id": KEY_ID}), False)
    assert exc.value.status == 500
    with pytest.raises(ProviderError) as exc:
        driver().build_request(CHAT, body, target(bedrock={"aws_region": REGION,
                                                           "aws_assume_role_arn": "arn:aws:iam::1:role/x"}), False)
    assert exc.value.status == 500 and "assume_role" in exc.value.message
    with pytest.raises(ProviderError) as exc:
        driver().build_request("preserve", body, target(), False)
    assert exc.value.status == 400


def test_registered_as_the_bedrock_driver():
    assert driver_for("bedrock").name == "bedrock"


# ---------------------------------------------------------------------------------------------------- URLs

def test_model_ids_are_url_encoded_in_the_path():
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0"
    request = driver().build_request(CHAT, {"messages": [{"role": "user", "content": "Hi"}]}, target(model=arn),
                                     False)
    assert request.url.endswith("/model/arn:aws:bedrock:us-east-1:123456789012:inference-profile"
                                "%2Fus.anthropic.claude-3-5-sonnet-20240620-v1:0/converse")
    url = urlsplit(request.url)
    check_signature("POST", url.path, url.netloc, request.headers, request.body)


@pytest.mark.parametrize("upstream, stream, expected", [
    ("http://127.0.0.1:9000", False, f"http://127.0.0.1:9000/model/{MODEL}/converse"),
    ("http://127.0.0.1:9000/", True, f"http://127.0.0.1:9000/model/{MODEL}/converse-stream"),
    ("https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com/prefix", False,
     f"https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com/prefix/model/{MODEL}/converse"),
    ("http://mock/model/other/converse", True, "http://mock/model/other/converse-stream"),
    ("http://mock/model/other/converse-stream", False, "http://mock/model/other/converse"),
])
def test_upstream_url_is_a_base_or_a_full_url(upstream, stream, expected):
    request = driver().build_request(CHAT, {"messages": [{"role": "user", "content": "Hi"}]},
                                     target(upstream_url=upstream), stream)
    assert request.url == expected
    url = urlsplit(request.url)
    check_signature("POST", url.path, url.netloc, request.headers, request.body)


def test_upstream_url_without_credentials_is_sent_unsigned():
    request = driver().build_request(CHAT, {"messages": [{"role": "user", "content": "Hi"}]},
                                     Target("bedrock", MODEL, {"upstream_url": "http://signing-proxy:8080"}, {}), False)
    assert "Authorization" not in request.headers


# ---------------------------------------------------------------------------------------------------- requests

TOP_SONG = {"type": "function", "function": {
    "name": "top_song", "description": "Get the most popular song played on a radio station.",
    "parameters": {"type": "object", "properties": {"sign": {
        "type": "string", "description": "The call sign for the radio station for which you want the most popular "
                                         "song. Example calls signs are WZPZ and WKRP."}},
        "required": ["sign"]}}}

# the user guide's tool definition, as Converse wants it
TOP_SONG_SPEC = {"toolSpec": {"name": "top_song", "description": "Get the most popular song played on a radio station.",
                              "inputSchema": {"json": TOP_SONG["function"]["parameters"]}}}


def test_documented_tool_use_request():
    _, body = built({"messages": [{"role": "user", "content": "What is the most popular song on WZPZ?"}],
                     "tools": [TOP_SONG], "tool_choice": {"type": "function", "function": {"name": "top_song"}}})
    assert body == {
        "messages": [{"role": "user", "content": [{"text": "What is the most popular song on WZPZ?"}]}],
        "toolConfig": {"tools": [TOP_SONG_SPEC], "toolChoice": {"tool": {"name": "top_song"}}},
    }


def test_documented_tool_result_turn():
    """The user guide's second turn: the assistant's toolUse, then the toolResult in a user message."""
    use_id = "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q"
    _, body = built({"messages": [
        {"role": "user", "content": "What is the most popular song on WZPZ?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": use_id, "type": "function", "function": {"name": "top_song", "arguments": '{"sign": "WZPZ"}'}}]},
        {"role": "tool", "tool_call_id": use_id, "content": '{"song": "Elemental Hotel", "artist": "8 Storey Hike"}'},
    ], "tools": [TOP_SONG]})
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "What is the most popular song on WZPZ?"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": use_id, "name": "top_song",
                                                       "input": {"sign": "WZPZ"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": use_id, "content": [
            {"json": {"song": "Elemental Hotel", "artist": "8 Storey Hike"}}]}}]},
    ]
    assert body["toolConfig"] == {"tools": [TOP_SONG_SPEC]}


def test_parallel_tool_results_and_a_following_user_message_share_one_user_turn():
    _, body = built({"messages": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking both.", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "w", "arguments": '{"city":"Paris"}'}},
            {"id": "t2", "type": "function", "function": {"name": "w", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "15 degrees"},
        {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "20 degrees"}]},
        {"role": "user", "content": "Thanks"},
    ], "tools": [{"type": "function", "function": {"name": "w"}}]})
    assert body["messages"][1] == {"role": "assistant", "content": [
        {"text": "Checking both."},
        {"toolUse": {"toolUseId": "t1", "name": "w", "input": {"city": "Paris"}}},
        {"toolUse": {"toolUseId": "t2", "name": "w", "input": {}}}]}
    assert body["messages"][2] == {"role": "user", "content": [
        {"toolResult": {"toolUseId": "t1", "content": [{"text": "15 degrees"}]}},
        {"toolResult": {"toolUseId": "t2", "content": [{"text": "20 degrees"}]}},
        {"text": "Thanks"}]}
    assert body["toolConfig"]["tools"] == [{"toolSpec": {"name": "w", "inputSchema": {
        "json": {"type": "object", "properties": {}}}}}]


def test_system_images_and_inference_config():
    _, body = built({
        "messages": [
            {"role": "system", "content": "You are an app that creates playlists for a radio station."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these pictures?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ\nSkZJRg=="}},
                {"type": "image_url", "image_url": "s3://my-bucket/photos/cat.webp"},
            ]},
            {"role": "user", "content": "Be brief."},
        ],
        "max_tokens": 10, "max_completion_tokens": 512, "temperature": 0.5, "top_p": 0.9, "stop": "\n\nHuman:",
    }, temperature=1.0, max_tokens=99, top_k=40)
    assert body["system"] == [{"text": "You are an app that creates playlists for a radio station."},
                              {"text": "Answer in English."}]
    assert body["messages"] == [{"role": "user", "content": [
        {"text": "What is in these pictures?"},
        {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
        {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQSkZJRg=="}}},
        {"image": {"format": "webp", "source": {"s3Location": {"uri": "s3://my-bucket/photos/cat.webp"}}}},
        {"text": "Be brief."}]}]
    assert body["inferenceConfig"] == {"maxTokens": 512, "temperature": 0.5, "topP": 0.9,
                                       "stopSequences": ["\n\nHuman:"]}
    assert body["additionalModelRequestFields"] == {"top_k": 40}  # Anthropic's name for it


def test_options_are_defaults():
    _, body = built({"messages": [{"role": "user", "content": "Hi"}], "stop": ["a", "b"]},
                    model="amazon.nova-pro-v1:0", max_tokens=300, temperature=0.2, top_p=0.8, top_k=5)
    assert body["inferenceConfig"] == {"maxTokens": 300, "temperature": 0.2, "topP": 0.8, "stopSequences": ["a", "b"]}
    assert "additionalModelRequestFields" not in body  # top_k is model-specific; only Anthropic's name is known


@pytest.mark.parametrize("choice, expected", [
    (None, None), ("auto", None), ("required", {"any": {}}),
    ({"type": "function", "function": {"name": "top_song"}}, {"tool": {"name": "top_song"}}),
])
def test_tool_choice(choice, expected):
    request_body: dict[str, Any] = {"messages": [{"role": "user", "content": "Hi"}], "tools": [TOP_SONG]}
    if choice is not None:
        request_body["tool_choice"] = choice
    _, body = built(request_body)
    assert body["toolConfig"].get("toolChoice") == expected


def test_tool_choice_none_drops_tools_unless_the_conversation_has_tool_blocks():
    _, body = built({"messages": [{"role": "user", "content": "Hi"}], "tools": [TOP_SONG], "tool_choice": "none"})
    assert "toolConfig" not in body
    _, body = built({"messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "tool_calls": [{"id": "a", "type": "function",
                                              "function": {"name": "top_song", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "a", "content": "x"}], "tools": [TOP_SONG], "tool_choice": "none"})
    assert body["toolConfig"] == {"tools": [TOP_SONG_SPEC]}


@pytest.mark.parametrize("body, fragment", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url",
                                                 "image_url": {"url": "https://example.com/cat.png"}}]}]}, "http"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url",
                                                 "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}]}, "tiff"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "input_audio"),
    ({"messages": [{"role": "user", "content": "Hi"}], "n": 2}, "'n'"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f",
                                                                                 "arguments": "{oops"}}]}]}, "JSON"),
    ({"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "code_interpreter"}]}, "function"),
])
def test_requests_bedrock_cannot_take_are_refused(body, fragment):
    with pytest.raises(ProviderError) as exc:
        built(body)
    assert exc.value.status == 400 and fragment in exc.value.message


def test_completions_are_one_user_message():
    request, body = built({"prompt": "Say this is a test", "max_tokens": 7, "temperature": 0}, route=COMPLETIONS)
    assert request.url.endswith("/converse")
    assert body == {"messages": [{"role": "user", "content": [{"text": "Say this is a test"}]}],
                    "inferenceConfig": {"maxTokens": 7, "temperature": 0}}


# ---------------------------------------------------------------------------------------------------- responses

# Converse's documented response shape (ConverseResponse: output.message, stopReason, usage, metrics)
CONVERSE_TEXT = {
    "output": {"message": {"role": "assistant", "content": [
        {"text": "Here is a playlist of 3 songs from the '90s:\n\n1. "}, {"text": "Smells Like Teen Spirit"}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 30, "outputTokens": 628, "totalTokens": 658},
    "metrics": {"latencyMs": 1275},
}

# the user guide's tool-use answer
CONVERSE_TOOL_USE = {
    "output": {"message": {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song", "input": {"sign": "WZPZ"}}}]}},
    "stopReason": "tool_use",
    "usage": {"inputTokens": 375, "outputTokens": 56, "totalTokens": 431},
    "metrics": {"latencyMs": 1000},
}


def parse(data: Any, route: str = CHAT, model: str | None = MODEL) -> tuple[dict[str, Any], Usage | None]:
    return driver().parse_response(route, orjson.dumps(data), target(model=model))


def test_text_response():
    answer, usage = parse(CONVERSE_TEXT)
    assert answer["object"] == "chat.completion" and answer["id"].startswith("chatcmpl-")
    assert answer["model"] == MODEL and isinstance(answer["created"], int)
    assert answer["choices"] == [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "Here is a playlist of 3 songs from the '90s:\n\n1. Smells Like Teen Spirit"}}]
    assert answer["usage"] == {"prompt_tokens": 30, "completion_tokens": 628, "total_tokens": 658}
    assert usage == Usage(prompt_tokens=30, completion_tokens=628, total_tokens=658)


def test_tool_use_response():
    answer, usage = parse(CONVERSE_TOOL_USE)
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "type": "function",
         "function": {"name": "top_song", "arguments": '{"sign":"WZPZ"}'}}]}
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (375, 56, 431)


def test_prompt_cache_usage():
    """The prompt-caching guide's numbers: inputTokens excludes the cache reads and writes that totalTokens holds."""
    usage = usage_from({"inputTokens": 4, "outputTokens": 279, "totalTokens": 2011, "cacheReadInputTokens": 0,
                        "cacheWriteInputTokens": 1728})
    assert usage == Usage(prompt_tokens=1732, completion_tokens=279, total_tokens=2011, cached_tokens=0)
    usage = usage_from({"inputTokens": 4, "outputTokens": 280, "totalTokens": 2012, "cacheReadInputTokens": 1728,
                        "cacheWriteInputTokens": 0})
    assert usage.as_openai() == {"prompt_tokens": 1732, "completion_tokens": 280, "total_tokens": 2012,
                                 "prompt_tokens_details": {"cached_tokens": 1728}}


@pytest.mark.parametrize("stop_reason, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"), ("tool_use", "tool_calls"),
    ("guardrail_intervened", "content_filter"), ("content_filtered", "content_filter"),
    ("malformed_model_output", "stop"), ("something_new", "stop"),
])
def test_finish_reasons(stop_reason, finish):
    answer, _ = parse({**CONVERSE_TEXT, "stopReason": stop_reason})
    assert answer["choices"][0]["finish_reason"] == finish


def test_reasoning_content_is_passed_on():
    answer, _ = parse({**CONVERSE_TEXT, "output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "The user wants...", "signature": "sig"}}},
        {"text": "Done."}]}}})
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "Done.",
                                               "reasoning_content": "The user wants..."}


def test_completion_response():
    answer, usage = parse(CONVERSE_TEXT, route=COMPLETIONS)
    assert answer["object"] == "text_completion"
    assert answer["choices"] == [{"text": "Here is a playlist of 3 songs from the '90s:\n\n1. Smells Like Teen Spirit",
                                  "index": 0, "logprobs": None, "finish_reason": "stop"}]
    assert usage.total_tokens == 658


def test_bodies_that_are_not_converse_answers():
    with pytest.raises(ProviderError) as exc:
        driver().parse_response(CHAT, b"<html>", target())
    assert exc.value.status == 502
    with pytest.raises(ProviderError):
        parse({"output": {}})


# ---------------------------------------------------------------------------------------------------- embeddings

def test_titan_embeddings():
    request, body = built({"input": "Hello world", "dimensions": 256, "encoding_format": "float"},
                          route=EMBEDDINGS, model="amazon.titan-embed-text-v2:0")
    assert request.url == f"https://bedrock-runtime.{REGION}.amazonaws.com/model/amazon.titan-embed-text-v2:0/invoke"
    assert request.headers["Accept"] == "application/json"
    assert body == {"inputText": "Hello world", "dimensions": 256}
    url = urlsplit(request.url)
    check_signature("POST", url.path, url.netloc, request.headers, request.body)
    answer, usage = parse({"embedding": [0.1, -0.2, 0.3], "inputTextTokenCount": 3,
                           "embeddingsByType": {"float": [0.1, -0.2, 0.3]}}, route=EMBEDDINGS,
                          model="amazon.titan-embed-text-v2:0")
    assert answer == {"object": "list", "model": "amazon.titan-embed-text-v2:0",
                      "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2, 0.3]}],
                      "usage": {"prompt_tokens": 3, "total_tokens": 3}}
    assert usage == Usage(prompt_tokens=3, total_tokens=3)
    _, body = built({"input": ["only one"]}, route=EMBEDDINGS, model="amazon.titan-embed-text-v1")
    assert body == {"inputText": "only one"}
    with pytest.raises(ProviderError) as exc:
        built({"input": ["one", "two"]}, route=EMBEDDINGS, model="amazon.titan-embed-text-v2:0")
    assert exc.value.status == 400


def test_cohere_embeddings():
    _, body = built({"input": ["first", "second"]}, route=EMBEDDINGS, model="cohere.embed-english-v3")
    assert body == {"texts": ["first", "second"], "input_type": "search_document"}
    _, body = built({"input": "q", "input_type": "search_query"}, route=EMBEDDINGS, model="cohere.embed-english-v3")
    assert body == {"texts": ["q"], "input_type": "search_query"}
    answer, usage = parse({"embeddings": [[0.5, 0.25], [0.125, 1.0]], "id": "a5d2e4c1", "response_type":
                           "embeddings_floats", "texts": ["first", "second"]}, route=EMBEDDINGS,
                          model="cohere.embed-english-v3")
    assert [d["embedding"] for d in answer["data"]] == [[0.5, 0.25], [0.125, 1.0]]
    assert [d["index"] for d in answer["data"]] == [0, 1]
    assert usage is None and "usage" not in answer  # Cohere's body carries no token count
    answer, _ = parse({"embeddings": {"float": [[1.0]]}, "response_type": "embeddings_by_type"}, route=EMBEDDINGS)
    assert answer["data"][0]["embedding"] == [1.0]


def test_embeddings_for_other_models_are_refused():
    with pytest.raises(ProviderError) as exc:
        built({"input": "x"}, route=EMBEDDINGS, model="anthropic.claude-3-haiku-20240307-v1:0")
    assert exc.value.status == 400 and "Titan" in exc.value.message
    with pytest.raises(ProviderError):
        built({"input": [[1, 2, 3]]}, route=EMBEDDINGS, model="cohere.embed-english-v3")


# ---------------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("status, error_type, message, openai_type", [
    (400, "ValidationException", "The provided model identifier is invalid.", "invalid_request_error"),
    (403, "AccessDeniedException", "You don't have access to the model with the specified model ID.",
     "permission_error"),
    (408, "ModelTimeoutException", "Model has timed out in processing the request.", "timeout"),
    (429, "ThrottlingException", "Too many requests, please wait before trying again.", "rate_limit_exceeded"),
    (503, "ServiceUnavailableException", "Bedrock is unable to process your request.", "api_error"),
    (424, "ModelErrorException", "The model returned an error.", "api_error"),
])
def test_errors(status, error_type, message, openai_type):
    headers = {"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
               "x-amzn-RequestId": "b3d4c5e6-0000-4000-8000-000000000000"}
    error = driver().parse_error(status, headers, orjson.dumps({"message": message}))
    assert (error.status, error.message, error.type, error.code) == (status, message, openai_type, error_type)
    assert error.retry_after is None


def test_error_type_from_the_body_and_retry_after():
    error = driver().parse_error(429, {"Retry-After": "7"}, b'{"__type": "com.amazon.coral#ThrottlingException", '
                                                           b'"Message": "Rate exceeded"}')
    assert (error.message, error.type, error.code, error.retry_after) == ("Rate exceeded", "rate_limit_exceeded",
                                                                          "ThrottlingException", 7.0)
    error = driver().parse_error(502, {}, b"<html>Bad Gateway</html>")
    assert (error.status, error.type, error.code) == (502, "api_error", None)
    assert "502" in error.message


# ---------------------------------------------------------------------------------------------------- event stream

def hand_frame(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """An event-stream message assembled from the documented layout, string headers only (independent of the
    mock's encoder)."""
    head = b""
    for name, value in headers:
        head += bytes([len(name)]) + name.encode() + b"\x07" + len(value.encode()).to_bytes(2, "big") + value.encode()
    total = 4 + 4 + 4 + len(head) + len(payload) + 4
    prelude = total.to_bytes(4, "big") + len(head).to_bytes(4, "big")
    message = prelude + (zlib.crc32(prelude) & 0xFFFFFFFF).to_bytes(4, "big") + head + payload
    return message + (zlib.crc32(message) & 0xFFFFFFFF).to_bytes(4, "big")


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    return hand_frame([(":event-type", event_type), (":content-type", "application/json"),
                       (":message-type", "event")], orjson.dumps({**payload, "p": "abcdefghijklmnop"}))


def test_decoder_on_the_aws_test_vectors():
    decoder = EventStreamDecoder()
    messages = decoder.feed(VECTOR_EMPTY + VECTOR_ONE_STR_HEADER + VECTOR_INT32_HEADER + VECTOR_ERROR)
    assert [(m.headers, m.payload) for m in messages] == [
        ({}, b""), ({"content-type": "application/json"}, b"{'foo':'bar'}"), ({"integer": -1}, b""),
        ({":message-type": "error", ":error-code": "code", ":error-message": "message"}, b"")]
    assert messages[3].message_type == "error"
    assert decoder.close() == []
    with pytest.raises(EventStreamError):
        EventStreamDecoder().feed(VECTOR_CORRUPT_PAYLOAD)


def test_decoder_byte_by_byte_and_cut_streams():
    data = VECTOR_ONE_STR_HEADER + VECTOR_EMPTY
    decoder = EventStreamDecoder()
    seen = []
    for i in range(len(data)):
        seen.append(len(decoder.feed(data[i:i + 1])))
    assert seen[len(VECTOR_ONE_STR_HEADER) - 1] == 1 and seen[-1] == 1 and sum(seen) == 2
    decoder = EventStreamDecoder()
    decoder.feed(data[:-3])
    with pytest.raises(EventStreamError):
        decoder.close()


def test_mock_encoder_reproduces_the_aws_vectors():
    assert encode_message({}, b"") == VECTOR_EMPTY
    assert encode_message({"content-type": "application/json"}, b"{'foo':'bar'}") == VECTOR_ONE_STR_HEADER
    assert encode_message({"integer": -1}, b"") == VECTOR_INT32_HEADER
    assert encode_message({":message-type": "error", ":error-code": "code", ":error-message": "message"}, b"") \
        == VECTOR_ERROR
    payload = {"contentBlockIndex": 0, "delta": {"text": "Hi"}}
    frame = event_frame("contentBlockDelta", payload)
    [message] = EventStreamDecoder().feed(frame)
    assert message.event_type == "contentBlockDelta" and message.message_type == "event"
    assert {k: v for k, v in message.json().items() if k != "p"} == payload


TEXT_STREAM = [
    event("messageStart", {"role": "assistant"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": ", world"}}),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event("messageStop", {"stopReason": "max_tokens"}),
    event("metadata", {"usage": {"inputTokens": 12, "outputTokens": 2, "totalTokens": 1214,
                                 "cacheReadInputTokens": 1200, "cacheWriteInputTokens": 0},
                       "metrics": {"latencyMs": 321}}),
]

TOOL_STREAM = [
    event("messageStart", {"role": "assistant"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me check."}}),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {
        "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song"}}}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"sign": '}}}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"WZPZ"}'}}}),
    event("contentBlockStop", {"contentBlockIndex": 1}),
    event("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_2", "name": "x"}}}),
    event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{}"}}}),
    event("contentBlockStop", {"contentBlockIndex": 2}),
    event("messageStop", {"stopReason": "tool_use"}),
    event("metadata", {"usage": {"inputTokens": 375, "outputTokens": 56, "totalTokens": 431},
                       "metrics": {"latencyMs": 900}}),
]


def feed_bytewise(decoder: Any, frames: list[bytes]) -> list[dict[str, Any]]:
    data = b"".join(frames)
    chunks: list[dict[str, Any]] = []
    for i in range(len(data)):
        chunks.extend(decoder.feed(data[i:i + 1]))
    return chunks + decoder.close()


def test_text_stream_one_byte_at_a_time():
    decoder = driver().stream_decoder(CHAT, target())
    chunks = feed_bytewise(decoder, TEXT_STREAM)
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == MODEL for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert [c["choices"] for c in chunks] == [
        [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}],
        [{"index": 0, "delta": {"content": "Hello"}, "logprobs": None, "finish_reason": None}],
        [{"index": 0, "delta": {"content": ", world"}, "logprobs": None, "finish_reason": None}],
        [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}],
        [],
    ]
    assert chunks[-1]["usage"] == {"prompt_tokens": 1212, "completion_tokens": 2, "total_tokens": 1214,
                                   "prompt_tokens_details": {"cached_tokens": 1200}}
    assert decoder.usage == Usage(prompt_tokens=1212, completion_tokens=2, total_tokens=1214, cached_tokens=1200)


def test_chunks_come_out_as_soon_as_their_frame_is_complete():
    decoder = driver().stream_decoder(CHAT, target())
    assert len(decoder.feed(TEXT_STREAM[0])) == 1
    frame = TEXT_STREAM[1]
    assert decoder.feed(frame[:-1]) == []
    assert decoder.feed(frame[-1:])[0]["choices"][0]["delta"] == {"content": "Hello"}
    assert decoder.usage is None  # no metadata yet


def test_tool_use_stream():
    decoder = driver().stream_decoder(CHAT, target())
    chunks = feed_bytewise(decoder, TOOL_STREAM)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[1] == {"content": "Let me check."}
    assert deltas[2] == {"tool_calls": [{"index": 0, "id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "type": "function",
                                         "function": {"name": "top_song", "arguments": ""}}]}
    assert deltas[3:5] == [{"tool_calls": [{"index": 0, "function": {"arguments": '{"sign": '}}]},
                           {"tool_calls": [{"index": 0, "function": {"arguments": '"WZPZ"}'}}]}]
    assert deltas[5]["tool_calls"][0]["index"] == 1 and deltas[5]["tool_calls"][0]["id"] == "tooluse_2"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert (decoder.usage.prompt_tokens, decoder.usage.completion_tokens) == (375, 56)


def test_completions_stream():
    decoder = driver().stream_decoder(COMPLETIONS, target())
    chunks = feed_bytewise(decoder, TEXT_STREAM)
    assert all(c["object"] == "text_completion" for c in chunks)
    assert [c["choices"][0]["text"] for c in chunks if c["choices"]] == ["Hello", ", world", ""]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 1214


@pytest.mark.parametrize("exception_type, status, openai_type", [
    ("throttlingException", 429, "rate_limit_exceeded"), ("validationException", 400, "invalid_request_error"),
    ("modelStreamErrorException", 424, "api_error"), ("internalServerException", 500, "api_error"),
    ("serviceUnavailableException", 503, "api_error"),
])
def test_exception_frames_raise(exception_type, status, openai_type):
    decoder = driver().stream_decoder(CHAT, target())
    decoder.feed(TEXT_STREAM[0] + TEXT_STREAM[1])
    frame = hand_frame([(":exception-type", exception_type), (":content-type", "application/json"),
                        (":message-type", "exception")], b'{"message":"Too many tokens, please wait."}')
    with pytest.raises(ProviderError) as exc:
        decoder.feed(frame)
    assert (exc.value.status, exc.value.type, exc.value.message) == (status, openai_type,
                                                                     "Too many tokens, please wait.")
    assert exc.value.code == exception_type[0].upper() + exception_type[1:]
    # the mock's exception frames decode the same way
    with pytest.raises(ProviderError) as exc:
        driver().stream_decoder(CHAT, target()).feed(exception_frame(exception_type, "boom"))
    assert exc.value.status == status and exc.value.message == "boom"


def test_error_message_frame_and_broken_streams():
    with pytest.raises(ProviderError) as exc:
        driver().stream_decoder(CHAT, target()).feed(VECTOR_ERROR)
    assert exc.value.message == "message" and exc.value.code == "code"
    broken = bytearray(TEXT_STREAM[1])
    broken[-6] ^= 0x01
    with pytest.raises(ProviderError) as exc:
        driver().stream_decoder(CHAT, target()).feed(bytes(broken))
    assert exc.value.status == 502
    decoder = driver().stream_decoder(CHAT, target())
    decoder.feed(TEXT_STREAM[0] + TEXT_STREAM[1][:10])
    with pytest.raises(ProviderError) as exc:
        decoder.close()
    assert exc.value.status == 502


def test_struct_layout_of_a_hand_frame():
    """The documented layout, checked field by field on one frame."""
    frame = event("messageStop", {"stopReason": "end_turn"})
    total, headers_length, prelude_crc = struct.unpack("!III", frame[:12])
    assert total == len(frame) and prelude_crc == zlib.crc32(frame[:8])
    assert struct.unpack("!I", frame[-4:])[0] == zlib.crc32(frame[:-4])
    assert frame[12:12 + headers_length].startswith(b"\x0b:event-type\x07\x00\x0bmessageStop")


def test_content_before_an_error_in_the_same_read_is_not_lost():
    throttled = hand_frame([(":exception-type", "throttlingException"), (":content-type", "application/json"),
                            (":message-type", "exception")], b'{"message":"Rate exceeded"}')
    decoder = driver().stream_decoder(CHAT, target())
    chunks = decoder.feed(TEXT_STREAM[0] + TEXT_STREAM[1] + throttled)
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "Hello"]
    with pytest.raises(ProviderError) as exc:
        decoder.close()
    assert (exc.value.status, exc.value.message) == (429, "Rate exceeded")

    broken = bytearray(TEXT_STREAM[2])
    broken[-6] ^= 0x01
    decoder = driver().stream_decoder(CHAT, target())
    chunks = decoder.feed(TEXT_STREAM[0] + TEXT_STREAM[1] + bytes(broken))
    assert len(chunks) == 2
    with pytest.raises(ProviderError) as exc:
        decoder.feed(TEXT_STREAM[3])
    assert exc.value.status == 502

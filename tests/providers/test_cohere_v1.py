"""Cohere v1 (``/v1/chat``): version choice, requests built, answers and NDJSON streams parsed, on Cohere's documented
v1 bodies (the v1 Chat reference: the non-streamed answer with ``text``, ``generation_id``, ``chat_history``,
``finish_reason`` and ``meta``; the stream of ``stream-start`` / ``text-generation`` / ``stream-end`` lines). The
end-to-end tests at the bottom drive the relay with the openai SDK against the mock's ``cohere_v1`` format.
"""

from __future__ import annotations

import openai
import orjson
import pytest

from tollgate.mock import Reply
from tollgate.providers import driver_for
from tollgate.providers.base import CHAT, COMPLETIONS, EMBEDDINGS, ProviderError, Target, UnreadableAnswer
from tollgate.providers.cohere_v1 import speaks_v1

driver = driver_for("cohere")
V1 = Target(provider="cohere", model="command-r-plus", options={"upstream_url": "https://api.cohere.com/v1/chat"},
            auth={"header_name": "Authorization", "header_value": "Bearer co-secret"})

# Cohere's documented v1 answer (v1 Chat API reference).
ANSWER = {
    "response_id": "d5d5d5d5-0000-4000-8000-000000000001",
    "text": "LLMs are neural networks trained on large amounts of text.",
    "generation_id": "5a8b1a66-7bd6-4c2c-b1a7-000000000002",
    "chat_history": [{"role": "USER", "message": "Tell me about LLMs"},
                     {"role": "CHATBOT", "message": "LLMs are neural networks trained on large amounts of text."}],
    "finish_reason": "COMPLETE",
    "meta": {"api_version": {"version": "1"}, "billed_units": {"input_tokens": 5, "output_tokens": 11},
             "tokens": {"input_tokens": 71, "output_tokens": 11}},
}

# Cohere's documented v1 stream, one JSON object per line.
STREAM = b"".join(orjson.dumps(line) + b"\n" for line in [
    {"is_finished": False, "event_type": "stream-start", "generation_id": "gen-77"},
    {"is_finished": False, "event_type": "text-generation", "text": "LLMs"},
    {"is_finished": False, "event_type": "text-generation", "text": " are neural networks."},
    {"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE",
     "response": {**ANSWER, "generation_id": "gen-77", "text": "LLMs are neural networks."}},
])


def payload(body, route=CHAT, stream=False, target=V1):
    request = driver.build_request(route, body, target, stream)
    return request, orjson.loads(request.body)


@pytest.mark.parametrize(("options", "v1"), [
    ({"upstream_url": "https://api.cohere.com/v1/chat"}, True),
    ({"upstream_url": "http://cohere.internal:8080/v1/chat"}, True),
    ({"upstream_path": "/v1/chat"}, True),
    ({"upstream_url": "https://api.cohere.com/v2/chat"}, False),
    ({}, False),
    ({"cohere": {"api_version": "v1"}}, True),
    ({"cohere": {"api_version": "v2"}, "upstream_url": "https://gw.example/v1/chat"}, False),  # the option decides
])
def test_version_follows_the_upstream_url_path_unless_configured(options, v1):
    assert speaks_v1(Target("cohere", "command-r", options)) is v1


def test_chat_request_is_message_history_and_preamble():
    request, sent = payload({"model": "ignored", "max_tokens": 50, "top_p": 0.5, "stop": "END", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
        {"role": "developer", "content": "No emojis."},
        {"role": "user", "content": [{"type": "text", "text": "Tell me "}, {"type": "text", "text": "about LLMs"}]},
    ]}, stream=True)
    assert request.url == "https://api.cohere.com/v1/chat"
    assert request.headers["Authorization"] == "Bearer co-secret"
    assert sent == {"model": "command-r-plus", "message": "Tell me about LLMs", "stream": True, "max_tokens": 50,
                    "p": 0.5, "stop_sequences": ["END"], "preamble": "You are terse.\n\nNo emojis.",
                    "chat_history": [{"role": "USER", "message": "Hi"}, {"role": "CHATBOT", "message": "Hello."}]}


def test_default_host_with_the_api_version_option_and_completions():
    target = Target("cohere", "command-r", {"cohere": {"api_version": "v1"}})
    request, sent = payload({"prompt": ["Write a haiku"]}, route=COMPLETIONS, target=target)
    assert request.url == "https://api.cohere.com/v1/chat"
    assert sent == {"model": "command-r", "message": "Write a haiku"}
    embed = driver.build_request(EMBEDDINGS, {"input": "x", "dimensions": 8}, target, False)
    assert embed.url == "https://api.cohere.com/v1/embed"
    assert "output_dimension" not in orjson.loads(embed.body)


@pytest.mark.parametrize("body", [
    {"messages": [{"role": "user", "content": "hi"}],
     "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
])
def test_what_v1_cannot_carry_is_refused(body):
    with pytest.raises(ProviderError) as caught:
        driver.build_request(CHAT, body, V1, False)
    assert caught.value.status == 400


def test_parse_documented_answer():
    answer, usage = driver.parse_response(CHAT, orjson.dumps(ANSWER), V1)
    assert answer["id"] == ANSWER["generation_id"]
    assert answer["object"] == "chat.completion"
    assert answer["choices"] == [{"index": 0, "message": {"role": "assistant", "content": ANSWER["text"]},
                                  "logprobs": None, "finish_reason": "stop"}]
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (71, 11, 82)   # tokens first
    assert answer["usage"] == {"prompt_tokens": 71, "completion_tokens": 11, "total_tokens": 82}
    billed_only = {**ANSWER, "meta": {"billed_units": {"input_tokens": 5, "output_tokens": 11}},
                   "finish_reason": "MAX_TOKENS"}
    answer, usage = driver.parse_response(COMPLETIONS, orjson.dumps(billed_only), V1)
    assert answer["choices"][0]["text"] == ANSWER["text"]
    assert answer["choices"][0]["finish_reason"] == "length"
    assert (usage.prompt_tokens, usage.completion_tokens) == (5, 11)


def test_unreadable_answers():
    with pytest.raises(UnreadableAnswer) as caught:
        driver.parse_response(CHAT, orjson.dumps({**ANSWER, "text": None}), V1)
    assert caught.value.code == "upstream_unexpected_shape"
    with pytest.raises(UnreadableAnswer) as caught:
        driver.parse_response(CHAT, b'{"text": "cut', V1)
    assert caught.value.code == "upstream_invalid_json"
    answer, usage = driver.parse_response(CHAT, orjson.dumps({**ANSWER, "meta": {"tokens": {"input_tokens": "5"}}}),
                                          V1)
    assert usage is None and "usage" not in answer   # unreadable usage: none, never zeros (the proxy estimates)
    with pytest.raises(ProviderError) as caught:
        driver.parse_response(CHAT, orjson.dumps({**ANSWER, "finish_reason": "ERROR"}), V1)
    assert caught.value.code == "upstream_generation_error"


def _decode(data: bytes, step: int, route=CHAT) -> tuple[list[dict], object]:
    decoder = driver.stream_decoder(route, V1)
    chunks = []
    for i in range(0, len(data), step):
        chunks += decoder.feed(data[i:i + step])
    return chunks + decoder.close(), decoder


@pytest.mark.parametrize("step", [1, 7, 10_000])
def test_stream_in_any_split(step):
    chunks, decoder = _decode(STREAM, step)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[0]["id"] == "gen-77"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == \
        "LLMs are neural networks."
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 82
    assert decoder.usage.prompt_tokens == 71


def test_stream_framed_as_sse_and_completions():
    sse = b"".join(b"event: x\ndata: " + line + b"\n\n" for line in STREAM.splitlines())
    chunks, _ = _decode(sse, 5, COMPLETIONS)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "LLMs are neural networks."
    assert all(c["object"] == "text_completion" for c in chunks)


def test_stream_errors():
    end = orjson.dumps({"is_finished": True, "event_type": "stream-end", "finish_reason": "ERROR",
                        "response": {"text": ""}}) + b"\n"
    decoder = driver.stream_decoder(CHAT, V1)
    decoder.feed(STREAM.splitlines(keepends=True)[0])
    with pytest.raises(ProviderError):
        decoder.feed(end)
    with pytest.raises(UnreadableAnswer):
        driver.stream_decoder(CHAT, V1).feed(b'{"event_type": "text-generation", "text": 3}\n')


# ---------------------------------------------------------------------------------------------------------- relay


def proxy_config(mock_url: str, route_type: str = CHAT) -> dict:
    return {"route_type": route_type, "auth": {"header_name": "Authorization", "header_value": "Bearer co-secret"},
            "model": {"provider": "cohere", "name": "command-r-plus",
                      "options": {"upstream_url": f"{mock_url}/v1/chat"}},
            "response_streaming": "allow", "timeout": 10}


async def test_relay_v1_chat_and_stream(mock_llm, relay):
    url = await relay(proxy_config(mock_llm.url))
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="client", max_retries=0, timeout=10) as client:
        mock_llm.enqueue(Reply(content="Paris is the capital.", prompt_tokens=9, completion_tokens=5))
        answer = await client.chat.completions.create(model="command-r-plus", messages=[
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}])
        assert answer.choices[0].message.content == "Paris is the capital."
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (9, 5)
        sent = mock_llm.requests[-1]
        assert sent.path == "/v1/chat" and sent.endpoint == "cohere_v1.chat"
        assert sent.json == {"model": "command-r-plus", "message": "Capital of France?", "preamble": "Be brief."}

        mock_llm.enqueue(Reply(content="one two three", prompt_tokens=4, completion_tokens=3))
        stream = await client.chat.completions.create(model="command-r-plus", stream=True,
                                                      stream_options={"include_usage": True},
                                                      messages=[{"role": "user", "content": "count"}])
        chunks = [chunk async for chunk in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
        assert chunks[-1].usage.total_tokens == 7
        assert mock_llm.requests[-1].json["stream"] is True
        assert relay.contexts[-1].usage.completion_tokens == 3

"""The one rule for what the proxy cannot read, for every driver, through the relay over real HTTP (mock LLM in each
provider's wire format): a 502 ``upstream_error`` naming the cause and the provider, or a stream that ends with an
error event and no ``[DONE]``; logged with the provider and the first bytes, secrets scrubbed; never an empty
success. Usage the provider did not give, or gave in a form that cannot be read, is the estimate, marked.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tollgate.mock import Reply

from .e2e import BEDROCK_SECRET, CHAT_PROVIDERS, PROVIDER_KEYS, provider_model
from .helpers import MESSAGES, openai_target, chat_config, post, sse_events

PROVIDERS = [*CHAT_PROVIDERS, "cohere-v1"]
UNREADABLE_CODES = {"upstream_invalid_json", "upstream_invalid_frame", "upstream_unexpected_shape",
                    "upstream_empty_answer", "upstream_incomplete_stream", "upstream_unreadable"}
# One usage object with every provider's field names, all of the wrong type: whichever format carries it, the
# usage cannot be read.
BAD_USAGE = {"prompt_tokens": "12", "completion_tokens": "3", "total_tokens": "15", "input_tokens": "12",
             "output_tokens": "3", "promptTokenCount": "12", "candidatesTokenCount": "3", "totalTokenCount": "15",
             "inputTokens": "12", "outputTokens": "3", "totalTokens": "15",
             "tokens": {"input_tokens": "12", "output_tokens": "3"},
             "billed_units": {"input_tokens": "12", "output_tokens": "3"}}


def config(provider: str, mock_url: str) -> dict[str, Any]:
    if provider == "cohere-v1":
        model, auth = provider_model("cohere", mock_url)
        model = {**model, "name": "command-r-plus", "options": {"upstream_url": mock_url + "/v1/chat"}}
    else:
        model, auth = provider_model(provider, mock_url)
    return {"route_type": "llm/v1/chat", "model": model, "auth": auth, "timeout": 10, "response_streaming": "allow"}


def name_of(provider: str) -> str:
    return "cohere" if provider == "cohere-v1" else provider


def unreadable_logs(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == "unreadable provider answer"]


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tollgate")


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("body", [b'{"id": "x", "choices": [{"mess', b"[1, 2, 3]", b'"just a string"', b"{}",
                                  b"<html>502 Bad Gateway</html>"])
async def test_an_unreadable_answer_is_a_502_that_names_cause_and_provider(mock, relay, caplog, provider, body):
    r = await relay(config(provider, mock.url))
    key = PROVIDER_KEYS.get(name_of(provider), BEDROCK_SECRET)
    mock.enqueue(Reply(body=body + b" " + key.encode(), content_type="application/json"))
    answer = await post(r.url, {"messages": MESSAGES})
    assert answer.status == 502, answer.text
    error = answer.json()["error"]
    assert error["type"] == "upstream_error" and error["code"] in UNREADABLE_CODES
    assert error["message"].startswith(f"{name_of(provider)} answered in a form Tollgate cannot read")
    logged = unreadable_logs(caplog)
    assert logged and logged[-1]["provider"] == name_of(provider) and logged[-1]["code"] == error["code"]
    assert logged[-1]["first_bytes"].startswith(body[:20].decode())
    assert key not in logged[-1]["first_bytes"] and key not in answer.text


EMPTY_ANSWERS = {
    "openai": {"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": []},
    "anthropic": {"id": "msg", "type": "message", "role": "assistant", "content": [], "stop_reason": "end_turn",
                  "usage": {"input_tokens": 3, "output_tokens": 0}},
    "gemini": {"candidates": [], "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}},
    "cohere": {"id": "c", "finish_reason": "COMPLETE", "message": {"role": "assistant", "content": []}},
    "mistral": {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}]},
    "bedrock": {"output": {"message": {"role": "assistant", "content": []}}, "stopReason": "end_turn",
                "usage": {"inputTokens": 3, "outputTokens": 0, "totalTokens": 3}},
    "cohere-v1": {"text": "", "generation_id": "g", "finish_reason": "COMPLETE"},
}


@pytest.mark.parametrize("provider", sorted(EMPTY_ANSWERS))
async def test_an_empty_answer_is_never_a_success(mock, relay, provider):
    r = await relay(config(provider, mock.url))
    mock.enqueue(Reply(body=EMPTY_ANSWERS[provider]))
    answer = await post(r.url, {"messages": MESSAGES})
    assert answer.status == 502
    assert answer.json()["error"]["code"] == "upstream_empty_answer"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_broken_stream_frame_ends_the_stream_with_an_error_and_no_done(mock, relay, caplog, provider):
    r = await relay(config(provider, mock.url))
    mock.enqueue(Reply(content="one two three four", malformed=True))
    answer = await post(r.url, {"messages": MESSAGES, "stream": True})
    if answer.status == 502:        # nothing readable came before the broken frame: a plain error, failover-able
        error = answer.json()["error"]
    else:
        assert answer.status == 200
        events = sse_events(answer.text)
        assert "[DONE]" not in events
        error = events[-1]["error"]
    assert error["type"] == "upstream_error" and error["code"] in UNREADABLE_CODES
    assert name_of(provider) in error["message"]
    assert unreadable_logs(caplog)[-1]["provider"] == name_of(provider)


async def test_a_stream_that_never_finishes_or_says_nothing_is_an_error(mock, relay):
    r = await relay(config("openai", mock.url))

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    for events, code in (([chunk({"role": "assistant", "content": "hi"}), "[DONE]"], "upstream_incomplete_stream"),
                         ([chunk({"role": "assistant", "content": ""}), chunk({}, "stop"), "[DONE]"],
                          "upstream_empty_answer"),
                         ([{"unknown": "shape"}, "[DONE]"], "upstream_unexpected_shape"),
                         (["[DONE]"], "upstream_incomplete_stream")):
        mock.enqueue(Reply(events=events, content_type="text/event-stream"))
        answer = await post(r.url, {"messages": MESSAGES, "stream": True})
        if answer.status == 502:
            error = answer.json()["error"]
        else:
            sent = sse_events(answer.text)
            assert "[DONE]" not in sent
            error = sent[-1]["error"]
        assert error["code"] == code, events


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True])
async def test_unreadable_usage_is_the_estimate_marked_and_charged(mock, relay, provider, stream):
    r = await relay(config(provider, mock.url))
    mock.enqueue(Reply(content="four words of text", usage=BAD_USAGE))
    body = {"messages": MESSAGES}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    answer = await post(r.url, body)
    assert answer.status == 200, answer.text
    if stream:
        events = sse_events(answer.text)
        assert events[-1] == "[DONE]"
        last = events[-2]
        assert last["choices"] == [] and isinstance(last["id"], str) and isinstance(last["created"], int)
        usage = last["usage"]
    else:
        usage = answer.json()["usage"]
    assert usage["estimated"] is True and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    charged = r.contexts[-1].usage
    assert charged.estimated and charged.total_tokens == usage["total_tokens"]


async def test_an_unreadable_answer_fails_over_to_the_next_target(mock, relay):
    r = await relay(chat_config([openai_target(mock.url, "primary"), openai_target(mock.url, "secondary")],
                                balancer={"algorithm": "priority"}))
    mock.enqueue(Reply(body=b'{"choices": "none"}', content_type="application/json"),
                 path="/primary/v1/chat/completions")
    mock.enqueue(Reply(content="from the secondary"), path="/secondary/v1/chat/completions")
    answer = await post(r.url, {"model": "gpt-4o-mini", "messages": MESSAGES})
    assert answer.status == 200 and answer.json()["choices"][0]["message"]["content"] == "from the secondary"
    assert answer.headers["X-Tollgate-Attempts"] == "2"


async def test_openai_compatible_answers_get_openai_s_envelope(mock, relay):
    """A server that leaves out id/created/object and the finish reason still reaches the client in OpenAI's shape."""
    r = await relay(config("openai", mock.url))
    mock.enqueue(Reply(body={"choices": [{"message": {"content": "hi there"}}], "created": "yesterday"}))
    answer = await post(r.url, {"messages": MESSAGES})
    data = answer.json()
    assert answer.status == 200
    assert isinstance(data["id"], str) and isinstance(data["created"], int) and data["object"] == "chat.completion"
    assert data["choices"][0] == {"message": {"content": "hi there", "role": "assistant"}, "finish_reason": "stop",
                                  "index": 0, "logprobs": None}
    assert data["usage"]["estimated"] is True
    assert data["model"] == "gpt-4o-mini"      # the target's model, when the server names none

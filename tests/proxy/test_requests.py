"""What a request may and may not do: bad input, model pinning, templates, allow_override, headers, redaction."""

from __future__ import annotations

import pytest

from tollgate.mock import Reply

from .helpers import KEYS, MESSAGES, chat_config, hits, openai_target, post

CHAT = "/v1/chat/completions"


def single(mock, **extra):
    return {"route_type": "llm/v1/chat", "model": {"provider": "openai", "name": "gpt-4o-mini", "options": {
        "upstream_url": mock.url + "/primary" + CHAT}},
        "auth": {"header_name": "Authorization", "header_value": f"Bearer {KEYS['primary']}"}, **extra}


@pytest.mark.parametrize("kwargs, status, code", [
    ({"raw": b'{"messages": [', "body": None}, 400, "invalid_json"),
    ({"raw": b'[1, 2]'}, 400, "invalid_json"),
    ({"headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
    ({"body": {"model": "gpt-4o-mini"}}, 400, "invalid_request"),                    # no messages
    ({"body": {"messages": "hi"}}, 400, "invalid_request"),
    ({"body": {"messages": MESSAGES, "model": 5}}, 400, "invalid_request"),
    ({"body": {"messages": MESSAGES, "stream": "yes"}}, 400, "invalid_request"),
    ({"body": {"messages": MESSAGES, "model": "gpt-4o"}}, 400, "model_not_allowed"),
    ({"method": "GET", "raw": b""}, 405, "method_not_allowed"),
    ({"body": {"messages": [{"foo": 1}]}}, 400, "invalid_request"),                   # no role, no content
    ({"body": {"messages": ["hi"]}}, 400, "invalid_request"),
    ({"body": {"messages": [{"role": "wizard", "content": "hi"}]}}, 400, "invalid_request"),
    ({"body": {"messages": [{"role": "user"}]}}, 400, "invalid_request"),
    ({"body": {"messages": [{"role": "user", "content": 5}]}}, 400, "invalid_request"),
])
async def test_bad_input_gets_an_openai_style_4xx_that_says_what_is_wrong(mock, relay, kwargs, status, code):
    r = await relay(single(mock))
    result = await post(r.url, **{k: v for k, v in kwargs.items() if k != "body"}, body=kwargs.get("body"))
    error = result.json()["error"]
    assert result.status == status and error["code"] == code and error["message"]
    assert error["type"] == "invalid_request_error"  # the client's fault, whatever the status
    assert mock.request_count == 0


async def test_messages_openai_accepts_pass(mock, relay):
    r = await relay(single(mock))
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "what is 2+2?"}]},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "4"}]
    result = await post(r.url, {"messages": messages})
    assert result.status == 200, result.text
    assert mock.last_request.json["messages"] == messages


async def test_body_over_the_limit_is_a_413(mock, relay):
    r = await relay(single(mock, max_request_body_size=1000))
    result = await post(r.url, {"messages": [{"role": "user", "content": "x" * 2000}]})
    assert result.status == 413 and "1000" in result.json()["error"]["message"]


async def test_streaming_denied_and_always(mock, relay):
    denied = await relay(single(mock, response_streaming="deny"))
    result = await post(denied.url, {"messages": MESSAGES, "stream": True})
    assert result.status == 400 and result.json()["error"]["code"] == "streaming_denied"
    always = await relay(single(mock, response_streaming="always"))
    result = await post(always.url, {"messages": MESSAGES})
    assert result.status == 200 and result.headers["Content-Type"].startswith("text/event-stream")


async def test_a_route_that_leaves_the_model_open_needs_one(mock, relay):
    cfg = single(mock)
    cfg["model"]["name"] = None
    r = await relay(cfg)
    result = await post(r.url, {"messages": MESSAGES})
    assert result.status == 400 and result.json()["error"]["code"] == "model_required"
    assert (await post(r.url, {"messages": MESSAGES, "model": "any-model"})).status == 200
    assert mock.last_request.json["model"] == "any-model"


# -- the pinned model cannot be escaped -------------------------------------------------------------------------

ESCAPES = [
    ({"model": "gpt-4o"}, {}, ""),                                                  # body model
    ({"model": "gpt-4o-mini", "deployment": "gpt-4o", "engine": "gpt-4o"}, {}, ""),  # other body fields
    ({}, {"X-Kong-LLM-Model": "openai/gpt-4o", "X-Model": "gpt-4o", "Model": "gpt-4o",
          "X-Tollgate-Target": "other", "OpenAI-Model": "gpt-4o"}, ""),                # headers
    ({}, {}, "?model=gpt-4o&deployment=gpt-4o"),                                      # query
    ({"model": "gpt-4o-mini"}, {}, "/../../gpt-4o/chat/completions"),                  # path tricks
]


@pytest.mark.parametrize("body, headers, suffix", ESCAPES)
async def test_a_pinned_model_cannot_be_escaped(mock, relay, body, headers, suffix):
    r = await relay(single(mock))
    path = CHAT + suffix if suffix.startswith("?") else (suffix if suffix else CHAT)
    result = await post(r.url, {"messages": MESSAGES, **body}, headers=headers, path=path)
    if body.get("model") not in (None, "gpt-4o-mini"):
        assert result.status == 400 and result.json()["error"]["code"] == "model_not_allowed"
        assert mock.request_count == 0
        return
    assert result.status == 200, result.text
    (sent,) = mock.requests
    assert sent.json["model"] == "gpt-4o-mini" and sent.path == "/primary" + CHAT and sent.query_string == ""
    assert result.headers["X-Kong-LLM-Model"] == "openai/gpt-4o-mini"


async def test_with_targets_only_their_models_are_reachable(mock, relay):
    cfg = chat_config([openai_target(mock.url, "primary", "gpt-4o"),
                       openai_target(mock.url, "secondary", "gpt-4o-mini", match={"models": ["small"]})])
    r = await relay(cfg)
    for model in ("gpt-4o", "gpt-4o-mini", "small", None):
        result = await post(r.url, {"messages": MESSAGES, **({"model": model} if model else {})})
        assert result.status == 200
        assert mock.last_request.json["model"] in ("gpt-4o", "gpt-4o-mini")
    assert (await post(r.url, {"messages": MESSAGES, "model": "o1-pro"})).status == 400
    await post(r.url, {"messages": MESSAGES, "model": "small"})
    assert mock.last_request.path.startswith("/secondary/")        # the rule routes "small" to its target


# -- templates ----------------------------------------------------------------------------------------------------

async def test_templates_choose_the_model_only_where_the_config_puts_one(mock, relay):
    cfg = single(mock)
    cfg["model"]["name"] = "$(headers.x-model)"
    r = await relay(cfg)
    assert (await post(r.url, headers={"X-Model": "gpt-4o"})).status == 200
    assert mock.last_request.json["model"] == "gpt-4o"
    result = await post(r.url)
    assert result.status == 400 and "x-model" in result.json()["error"]["message"]
    result = await post(r.url, headers={"X-Model": "../admin"})
    assert result.status == 400 and "not allowed" in result.json()["error"]["message"]


async def test_query_and_uri_capture_templates(mock, relay):
    cfg = single(mock)
    cfg["model"]["name"] = "$(uri_captures.family)-$(query_params.size)"
    cfg["model"]["options"]["upstream_url"] = mock.url + "/$(uri_captures.family)/v1/chat/completions"
    r = await relay(cfg, attached={"uri_captures": {"family": "gpt", "1": "gpt"}})
    assert (await post(r.url, path=CHAT + "?size=4o")).status == 200
    assert mock.last_request.json["model"] == "gpt-4o" and mock.last_request.path == "/gpt/v1/chat/completions"
    assert r.policy.needs_uri_captures


# -- auth ---------------------------------------------------------------------------------------------------------

async def test_the_clients_own_key_replaces_the_configured_one_only_with_allow_override(mock, relay):
    fixed = await relay(single(mock))
    await post(fixed.url, headers={"Authorization": "Bearer client-key"})
    assert mock.last_request.headers["Authorization"] == f"Bearer {KEYS['primary']}"
    cfg = single(mock)
    cfg["auth"]["allow_override"] = True
    open_ = await relay(cfg)
    await post(open_.url, headers={"Authorization": "Bearer client-key"})
    assert mock.last_request.headers["Authorization"] == "Bearer client-key"
    await post(open_.url)
    assert mock.last_request.headers["Authorization"] == f"Bearer {KEYS['primary']}"


async def test_a_key_echoed_by_the_provider_is_redacted(mock, relay):
    r = await relay(chat_config([openai_target(mock.url, "primary")]))
    mock.enqueue(Reply.fail(401, f"Incorrect API key provided: {KEYS['primary']}"), path="/primary" + CHAT)
    result = await post(r.url)
    assert result.status == 401 and KEYS["primary"] not in result.text and "[redacted]" in result.text
    r2 = await relay(chat_config([openai_target(mock.url, "primary"), openai_target(mock.url, "secondary")]))
    mock.enqueue(Reply.fail(500, f"key {KEYS['primary']}"), path="/primary" + CHAT)
    mock.enqueue(Reply.fail(500, f"key {KEYS['secondary']}"), path="/secondary" + CHAT)
    result = await post(r2.url)
    assert result.status == 502 and not any(key in result.text for key in KEYS.values())


# -- response headers -----------------------------------------------------------------------------------------------

async def test_model_name_header_off_hides_model_and_target(mock, relay):
    r = await relay(single(mock, model_name_header=False))
    result = await post(r.url)
    assert result.status == 200 and "X-Kong-LLM-Model" not in result.headers and result.target is None


async def test_no_rule_matching_is_a_400(mock, relay):
    r = await relay(chat_config([openai_target(mock.url, "primary", match={"headers": {"x-tier": ["gold"]}})]))
    result = await post(r.url)
    assert result.status == 400 and result.json()["error"]["code"] == "no_matching_target"
    assert (await post(r.url, headers={"X-Tier": "gold"})).status == 200
    assert hits(mock, "primary") == 1


async def test_a_target_that_cannot_serve_the_request_is_skipped(mock, relay):
    embeddings = {"route_type": "llm/v1/embeddings", "targets": [
        {"model": {"provider": "anthropic", "name": "claude-sonnet-4-5"}, "description": "no-embeddings"},
        {"model": {"provider": "openai", "name": "text-embedding-3-small",
                   "options": {"upstream_url": mock.url + "/v1/embeddings"}}, "description": "openai"}]}
    r = await relay(embeddings)
    result = await post(r.url, {"input": "hello"}, path="/v1/embeddings")
    assert result.status == 200 and result.target == "openai"


async def test_a_misconfigured_lone_target_is_a_500(relay):
    r = await relay({"route_type": "llm/v1/chat", "model": {"provider": "openai-compatible", "name": "llama3"}})
    result = await post(r.url)
    assert result.status == 500 and result.json()["error"]["code"] == "misconfigured"

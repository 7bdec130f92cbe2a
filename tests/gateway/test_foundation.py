"""Issue 3's acceptance, end to end: Kong double -> real Tollgate process -> relay -> mock LLM."""

from __future__ import annotations

import asyncio
import os
import time

import aiohttp
import openai
import orjson
import pytest

from tests.harness.procs import FIXTURE_PLUGINS_DIR  # noqa: F401  (kong-pdk style fixtures live there)
from tollgate.mock import Reply

from .routes import deck, proxy_config

TEST_PLUGINS = os.path.join(os.path.dirname(__file__), "..", "fixtures", "test_plugins")
BIG = 10 * 1024 * 1024


async def start_gateway(tollgate_process, kong, routes, *, kong_version="3.9", plugins_dir=None, **kwargs):
    process = tollgate_process(plugins_dir=plugins_dir)
    double = await kong(deck(process.relay_url, routes), process=process, kong_version=kong_version,
                        client_body_buffer_size=BIG, **kwargs)
    return process, double


@pytest.mark.parametrize("kong_version", ["3.9", "3.8"])
async def test_chat_through_kong_discovered_both_ways(tollgate_process, kong, mock_llm, kong_version):
    _, double = await start_gateway(tollgate_process, kong, {"/v1": [
        {"name": "tollgate-proxy", "config": proxy_config(mock_llm.url + "/v1/chat/completions")}]},
        kong_version=kong_version)
    client = openai.AsyncOpenAI(base_url=double.url + "/v1", api_key="client-key", max_retries=0)
    answer = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content and answer.usage.total_tokens > 0
    sent = mock_llm.last_request
    assert sent.headers["Authorization"] == "Bearer sk-test-secret-0123456789abcdef"
    assert "x-tollgate-attachment" not in {k.lower() for k in sent.headers}


async def test_raising_plugin_gives_json_500_fast_and_server_keeps_serving(tollgate_process, kong, mock_llm):
    _, double = await start_gateway(tollgate_process, kong, {
        "/boom": [{"name": "raising", "config": {}}],
        "/v1": [{"name": "tollgate-proxy", "config": proxy_config(mock_llm.url + "/v1/chat/completions")}],
    }, plugins_dir=TEST_PLUGINS)
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        async with http.get(double.url + "/boom") as answer:
            assert answer.status == 500
            assert "raising failed" in (await answer.json())["message"]
        assert time.monotonic() - started < 1.0
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "again"}]}
        for _ in range(100):
            async with http.post(double.url + "/v1/chat/completions", json=body) as answer:
                assert answer.status == 200


async def test_concurrent_handlers_waiting_on_io_do_not_serialise(tollgate_process, kong):
    _, double = await start_gateway(tollgate_process, kong, {
        "/slow": [{"name": "sleepy", "config": {"delay": 0.2}}],
        "/slow-sync": [{"name": "sleepy_sync", "config": {"delay": 0.2}}],
    }, plugins_dir=TEST_PLUGINS)
    async with aiohttp.ClientSession() as http:
        for path in ("/slow", "/slow-sync"):
            async def one(i):
                async with http.get(f"{double.url}{path}/{i}") as answer:
                    return answer.status
            started = time.monotonic()
            statuses = await asyncio.gather(*(one(i) for i in range(50)))
            elapsed = time.monotonic() - started
            # The relay has no proxy on these routes, so it answers 500 "no tollgate-proxy" or 403:
            # what matters is that the 50 access phases ran side by side. One after another they take 10 s;
            # the bound is half that, so a loaded machine's scheduling delays cannot fail it, and serialising can.
            assert len(statuses) == 50 and elapsed < 50 * 0.2 / 2, (path, elapsed)


async def test_5mb_request_and_5mb_answer_pass_intact(tollgate_process, kong, mock_llm):
    config = proxy_config(mock_llm.url + "/v1/chat/completions", max_request_body_size=BIG)
    _, double = await start_gateway(tollgate_process, kong, {"/v1": [{"name": "tollgate-proxy", "config": config}]})
    prompt = os.urandom(3_900_000).hex()[:5_000_000]
    mock_llm.enqueue(Reply(size=5_000_000))
    async with aiohttp.ClientSession() as http:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}
        async with http.post(double.url + "/v1/chat/completions", data=orjson.dumps(body),
                             headers={"Content-Type": "application/json"}) as answer:
            assert answer.status == 200
            content = (await answer.json())["choices"][0]["message"]["content"]
    assert len(content) == 5_000_000
    assert mock_llm.last_request.json["messages"][0]["content"] == prompt


async def test_stream_reaches_the_sdk_chunk_by_chunk(tollgate_process, kong, mock_llm):
    _, double = await start_gateway(tollgate_process, kong, {"/v1": [
        {"name": "tollgate-proxy", "config": proxy_config(mock_llm.url + "/v1/chat/completions")}]})
    mock_llm.enqueue(Reply(content=" ".join(f"w{i}" for i in range(20)), chunks=20, interval=0.1))
    client = openai.AsyncOpenAI(base_url=double.url + "/v1", api_key="k", max_retries=0)
    started = time.monotonic()
    stream = await client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                  messages=[{"role": "user", "content": "count"}])
    arrivals = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) >= 20
    assert arrivals[0] < 0.6, arrivals[0]          # about 100 ms, never the 2 s of a buffered answer
    assert arrivals[-1] - arrivals[0] > 1.5        # spread out as the mock sent them


async def test_relay_refuses_requests_without_attachment(tollgate_process, mock_llm):
    process = tollgate_process()
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "sneak"}]}
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"x-tollgate-attachment": "forged-token"}):
            async with http.post(process.relay_url + "/v1/chat/completions", json=body, headers=headers) as answer:
                assert answer.status == 403
                assert (await answer.json())["error"]["code"] == "policy_not_attached"
    assert mock_llm.request_count == 0


async def test_a_failed_plugin_call_is_not_a_bypass(tollgate_process, kong, mock_llm):
    limit = {"limits": [{"limit": 1000000, "window_size": "minute"}]}
    _, double = await start_gateway(tollgate_process, kong, {"/v1": [
        {"name": "tollgate-token-limit", "config": limit},
        {"name": "tollgate-proxy", "config": proxy_config(mock_llm.url + "/v1/chat/completions")}]})
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as http:
        async with http.post(double.url + "/v1/chat/completions", json=body) as answer:
            assert answer.status == 200  # both plugins ran: the route works
        double.faults.fail_event("tollgate-token-limit", "access", at_step=0, mode="socket")
        async with http.post(double.url + "/v1/chat/completions", json=body) as answer:
            refused = await answer.json()
            assert answer.status == 403, refused
        assert "tollgate-token-limit" in refused["error"]["message"]
    assert mock_llm.request_count == 1

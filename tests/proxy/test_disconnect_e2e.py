"""A client that goes away cancels the provider call, streamed or not, and the after stages still settle.

client (gives up after 0.2 s) -> Kong double (closes its upstream connection, as nginx does) -> ``tollgate serve``
(the relay's handler is cancelled, and the provider call with it) -> the mock LLM (2 s before any answer: it sees the
connection close). The token limit's reservation is settled on what is known, never left to leak.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from tests.harness import KongDouble
from tests.harness.procs import TollgateServer
from tollgate import tokens
from tollgate.mock import MockLLM, Reply

pytestmark = pytest.mark.asyncio(loop_scope="module")

LIMIT = 100_000
MAX_TOKENS = 500
BODY = {"model": "gpt-4o-mini", "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": "Take your time with this one."}]}
ESTIMATE = tokens.count_chat_prompt(BODY, "gpt-4o-mini")


class Env:
    def __init__(self, mock: MockLLM, proc: TollgateServer, kong: KongDouble):
        self.mock, self.proc, self.kong = mock, proc, kong

    def lines(self, msg: str) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.proc.stderr_text().splitlines()
                if line.startswith("{") and f'"msg":"{msg}"' in line]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env():
    mock = MockLLM(shutdown_timeout=0.1)
    await mock.start()
    proc = TollgateServer(env={"TOLLGATE_LOG_LEVEL": "info"})
    await proc.astart()
    plugins = [
        {"name": "tollgate-token-limit", "config": {
            "limits": [{"limit": LIMIT, "window_size": "day", "tokens_count_strategy": "total_tokens"}],
            "identifier": "ip", "window_type": "fixed", "strategy": "local", "reserve_max_tokens": True}},
        {"name": "tollgate-proxy", "config": {
            "route_type": "llm/v1/chat", "timeout": 10,
            "model": {"provider": "openai", "name": "gpt-4o-mini",
                      "options": {"upstream_url": mock.url + "/v1/chat/completions"}},
            "auth": {"header_name": "Authorization", "header_value": "Bearer sk-disconnect-0123456789"}}}]
    config = {"_format_version": "3.0", "services": [{"name": "relay", "url": proc.relay_url, "retries": 0, "routes": [
        {"name": "slow", "paths": ["/slow"], "strip_path": False, "plugins": plugins}]}]}
    kong = KongDouble(proc.entries("3.9", ["tollgate-proxy", "tollgate-token-limit"]), config)
    await kong.start()
    e = Env(mock, proc, kong)
    assert (await post(e))[0] == 200          # warm: plugin instances, token counting, connection pools
    yield e
    await kong.stop()
    proc.cleanup()
    await mock.stop()


async def post(env: Env, timeout: float | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
        async with http.post(env.kong.url + "/slow/v1/chat/completions", json=BODY) as answer:
            await answer.read()
            return answer.status, answer.headers


async def remaining(env: Env) -> int:
    """What the day window has left once the requests so far are settled (a probe's own charge is added back)."""
    env.mock.enqueue(Reply(prompt_tokens=ESTIMATE, completion_tokens=0))
    status, headers = await post(env)
    assert status == 200
    await asyncio.sleep(0.1)                                  # its own settle
    return int(headers["X-AI-RateLimit-Remaining-day"]) + (ESTIMATE + MAX_TOKENS) - ESTIMATE


async def eventually(check: Any, within: float = 3.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.02)


async def test_a_client_disconnect_cancels_a_non_streaming_call_and_settles_its_reservation(env: Env):
    before = await remaining(env)
    env.mock.reset()
    env.mock.enqueue(Reply(latency=2.0, prompt_tokens=ESTIMATE, completion_tokens=300))
    seen = len(env.lines("ai request"))
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await post(env, timeout=0.2)                           # the client gives up after 0.2 s

    # the provider's connection is closed long before its 2 s are up
    assert await eventually(lambda: env.mock.requests), "the request never reached the provider"
    recorded = env.mock.requests[-1]
    assert await eventually(lambda: recorded.disconnected), "the mock never saw the connection close"
    assert recorded.status is None and recorded.done_at - recorded.received_at < 1.2
    assert time.monotonic() - started < 1.5
    cancelled = await eventually(lambda: env.lines("client disconnected; provider call cancelled"))
    assert cancelled and cancelled[-1]["target"] == "openai/gpt-4o-mini"

    # the after stages ran: analytics (status 499, the prompt it was sent, as an estimate) and the token limit
    line = (await eventually(lambda: env.lines("ai request")[seen:]))[0]
    assert line["status"] == 499
    usage = line["ai"]["proxy"]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["estimated"]) == (ESTIMATE, 0, True)

    env.mock.enqueue(Reply(prompt_tokens=ESTIMATE, completion_tokens=10))
    status, headers = await post(env)
    assert status == 200
    # settled: the first request holds only its prompt; a leaked reservation would still hold prompt + max_tokens
    assert int(headers["X-AI-RateLimit-Remaining-day"]) == before - ESTIMATE - (ESTIMATE + MAX_TOKENS)


async def test_a_client_that_waits_gets_its_answer(env: Env):
    env.mock.enqueue(Reply(latency=0.3, content="worth the wait"))
    status, _ = await post(env, timeout=5)
    assert status == 200 and not env.mock.requests[-1].disconnected

"""Retries, failover, backoff, timeouts and circuit breakers, on the relay path in process (mock LLM over HTTP)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tollgate.mock import Reply

from .helpers import MESSAGES, chat_config, hits, openai_target, post, sse_events

CHAT = "/v1/chat/completions"


def two(mock, **balancer):
    return chat_config([openai_target(mock.url, "primary", "gpt-4o"),
                        openai_target(mock.url, "secondary", "gpt-4o-mini", priority=2)],
                       balancer={"algorithm": "priority", **balancer}, timeout=5)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 529])
async def test_a_failing_primary_fails_over_to_the_secondary(mock, relay, status):
    r = await relay(two(mock))
    mock.enqueue(Reply.fail(status, retry_after=7 if status == 429 else None), path="/primary" + CHAT)
    result = await post(r.url)
    assert result.status == 200, result.text
    assert result.target == "secondary" and result.headers["X-Tollgate-Attempts"] == "2"
    assert result.headers["X-Kong-LLM-Model"] == "openai/gpt-4o-mini"
    assert (hits(mock, "primary"), hits(mock, "secondary")) == (1, 1)
    assert result.elapsed < 1                                      # no backoff when moving to another target
    assert r.contexts[-1].meta["target"] == "secondary" and r.contexts[-1].meta["attempts"] == 2


async def test_primary_429_then_500_then_the_secondary_answers(mock, relay):
    """One request: the primary is retried once after its Retry-After, fails again, the secondary answers."""
    cfg = chat_config([openai_target(mock.url, "primary", "gpt-4o"),
                       openai_target(mock.url, "secondary", "gpt-4o-mini", priority=2)],
                      balancer={"algorithm": "priority", "retries": 2,
                                "retry_backoff": {"base": 0.05, "max": 1}}, timeout=5)
    # a primary listed twice is what "retry the primary before failing over" looks like in config
    cfg["targets"].insert(1, {**openai_target(mock.url, "primary", "gpt-4o"), "description": "primary-again"})
    r = await relay(cfg)
    mock.enqueue(Reply.fail(429, retry_after=0.2), Reply.fail(500), path="/primary" + CHAT)
    result = await post(r.url)
    assert result.status == 200 and result.target == "secondary" and result.headers["X-Tollgate-Attempts"] == "3"
    assert [req.path.split("/")[1] for req in mock.requests] == ["primary", "primary", "secondary"]


async def test_a_second_round_waits_for_retry_after_within_bounds(mock, relay):
    cfg = chat_config([openai_target(mock.url, "primary")], balancer={"retries": 2, "retry_backoff": {"max": 0.3}})
    r = await relay(cfg)
    mock.enqueue(Reply.fail(429, retry_after=0.25), Reply.fail(429, retry_after=60), path="/primary" + CHAT)
    result = await post(r.url)
    assert result.status == 200 and result.headers["X-Tollgate-Attempts"] == "3"
    assert 0.5 <= result.elapsed < 1.5          # 0.25 s as asked, then 60 s bounded to 0.3 s


async def test_without_time_left_for_the_backoff_the_error_is_returned(mock, relay):
    cfg = chat_config([openai_target(mock.url, "primary")], timeout=1,
                      balancer={"retries": 3, "retry_backoff": {"max": 30}})
    r = await relay(cfg)
    mock.enqueue(Reply.fail(429, retry_after=20), path="/primary" + CHAT)
    result = await post(r.url)
    assert result.status == 429 and result.headers["Retry-After"] == "20" and result.elapsed < 0.5
    assert hits(mock, "primary") == 1


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422])
async def test_client_errors_never_fail_over(mock, relay, status):
    r = await relay(two(mock))
    mock.enqueue(Reply.fail(status, "bad request body"), path="/primary" + CHAT)
    result = await post(r.url)
    assert result.status == status and "bad request body" in result.json()["error"]["message"]
    assert hits(mock, "secondary") == 0


async def test_403_and_404_fail_over_only_when_listed(mock, relay):
    r = await relay(two(mock, failover_criteria=["http_403", "http_404"]))
    mock.enqueue(Reply.fail(403), path="/primary" + CHAT)
    assert (await post(r.url)).target == "secondary"
    mock.enqueue(Reply.fail(500), path="/primary" + CHAT)
    assert (await post(r.url)).status == 500                       # 500 is not in this route's criteria


async def test_a_timeout_fails_over_and_a_lone_timeout_is_a_504(mock, relay):
    r = await relay(two(mock, read_timeout=300))
    mock.enqueue(Reply(latency=3), path="/primary" + CHAT)
    result = await post(r.url)
    assert result.status == 200 and result.target == "secondary" and result.elapsed < 1.5

    lone = await relay(chat_config([openai_target(mock.url, "primary")], balancer={"read_timeout": 300}))
    mock.enqueue(Reply(latency=3), path="/primary" + CHAT)
    result = await post(lone.url)
    assert result.status == 504 and result.json()["error"]["code"] == "upstream_timeout" and result.elapsed < 1.5


async def test_an_unreachable_target_fails_over(mock, relay):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    cfg = two(mock)
    cfg["targets"][0]["model"]["options"]["upstream_url"] = dead + "/v1/chat/completions"
    r = await relay(cfg)
    result = await post(r.url)
    assert result.status == 200 and result.target == "secondary"


async def test_every_target_down_is_a_502_that_names_the_last_error(mock, relay):
    r = await relay(two(mock))
    mock.enqueue(Reply.fail(500, "primary exploded"), path="/primary" + CHAT)
    mock.enqueue(Reply.fail(503, "secondary overloaded"), path="/secondary" + CHAT)
    result = await post(r.url)
    error = result.json()["error"]
    assert result.status == 502 and error["code"] == "all_targets_failed"
    assert "secondary" in error["message"] and "503" in error["message"] and "overloaded" in error["message"]


async def test_every_target_slow_ends_within_the_timeout(mock, relay):
    r = await relay(chat_config([openai_target(mock.url, "primary"), openai_target(mock.url, "secondary")],
                                timeout=1))
    mock.add_rule(Reply(latency=5))
    result = await post(r.url)
    assert result.status == 504 and 0.9 < result.elapsed < 1.6


async def test_a_lone_target_passes_its_own_error_on(mock, relay):
    r = await relay(chat_config([openai_target(mock.url, "primary")]))
    mock.enqueue(Reply.fail(503, "overloaded", retry_after=3), path="/primary" + CHAT)
    result = await post(r.url)
    assert result.status == 503 and result.headers["Retry-After"] == "3"


# -- streams ------------------------------------------------------------------------------------------------------

STREAM = {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}


async def test_a_stream_fails_over_before_its_first_byte(mock, relay):
    r = await relay(two(mock, read_timeout=400))
    broken = b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    for reply in (Reply.fail(429), Reply(events=[broken], content_type="text/event-stream"), Reply(latency=3)):
        mock.clear()
        mock.enqueue(reply, path="/primary" + CHAT)
        mock.enqueue(Reply(content="from the secondary", stream=True), path="/secondary" + CHAT)
        result = await post(r.url, STREAM)
        events = sse_events(result.text)
        assert result.status == 200 and result.target == "secondary", reply
        assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"]) == \
            "from the secondary"
        assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] > 0


async def test_after_the_first_byte_a_stream_does_not_fail_over(mock, relay):
    r = await relay(two(mock))
    mock.enqueue(Reply(content="one two three four five", stream=True, disconnect_after=2), path="/primary" + CHAT)
    result = await post(r.url, STREAM)
    events = sse_events(result.text)
    assert result.status == 200 and result.target == "primary" and hits(mock, "secondary") == 0
    assert events[-1]["error"]["code"] == "upstream_broken"
    usage = r.contexts[-1].usage
    assert usage.estimated and usage.completion_tokens > 0          # charged for what was sent


# -- circuit breaker ------------------------------------------------------------------------------------------------

async def test_the_breaker_skips_a_failing_target_then_tries_it_again(mock, relay):
    cfg = two(mock, circuit_breaker={"failure_threshold": 2, "cooldown": 0.5})
    r = await relay(cfg)
    mock.add_rule(Reply.fail(500), path="/primary" + CHAT)
    for _ in range(2):
        assert (await post(r.url)).target == "secondary"
    await asyncio.sleep(0.05)                                       # state is written after the answer
    before = hits(mock, "primary")
    for _ in range(3):
        assert (await post(r.url)).headers.get("X-Tollgate-Attempts") is None     # straight to the secondary
    assert hits(mock, "primary") == before
    mock.reset()
    await asyncio.sleep(0.6)                                        # cooldown over: one trial, which succeeds
    assert (await post(r.url)).target == "primary"
    await asyncio.sleep(0.05)
    assert (await post(r.url)).target == "primary"


async def test_the_breaker_state_is_shared_by_relays_of_one_plugin(mock, relay):
    """Two relays standing for two nodes with one store: a breaker opened on one is open on the other."""
    cfg = {**two(mock, circuit_breaker={"failure_threshold": 1, "cooldown": 30}), "__plugin_id": "shared-plugin"}
    node1, node2 = await relay(cfg), await relay(cfg)
    mock.enqueue(Reply.fail(500), path="/primary" + CHAT)
    assert (await post(node1.url)).target == "secondary"
    await asyncio.sleep(0.05)
    result = await post(node2.url)
    assert result.target == "secondary" and "X-Tollgate-Attempts" not in result.headers


async def test_with_every_breaker_open_the_targets_are_still_tried(mock, relay):
    r = await relay(two(mock, circuit_breaker={"failure_threshold": 1, "cooldown": 30}))
    mock.enqueue(Reply.fail(500), path="/primary" + CHAT)
    mock.enqueue(Reply.fail(500), path="/secondary" + CHAT)
    assert (await post(r.url)).status == 502
    await asyncio.sleep(0.05)
    result = await post(r.url)                                      # both open: try anyway, the primary is back
    assert result.status == 200


# -- state shared through Redis -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def redis_url():
    from tests.redis_server import REDIS_MISSING, RedisServer, redis_available
    if not redis_available():
        pytest.skip(REDIS_MISSING)
    with RedisServer() as server:
        yield server.url


async def test_two_nodes_agree_on_a_broken_target_through_redis(mock, relay, redis_url):
    cfg = {**two(mock, circuit_breaker={"failure_threshold": 1, "cooldown": 30}), "strategy": "redis",
           "redis": {"url": redis_url}, "__plugin_id": f"redis-shared-{id(mock)}"}
    node1, node2 = await relay(cfg), await relay(cfg)
    mock.enqueue(Reply.fail(502), path="/primary" + CHAT)
    assert (await post(node1.url)).target == "secondary"
    await asyncio.sleep(0.1)
    result = await post(node2.url)
    assert result.target == "secondary" and "X-Tollgate-Attempts" not in result.headers
    assert hits(mock, "primary") == 1


async def test_an_unreachable_store_does_not_fail_requests(mock, relay):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    r = await relay({**two(mock), "strategy": "redis", "redis": {"url": dead, "timeout": 0.2}})
    mock.enqueue(Reply.fail(500), path="/primary" + CHAT)
    results = [await post(r.url) for _ in range(3)]
    assert [x.status for x in results] == [200, 200, 200] and results[0].target == "secondary"
    assert all(x.elapsed < 1 for x in results)

"""Issue 19, section 1: a config change takes effect for the next request, in both directions.

Kong (and the double, which plays it) gives every plugin a new ``__seq__`` per worker on each config build, starts
instances lazily at each plugin's first event, and closes an instance only when the same plugin is started again:
the instance of a removed plugin is never closed. Two workers, so each worker's own instance cache is exercised.
"""

from __future__ import annotations

import pytest

from .routes import deck, proxy_config

LIMIT = {"name": "tollgate-token-limit", "config": {"limits": [{"limit": 1_000_000, "window_size": "minute"}]}}
QUOTA = {"name": "tollgate-cost-quota", "config": {"budgets": [{"amount": 1000, "scope": "global"}]}}
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
WORKERS = 2


def routes(mock_llm, *plugins):
    return {"/v1": [*plugins, {"name": "tollgate-proxy", "config": proxy_config(mock_llm.url + "/v1/chat/completions")}]}


async def statuses(double, n=2 * WORKERS):
    """``n`` requests, round robin over the workers; their statuses and the workers that served them."""
    out = []
    for _ in range(n):
        answer = await double.request("POST", "/v1/chat/completions", json_body=BODY,
                                      headers={"Content-Type": "application/json"})
        out.append((answer.status, double.stats.last.worker))
    return out


@pytest.fixture
async def gateway(tollgate_process, kong, mock_llm):
    process = tollgate_process()

    async def start(*plugins):
        return process, await kong(deck(process.relay_url, routes(mock_llm, *plugins)), process=process,
                                   workers=WORKERS)
    return start


def reload(double, process, mock_llm, *plugins):
    double.load_config(deck(process.relay_url, routes(mock_llm, *plugins)))


async def test_a_removed_plugin_is_not_required_on_the_next_request(gateway, mock_llm):
    process, double = await gateway(LIMIT, QUOTA)
    assert {s for s, _ in await statuses(double)} == {200}
    started = double.stats.instances_started
    reload(double, process, mock_llm, QUOTA)           # tollgate-token-limit removed
    served = await statuses(double)
    assert [s for s, _ in served] == [200] * len(served), double.log_lines()
    assert {w for _, w in served} == set(range(WORKERS))
    # Each worker started the two remaining plugins anew (and closed their old instances); the removed plugin's
    # instances were never closed, as in Kong.
    assert double.stats.instances_started - started == 2 * WORKERS
    reload(double, process, mock_llm)                  # and now tollgate-cost-quota too
    assert {s for s, _ in await statuses(double)} == {200}


async def test_a_remaining_plugin_that_fails_after_a_change_is_still_refused(gateway, mock_llm):
    process, double = await gateway(LIMIT, QUOTA)
    await statuses(double)
    reload(double, process, mock_llm, LIMIT)           # tollgate-cost-quota removed, the limit stays
    for worker in range(WORKERS):                      # the first request of the new build, on each worker
        double.faults.fail_event("tollgate-token-limit", "access", at_step=0, mode="socket")
        answer = await double.request("POST", "/v1/chat/completions", json_body=BODY,
                                      headers={"Content-Type": "application/json"})
        assert double.stats.last.worker == worker
        assert answer.status == 403, answer.text
        assert "tollgate-token-limit" in answer.json()["error"]["message"]
        assert "tollgate-cost-quota" not in answer.json()["error"]["message"]
    assert {s for s, _ in await statuses(double)} == {200}


async def test_an_added_plugin_is_required_from_its_first_request(gateway, mock_llm):
    process, double = await gateway()                  # the proxy alone
    assert {s for s, _ in await statuses(double)} == {200}
    reload(double, process, mock_llm, LIMIT)
    for worker in range(WORKERS):
        double.faults.fail_event("tollgate-token-limit", "access", at_step=0, mode="socket")
        answer = await double.request("POST", "/v1/chat/completions", json_body=BODY,
                                      headers={"Content-Type": "application/json"})
        assert double.stats.last.worker == worker
        assert answer.status == 403, answer.text
        assert "tollgate-token-limit" in answer.json()["error"]["message"]
    assert {s for s, _ in await statuses(double)} == {200}
    assert mock_llm.request_count == 2 * WORKERS * 2   # nothing reached the provider when refused


async def test_removed_then_added_back_is_required_again(gateway, mock_llm):
    process, double = await gateway(LIMIT)
    await statuses(double)
    reload(double, process, mock_llm)
    assert {s for s, _ in await statuses(double)} == {200}
    reload(double, process, mock_llm, LIMIT)
    double.faults.fail_event("tollgate-token-limit", "access", at_step=0, mode="socket_after_send", times=None)
    assert {s for s, _ in await statuses(double)} == {403}
    double.faults.clear()
    assert {s for s, _ in await statuses(double)} == {200}

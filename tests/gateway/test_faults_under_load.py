"""Faults with requests in flight, through the whole chain (Kong double -> ``tollgate serve`` -> mock LLM, limits in
Redis): Redis killed and restarted, the Tollgate process killed and restarted by kong/entrypoint.sh's supervisor,
and providers that hang, reset the connection, send garbage or cut a stream short.

After each fault: every request ended within its bounds with an answer that says what happened, no request got past
the token limit or the budget, and the counters hold what the admitted requests used (settlements the store missed
were retried; what is not released is stated where it is asserted).
"""

from __future__ import annotations

import asyncio
import signal
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.clocks import CLOCK_PLUGIN_DIR, FileClock
from tests.harness.procs import TollgateServer, free_port
from tests.harness.supervisor import Supervised
from tests.redis_server import REDIS_MISSING, RedisServer, redis_available
from tollgate.mock import Reply

from .limited import BODY, MINUTE, PROMPT, RESERVED, USED, Chain, start_chain

pytestmark = pytest.mark.skipif(not redis_available(), reason=REDIS_MISSING)

STORE_BOUND = 1.0 + 2  # the store's deadline per call (tollgate.runtime: 4 x the 0.25 s default), and slack


async def load(chain: Chain, http: aiohttp.ClientSession, count: int, workers: int = 6, pause: float = 0.0,
               body: dict = BODY, fault: Any = None) -> None:
    """``workers`` clients sending one request after another: ``count`` in all, or, with a ``fault`` (a coroutine
    run beside them), until it is over and ``count`` more have been sent."""
    left = count
    running = asyncio.ensure_future(fault) if fault is not None else None

    async def worker() -> None:
        nonlocal left
        while left > 0 or (running is not None and not running.done()):
            if running is None or running.done():
                left -= 1
            await chain.post(http, body)
            await asyncio.sleep(pause)

    await asyncio.gather(*(worker() for _ in range(workers)))
    if running is not None:
        await running


@pytest.fixture
def clock(tmp_path: Path) -> FileClock:
    return FileClock(str(tmp_path / "clock"), MINUTE)


async def test_redis_killed_and_restarted(tollgate_process, kong, mock_llm, clock):
    """With an append-only file (fsync always) Redis comes back with its counters: the reservations made before the
    kill are settled once it is back (retried), and the limit holds across the outage."""
    mock_llm.default = Reply(prompt_tokens=PROMPT, completion_tokens=40, latency=0.1)
    with RedisServer("--appendonly", "yes", "--appendfsync", "always") as redis:
        limit = 400 * RESERVED
        chain = await start_chain(tollgate_process, kong, redis.url, mock_llm.url + "/v1/chat/completions", clock,
                                  token_limit=limit)
        async with aiohttp.ClientSession() as http:
            assert (await chain.post(http)).status == 200
            one_request = await chain.spent_micros()

            async def fault() -> None:
                await chain.reached(15)
                redis.stop()
                await asyncio.sleep(2)
                await asyncio.to_thread(redis.restart)

            await load(chain, http, 40, pause=0.05, fault=fault())
        outcomes = chain.outcomes
        assert {o.status for o in outcomes} <= {200, 503}
        refused = [o for o in outcomes if o.status == 503]
        assert refused and all(o.error == "store_unavailable" for o in refused)  # the route fails closed
        assert max(o.seconds for o in outcomes) < STORE_BOUND + 0.1 * 2 + 2
        assert chain.admitted() > 40 and mock_llm.request_count == chain.admitted()
        used, spent = await chain.settled(chain.admitted() * USED)
        assert used == chain.admitted() * USED  # nothing lost, nothing counted twice, settlements retried
        assert spent == chain.admitted() * one_request


async def test_tollgate_killed_and_restarted_by_the_supervisor(kong, mock_llm, clock, tmp_path, redis_url):
    """SIGKILL with requests in flight: they fail (the relay's connection drops: Kong's 502), the supervisor starts
    a new process at once and the route serves again. The requests that died had been written to the process's
    journal (plugins/journal.py; they were in flight for over its period), and the new process gives their
    reservations back: the counters hold exactly what the answered requests used."""
    mock_llm.default = Reply(prompt_tokens=PROMPT, completion_tokens=40, latency=2.5)
    # the process the supervisor runs: sockets, ports, plugins and settings of a TollgateServer it never starts
    process = TollgateServer(plugins_dir=CLOCK_PLUGIN_DIR, redis_url=redis_url, log_level="warning",
                             env={"TOLLGATE_TEST_CLOCK_FILE": clock.path})
    env = {"TOLLGATE_PLUGINS_DIR": CLOCK_PLUGIN_DIR, "TOLLGATE_REDIS_URL": redis_url,
           "TOLLGATE_TEST_CLOCK_FILE": clock.path, "TOLLGATE_READY_TIMEOUT": "60"}
    limit = 400 * RESERVED
    with Supervised(tmp_path, socket_dir=Path(process.socket_dir), relay_port=process.relay_port,
                    status_port=free_port(), env=env) as tollgate:
        first = await asyncio.to_thread(tollgate.wait_healthy, 60)
        assert first, tollgate.log.read_text()
        await asyncio.sleep(1.5)  # the health watch judges only a process that has answered
        chain = await start_chain(None, kong, redis_url, mock_llm.url + "/v1/chat/completions", clock,
                                  token_limit=limit, process=process)
        async with aiohttp.ClientSession() as http:
            assert (await chain.post(http)).status == 200

            async def fault() -> None:
                await chain.reached(7)  # a round of six answered; the next six are on their way
                await asyncio.sleep(1.2)
                os.kill(first["pid"], signal.SIGKILL)

            await load(chain, http, 0, fault=fault())
            back = await asyncio.to_thread(tollgate.wait_healthy, 30, first["pid"])
            assert back, tollgate.log.read_text()
            await asyncio.sleep(1)  # the new process's sockets and relay
            after = await asyncio.gather(*(chain.post(http) for _ in range(6)))
        assert [o.status for o in after] == [200] * 6
    failed = [o for o in chain.outcomes if o.status != 200]
    assert len(failed) >= 6, chain.outcomes  # the kill hit the round in flight
    assert {o.status for o in failed} <= {0, 500, 502, 503}, failed
    assert max(o.seconds for o in chain.outcomes) < 10
    admitted = chain.admitted()
    used, _ = await chain.settled(admitted * USED, timeout=5)
    assert used == admitted * USED  # the dead requests' reservations were given back, nothing else


PROVIDER_FAULTS = {
    "hangs": (Reply(latency=30), {}),
    "resets the connection": (Reply(disconnect_after=0), {}),
    "sends garbage": (Reply(body=b"\x00\xffnot json at all", content_type="application/json"), {}),
    "cuts a stream short": (Reply(content="one two three four five six", chunks=6, disconnect_after=2),
                            {"stream": True, "stream_options": {"include_usage": True}}),
}


@pytest.mark.parametrize("fault", PROVIDER_FAULTS)
async def test_a_provider_fault_mid_answer(fault, tollgate_process, kong, mock_llm, clock, redis_url, caplog):
    """Each fault hits every request of a burst: each ends within the proxy's timeout with an error, and the
    reservations are settled to what the relay metered (nothing for no answer, the streamed part of a cut stream)."""
    reply, extra = PROVIDER_FAULTS[fault]
    mock_llm.default = reply
    limit = 100 * RESERVED
    chain = await start_chain(tollgate_process, kong, redis_url, mock_llm.url + "/v1/chat/completions", clock,
                              token_limit=limit, log_level="info",
                              proxy_extra={"timeout": 2, "balancer": {"read_timeout": 1500, "retries": 0}})
    async with aiohttp.ClientSession() as http:
        await load(chain, http, 12, workers=6, body={**BODY, **extra})
    outcomes = chain.outcomes
    assert all(o.seconds < 2 + 2 for o in outcomes), [round(o.seconds, 2) for o in outcomes]
    if extra.get("stream"):
        # the stream had begun (200): it ends with an error event and no [DONE], never looking complete
        assert {o.status for o in outcomes} == {200} and all(o.error == "stream without [DONE]" for o in outcomes)
    else:
        assert {o.status for o in outcomes} <= {502, 504}, outcomes
    used, _ = await chain.settled(-1, timeout=1)  # no retry is expected: read what is there
    metered = await metered_tokens(chain)
    assert used == metered, (used, metered)
    if not extra.get("stream"):
        assert used == 0  # no answer: every reservation given back
    else:
        assert 0 < used < len(outcomes) * RESERVED  # the streamed part is charged, the rest given back


async def metered_tokens(chain: Chain) -> int:
    """What the relay's analytics recorded as used, over the chain's requests (its JSON log lines)."""
    import orjson

    await asyncio.sleep(0.5)  # the last lines leave the process at the end of its loop turn
    total = 0
    for line in chain.process.stderr_text().splitlines():
        if not line.startswith("{"):
            continue
        entry = orjson.loads(line)
        if entry.get("msg") == "ai request":
            usage = (((entry.get("ai") or {}).get("proxy") or {}).get("usage") or {})
            total += int(usage.get("total_tokens") or 0)
    return total

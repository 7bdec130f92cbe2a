"""kong.conf's bound on the plugin-server call, in the Kong double with the real Tollgate process.

Kong 3.9.3 gives its plugin-server cosockets no timeout of their own, so nginx's ``lua_socket_*_timeout`` applies
(kong.conf: ``nginx_http_lua_socket_*_timeout``; the double reads the repository's kong/kong.conf). A frozen
process then costs a request that bound, not 60 s: Kong logs the failed call and proxies without the plugin
(fail-open), and the relay refuses the request it did not see attached (fail-closed). The Service's own timeouts
bound the upstream, so a stream with gaps longer than the bound still flows.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import orjson

from tests.clocks import FileClock
from tests.harness.kongconf import read_kong_conf, socket_timeouts
from tollgate.mock import Reply

from .limited import MINUTE, PROMPT, RESERVED, USED, start_chain
from .routes import deck, proxy_config

KONG_CONF = Path(__file__).resolve().parents[2] / "kong" / "kong.conf"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def start(tollgate_process, kong, mock_llm, conf: dict[str, str]):
    process = tollgate_process()
    routes = {"/v1": [{"name": "tollgate-proxy", "config": proxy_config(mock_llm.url + "/v1/chat/completions")}]}
    double = await kong(deck(process.relay_url, routes), process=process, entry_plugins=["tollgate-proxy"],
                        kong_conf=conf)
    return process, double


async def wait_for_log(double, contains: str, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if double.log_lines(level="err", contains=contains):
            return time.monotonic()
        await asyncio.sleep(0.05)
    return None


def test_kong_conf_bounds_each_plugin_socket_operation_to_a_few_seconds():
    timeouts = socket_timeouts(read_kong_conf(KONG_CONF))
    assert timeouts.connect <= 5 and 2 <= timeouts.read <= 10 and timeouts.send <= 10, timeouts


async def test_a_frozen_process_costs_a_request_the_bound_not_a_minute(tollgate_process, kong, mock_llm):
    conf = read_kong_conf(KONG_CONF)
    bound = socket_timeouts(conf).read
    process, double = await start(tollgate_process, kong, mock_llm, conf)
    async with aiohttp.ClientSession() as http:
        async with http.post(double.url + "/v1/chat/completions", json=BODY) as answer:
            assert answer.status == 200  # the instance is started, the connection pooled

        os.kill(process.proc.pid, signal.SIGSTOP)
        try:
            sent = time.monotonic()
            request = asyncio.ensure_future(http.post(double.url + "/v1/chat/completions", json=BODY))
            failed_at = await wait_for_log(double, "no data", timeout=bound + 10)
            assert failed_at is not None, [r.message for r in double.log_lines()]
            waited = failed_at - sent
            assert bound - 0.2 <= waited <= bound + 2, waited  # Kong gave up on the plugin call after the bound
            assert not request.done()  # ...and proxied without the plugin, to the (still frozen) relay
        finally:
            os.kill(process.proc.pid, signal.SIGCONT)
        answer = await asyncio.wait_for(request, 10)
        body = orjson.loads(await answer.read())
        answer.release()
    # what reached the relay lacked the plugin's attachment: refused, never served without its policy
    assert answer.status == 403, body
    assert "Tollgate" in body["error"]["message"]
    assert time.monotonic() - sent < bound + 5


async def test_a_stream_with_gaps_longer_than_the_bound_is_not_cut(tollgate_process, kong, mock_llm):
    conf = {**read_kong_conf(KONG_CONF), "nginx_http_lua_socket_read_timeout": "1s"}
    _, double = await start(tollgate_process, kong, mock_llm, conf)
    mock_llm.enqueue(Reply(content="one two three", chunks=3, interval=1.4), path="/v1/chat/completions")
    started = time.monotonic()
    events = []
    async with aiohttp.ClientSession() as http:
        async with http.post(double.url + "/v1/chat/completions", json={**BODY, "stream": True}) as answer:
            assert answer.status == 200
            async for line in answer.content:
                if line.startswith(b"data: "):
                    events.append((time.monotonic() - started, line))
    assert events[-1][1].strip() == b"data: [DONE]"
    text = "".join(orjson.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                   for _, line in events[:-1] if orjson.loads(line[6:])["choices"])
    assert text == "one two three"
    assert events[-1][0] > 3 * 1.4 - 0.2  # the stream took longer than the bound, gaps included
    await double.settle()
    assert double.log_lines(level="err") == []


async def test_frozen_for_10_seconds_under_load_lets_nothing_past_and_keeps_the_counters(
        tollgate_process, kong, mock_llm, redis_url, tmp_path):
    """SIGSTOP for 10 s with requests in flight through the limits: each ends within Kong's bound plus the freeze,
    as a served answer or as the relay's refusal of what Kong proxied without the plugins (403); nothing reaches
    the provider unlimited, and once the process runs again every reservation is settled."""
    conf = read_kong_conf(KONG_CONF)
    bound = socket_timeouts(conf).read
    clock = FileClock(str(tmp_path / "clock"), MINUTE)
    mock_llm.default = Reply(prompt_tokens=PROMPT, completion_tokens=40, latency=0.2)
    chain = await start_chain(tollgate_process, kong, redis_url, mock_llm.url + "/v1/chat/completions", clock,
                              token_limit=400 * RESERVED, kong_conf=conf)
    frozen = 10.0
    async with aiohttp.ClientSession() as http:
        assert (await chain.post(http)).status == 200
        one_request = await chain.spent_micros()

        async def freeze() -> None:
            await chain.reached(10)
            os.kill(chain.process.proc.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(frozen)
            finally:
                os.kill(chain.process.proc.pid, signal.SIGCONT)

        async def client(send_after: float) -> None:
            await asyncio.sleep(send_after)
            while not freezing.done() or len(chain.outcomes) < 40:
                await chain.post(http, timeout=bound + frozen + 10)
                await asyncio.sleep(0.05)

        freezing = asyncio.ensure_future(freeze())
        await asyncio.gather(freezing, *(client(i * 0.03) for i in range(6)))
    statuses = {o.status for o in chain.outcomes}
    assert statuses <= {200, 403}, [o for o in chain.outcomes if o.status not in (200, 403)]
    assert 403 in statuses  # some were proxied without their plugins during the freeze: refused, not served
    assert max(o.seconds for o in chain.outcomes) < bound + frozen + 3
    admitted = chain.admitted()
    assert mock_llm.request_count == admitted
    used, spent = await chain.settled(admitted * USED)
    assert used == admitted * USED and spent == admitted * one_request

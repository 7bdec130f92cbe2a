"""The plugin server driven in-process, one RPC method call at a time, as Kong would."""

import asyncio
import os
import time

import msgpack
import orjson
import pytest

from tollgate.pluginserver import loader
from tollgate.pluginserver.server import PluginServer, RpcError, listen
from tollgate.pluginserver.instances import NoInstance

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "test_plugins")


@pytest.fixture
def server():
    plugins = loader.load_all(FIXTURES)
    srv = PluginServer(plugins, handler_timeout=2.0, event_timeout=1.0)
    yield srv
    srv.shutdown()


async def start(server, name, config=None, seq=1):
    config = {"__seq__": seq, "__plugin_id": f"{name}-id", "route_id": "route-1", **(config or {})}
    return (await server.dispatch("plugin.StartInstance", [{"Name": name, "Config": orjson.dumps(config).decode()}]))["Id"]


async def run_phase(server, instance_id, phase, answers):
    """Play Kong's bridge loop: answer each PDK call from ``answers`` (method -> value)."""
    calls = []
    step = await server.dispatch("plugin.HandleEvent", [{"InstanceId": instance_id, "EventName": phase}])
    while step["Data"] != "ret":
        call = step["Data"]
        calls.append(call)
        if call["Method"] in ("kong.response.exit", "kong.response.error"):
            break
        reply = {"EventId": step["EventId"]}
        if answers.get(call["Method"]) is not None:
            reply["Data"] = answers[call["Method"]]
        step = await server.dispatch("plugin.Step", [reply])
    return calls


def assert_json_500(calls, plugin):
    """The event ended in the server's JSON 500 for ``plugin``, without the exception's text."""
    assert calls[-1]["Method"] == "kong.response.exit"
    status, body, headers = calls[-1]["Args"]
    assert status == 500 and headers == {"Content-Type": "application/json"}
    message = orjson.loads(body)["message"]
    assert f"{plugin} failed" in message and "secret" not in message


async def test_handler_exception_becomes_json_500_and_server_keeps_working(server):
    iid = await start(server, "raising")
    for _ in range(100):
        calls = await run_phase(server, iid, "access", {"kong.request.get_path": "/x"})
        assert_json_500(calls, "raising")
    assert server.events == {}


async def test_log_phase_exception_just_returns(server):
    iid = await start(server, "raising")
    assert await run_phase(server, iid, "log", {}) == []
    assert server.events == {}


async def test_exit_ends_event_without_leaking(server):
    iid = await start(server, "echo_body")
    body = os.urandom(5 * 1024 * 1024)
    calls = await run_phase(server, iid, "access", {"kong.request.get_raw_body": body})
    assert calls[-1]["Method"] == "kong.response.exit" and calls[-1]["Args"][1] == body
    await asyncio.sleep(0)
    assert server.events == {}


@pytest.mark.parametrize("plugin", ["sleepy", "sleepy_sync"])
async def test_concurrent_io_handlers_do_not_wait_on_each_other(server, plugin):
    iid = await start(server, plugin, {"delay": 0.2})
    started = time.monotonic()
    results = await asyncio.gather(*(run_phase(server, iid, "access", {"kong.request.get_path": f"/{i}"})
                                     for i in range(50)))
    elapsed = time.monotonic() - started
    assert elapsed < 0.8, elapsed
    assert sorted(r[-1]["Args"][1] for r in results) == sorted(f"/{i}" for i in range(50))


async def test_instance_ids_never_reused(server):
    first = await start(server, "sleepy", seq=1)
    second = await start(server, "sleepy", seq=2)
    await server.dispatch("plugin.CloseInstance", [first])
    await asyncio.sleep(0.005)  # a restart comes at least milliseconds later
    restarted = PluginServer(server.plugins)
    try:
        third = await start(restarted, "sleepy", seq=1)
    finally:
        restarted.shutdown()
    assert len({first, second, third}) == 3
    with pytest.raises(NoInstance, match="no plugin instance"):
        await server.dispatch("plugin.HandleEvent", [{"InstanceId": first, "EventName": "access"}])


async def test_invalid_config_is_refused_with_the_field(server):
    with pytest.raises(RpcError, match="delay: expected number"):
        await start(server, "sleepy", {"delay": "soon"})


async def test_abandoned_event_is_swept(server):
    iid = await start(server, "sleepy", {"delay": 0})
    step = await server.dispatch("plugin.HandleEvent", [{"InstanceId": iid, "EventName": "access"}])
    assert step["Data"]["Method"] == "kong.request.get_path"
    assert len(server.events) == 1
    await asyncio.sleep(1.1)  # Kong never answers (as with get_var in its log timer)
    assert server.sweep() == 1 and server.events == {}


async def test_stalled_handler_gets_an_error_exit(server):
    iid = await start(server, "sleepy", {"delay": 5})
    started = time.monotonic()
    calls = await run_phase(server, iid, "access", {})
    assert time.monotonic() - started < 3
    assert calls[-1]["Method"] == "kong.response.exit" and calls[-1]["Args"][0] == 500


async def test_socket_framing_carries_a_5mb_message_whole(server, tmp_path):
    path = str(tmp_path / "s.sock")
    listener = await listen(server, path)
    try:
        reader, writer = await asyncio.open_unix_connection(path)
        iid = await start(server, "echo_body")
        body = os.urandom(5 * 1024 * 1024)
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=0)

        async def call(msgid, method, arg):
            writer.write(msgpack.packb([0, msgid, method, [arg]], use_bin_type=True))
            while True:
                for message in unpacker:
                    return message
                unpacker.feed(await reader.read(65536))

        step = await call(1, "plugin.HandleEvent", {"InstanceId": iid, "EventName": "access"})
        assert step[:3] == [1, 1, None]
        answer = await call(2, "plugin.Step", {"EventId": step[3]["EventId"], "Data": body})
        assert answer[0:3] == [1, 2, None] and answer[3]["Data"]["Args"][1] == body
        writer.close()
    finally:
        listener.close()


async def test_inline_handler_answers_each_step_in_order_without_a_task(server):
    iid = await start(server, "inline")
    assert server.plugins["inline"].inline_phases == {"access"}
    await run_phase(server, iid, "access", {"kong.request.get_path": "/0"})   # the server's watchdog starts
    tasks = len(asyncio.all_tasks())
    step = await server.dispatch("plugin.HandleEvent", [{"InstanceId": iid, "EventName": "access"}])
    assert step["Data"] == {"Method": "kong.request.get_path", "Args": []}
    assert len(asyncio.all_tasks()) == tasks           # no task for the event
    calls = [step["Data"]]
    while step["Data"] != "ret":
        step = await server.dispatch("plugin.Step", [{"EventId": step["EventId"], "Data": f"/{len(calls)}"}])
        calls.append(step["Data"])
    assert calls[1:] == [{"Method": "kong.service.request.set_header", "Args": ["x-path", "/1"]}, "ret"]
    assert server.events == {}


async def test_inline_handlers_waiting_on_io_run_side_by_side(server):
    iid = await start(server, "inline", {"delay": 0.2})
    started = time.monotonic()
    results = await asyncio.gather(*(run_phase(server, iid, "access", {"kong.request.get_path": f"/{i}"})
                                     for i in range(50)))
    assert time.monotonic() - started < 0.8
    assert sorted(r[1]["Args"][1] for r in results) == sorted(f"/{i}" for i in range(50))
    assert server.events == {}


@pytest.mark.parametrize("delay", [0, 0.05])
async def test_inline_handler_exception_becomes_json_500(server, delay):
    iid = await start(server, "inline", {"fail": True, "delay": delay})
    for _ in range(3):
        calls = await run_phase(server, iid, "access", {"kong.request.get_path": "/x"})
        assert [c["Method"] for c in calls] == ["kong.request.get_path", "kong.response.exit"]
        assert_json_500(calls, "inline")
    assert server.events == {}


async def test_inline_handler_exit_ends_the_event(server):
    iid = await start(server, "inline", {"exit": True})
    calls = await run_phase(server, iid, "access", {"kong.request.get_path": "/x"})
    assert calls[-1] == {"Method": "kong.response.exit", "Args": [403, b'{"path":"/x"}']}
    assert server.events == {}


async def test_stalled_inline_handler_gets_an_error_exit_and_is_cancelled(server):
    iid = await start(server, "inline", {"delay": 5})
    started = time.monotonic()
    calls = await run_phase(server, iid, "access", {"kong.request.get_path": "/x"})
    assert time.monotonic() - started < 3
    assert calls[-1]["Method"] == "kong.response.exit" and calls[-1]["Args"][0] == 500
    await asyncio.sleep(0)
    assert server.instances.get(iid).handler.cancelled == 1 and server.events == {}


async def test_inline_event_kong_never_answers_is_swept(server):
    iid = await start(server, "inline")
    step = await server.dispatch("plugin.HandleEvent", [{"InstanceId": iid, "EventName": "access"}])
    assert step["Data"]["Method"] == "kong.request.get_path"
    await asyncio.sleep(1.1)
    assert server.sweep() == 1 and server.events == {}
    await asyncio.sleep(0)
    with pytest.raises(RpcError, match="not found"):
        await server.dispatch("plugin.Step", [{"EventId": step["EventId"], "Data": "/late"}])

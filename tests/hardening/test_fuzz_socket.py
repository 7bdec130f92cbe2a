"""Hostile MessagePack on the plugin-server socket of the real Tollgate process (and in-process, for memory).

A bad peer gets its connection closed with the reason in the log, or an RPC error answer; the server never crashes,
never holds memory for what a header merely declares, and keeps serving Kong's other connections and requests.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tracemalloc

import msgpack
import openai
import orjson
import psutil
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.gateway.routes import deck, proxy_config
from tests.pluginserver.test_framing import values
from tollgate.pluginserver import loader
from tollgate.pluginserver.framing import Backlog
from tollgate.pluginserver.server import PluginServer, listen

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "test_plugins")
PLUGIN = "tollgate-proxy"
METHODS = ["plugin.StartInstance", "plugin.HandleEvent", "plugin.Step", "plugin.StepMultiMap", "plugin.CloseInstance",
           "plugin.InstanceStatus", "plugin.GetStatus", "plugin.GetPluginInfo", "plugin.Nope", "kong.request.get_path"]
HOSTILE = {
    "array of 16M items": b"\x94\x00\x01\xa3abc\xdd\x00\xff\xff\xff",
    "map of 4G entries": b"\xdf\xff\xff\xff\xff",
    "4 GB binary": b"\x94\x00\x01\xa3abc\xc6\xff\xff\xff\xff" + b"\x00" * 1000,
    "deep nesting": b"\x91" * 100_000,
    "invalid byte": b"\x94\x00\x01\xc1",
    "invalid UTF-8": b"\x94\x00\x01\xa2\xff\xfe\x90",
    "a response, not a request": msgpack.packb([1, 1, None, {}]),
    "not an array": msgpack.packb({"method": "plugin.GetStatus"}),
    "msgid not an integer": msgpack.packb([0, "1", "plugin.GetStatus", []]),
}


def exchange(path: str, data: bytes, timeout: float = 5.0) -> tuple[list, bool]:
    """Send ``data``, end the writing side, and read until the server closes: (answers, closed-by-server)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return [], True
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return list(unpacker), True
            unpacker.feed(chunk)


def rpc(path: str, method: str, *args, msgid: int = 1):
    answers, _ = exchange(path, msgpack.packb([0, msgid, method, list(args)], use_bin_type=True))
    assert len(answers) == 1 and answers[0][:2] == [1, msgid], answers
    return answers[0][2], answers[0][3]


def assert_serves(path: str) -> None:
    """A good client still gets an instance and its status."""
    config = proxy_config("http://127.0.0.1:9/v1/chat/completions")
    error, started = rpc(path, "plugin.StartInstance", {"Name": PLUGIN, "Config": orjson.dumps(config).decode()})
    assert error is None and started["Name"] == PLUGIN
    error, status = rpc(path, "plugin.InstanceStatus", started["Id"], msgid=2)
    assert error is None and status["Id"] == started["Id"]


@pytest.fixture
def process(tollgate_process):
    return tollgate_process()


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_frame_closes_only_that_connection_with_a_logged_reason(process, name):
    path = process.socket_path(PLUGIN)
    answers, closed = exchange(path, HOSTILE[name])
    assert answers == [] and closed
    assert_serves(path)
    assert process.alive()
    assert "closing plugin-server connection: protocol error" in process.stderr_text()


def test_unknown_method_and_wrong_argument_types_get_rpc_errors_on_a_connection_that_stays_open(process):
    path = process.socket_path(PLUGIN)
    calls = [("plugin.Nope", [1]), ("plugin.Step", ["x"]), ("plugin.Step", [{"EventId": "1"}]),
             ("plugin.HandleEvent", [{"InstanceId": [1], "EventName": "access"}]), ("plugin.HandleEvent", []),
             ("plugin.StartInstance", [{"Name": ["x"]}]), ("plugin.StartInstance", [{"Name": PLUGIN, "Config": 5}]),
             ("plugin.StartInstance", [{"Name": PLUGIN, "Config": "{not json"}]),
             ("plugin.CloseInstance", [{"a": 1}]), ("plugin.GetPluginInfo", [[1, 2]])]
    data = b"".join(msgpack.packb([0, i, method, args]) for i, (method, args) in enumerate(calls))
    good = msgpack.packb([0, 99, "plugin.GetPluginInfo", [PLUGIN]])
    answers, _ = exchange(path, data + good)
    assert [a[1] for a in answers] == [*range(len(calls)), 99]
    for answer, (method, _) in zip(answers, calls):
        assert answer[0] == 1 and isinstance(answer[2], str) and answer[3] is None, (method, answer)
    assert answers[0][2] == "method 'plugin.Nope' is not supported"
    assert answers[-1][2] is None and answers[-1][3]["Name"] == PLUGIN
    # none of these is a server fault
    assert "RPC method failed" not in process.stderr_text()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000))
def test_random_bytes_never_crash_the_server(process, data):
    answers, closed = exchange(process.socket_path(PLUGIN), data)
    assert closed
    assert all(a[0] == 1 and isinstance(a[1], int) for a in answers)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(st.tuples(st.sampled_from(METHODS) | st.text(max_size=20),
                                   st.lists(values, max_size=3) | values), min_size=1, max_size=4))
def test_well_formed_requests_with_hostile_arguments_each_get_an_answer(process, messages):
    data = b"".join(msgpack.packb([0, i, method, args], use_bin_type=True) for i, (method, args) in
                    enumerate(messages))
    answers, _ = exchange(process.socket_path(PLUGIN), data)
    assert [a[1] for a in answers] == list(range(len(messages)))
    assert all(a[0] == 1 and (a[2] is None or isinstance(a[2], str)) for a in answers)


async def test_after_the_fuzzing_a_real_request_still_goes_through_kong(process, kong, mock_llm):
    double = await kong(deck(process.relay_url, {"/v1": [
        {"name": PLUGIN, "config": proxy_config(mock_llm.url + "/v1/chat/completions")}]}), process=process)
    loop = asyncio.get_running_loop()
    for data in HOSTILE.values():
        await loop.run_in_executor(None, exchange, process.socket_path(PLUGIN), data)
    client = openai.AsyncOpenAI(base_url=double.url + "/v1", api_key="client-key", max_retries=0)
    answer = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content


def test_memory_stays_flat_under_many_hostile_connections(process):
    """Under the old streaming decoder a '16M-item array' header was a 128 MB list (untouched pages, so not yet
    resident), which the items then filled: 2 MB of nils made 16 MB resident, 8 times what was sent."""
    path = process.socket_path(PLUGIN)
    assert_serves(path)
    rss = psutil.Process(process.pid).memory_info().rss
    held = []
    for i in range(20):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        held.append(s)
        if i < 4:    # the header and 2 MB of items, connection left open
            try:
                s.sendall(HOSTILE["array of 16M items"] + b"\xc0" * (2 << 20))
            except ConnectionError:
                pass
        else:        # a 60 MB string declared, its first 64 KB sent: only what was sent is held
            s.sendall(b"\x94\x00\x01\xa3abc\xdb\x03\xc0\x00\x00" + b"x" * 65536)
        exchange(path, HOSTILE["deep nesting"])
    assert_serves(path)
    grown = psutil.Process(process.pid).memory_info().rss - rss
    for s in held:
        s.close()
    assert grown < 40 * 1024 * 1024, f"RSS grew by {grown / 2**20:.1f} MiB"


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionError:
        return True


async def test_in_process_a_hostile_peer_costs_no_more_than_what_it_sent(tmp_path):
    server = PluginServer(loader.load_all(FIXTURES))
    path = str(tmp_path / "t.socket")
    listener = await listen(server, path)
    try:
        tracemalloc.start()
        hanging_reader, hanging = await asyncio.open_unix_connection(path)
        hanging.write(b"\x94\x00\x01\xa3abc\xc6\x01\x00\x00\x00" + b"y" * 100_000)   # 16 MB declared, 100 KB sent
        for name, data in HOSTILE.items():
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(data)
            assert await closed_by_server(reader), name
            writer.close()
        # a message of many 1 MiB strings that adds up past 64 MiB is refused once it crosses the limit
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"\x94\x00\x01\xa3abc\xdc\x00\x50")
        chunk = b"\xdb\x00\x10\x00\x00" + b"z" * (1 << 20)
        try:
            for _ in range(80):
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:     # the server cut it off, as it should
            pass
        assert await closed_by_server(reader)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 80 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"
        # the half-sent message waits on its own connection; a good client on another one is served meanwhile
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(msgpack.packb([0, 5, "plugin.GetPluginInfo", ["echo_body"]]))
        answer = msgpack.unpackb(await asyncio.wait_for(reader.read(65536), 5), raw=False)
        assert answer[:3] == [1, 5, None] and answer[3]["Name"] == "echo_body"
        writer.close()
        hanging.close()
    finally:
        listener.close()
        server.shutdown()


def big_call(msgid: int, size: int) -> bytes:
    """A whole request of about ``size`` bytes (GetStatus refuses its binary argument with an RPC error)."""
    return msgpack.packb([0, msgid, "plugin.GetStatus", [b"b" * size]], use_bin_type=True)


async def test_a_message_left_incomplete_is_cut_off_at_the_deadline_and_the_backlog_is_capped_across_sockets(
        tollgate_process):
    process = tollgate_process(env={"TOLLGATE_SOCKET_MESSAGE_TIMEOUT": "2",
                                    "TOLLGATE_SOCKET_BACKLOG_BYTES": str(1_000_000)})
    # 600 KB of a message on the plugin's socket, then 600 KB of another on the shared socket: that one is refused
    first = big_call(1, 700_000)
    reader_a, writer_a = await asyncio.open_unix_connection(process.socket_path(PLUGIN))
    writer_a.write(first[:600_000])
    await writer_a.drain()
    await asyncio.sleep(0.2)
    reader_b, writer_b = await asyncio.open_unix_connection(process.socket_path())
    writer_b.write(big_call(1, 700_000)[:600_000])
    assert await closed_by_server(reader_b)
    assert "would hold more than 1000000 bytes" in process.stderr_text()
    # the first connection was not touched: its message completes and is answered
    writer_a.write(first[600_000:])
    answer = msgpack.Unpacker(raw=False)
    answer.feed(await asyncio.wait_for(reader_a.read(65536), 5))
    assert next(answer) == [1, 1, "plugin.GetStatus takes an id or a name", None]
    # its share is back: another 600 KB is accepted, then cut off when it stays incomplete past the deadline
    writer_b.close()
    reader_c, writer_c = await asyncio.open_unix_connection(process.socket_path())
    writer_c.write(big_call(2, 700_000)[:600_000])
    started = asyncio.get_running_loop().time()
    assert await closed_by_server(reader_c)
    assert asyncio.get_running_loop().time() - started > 1.5
    assert "a message was left incomplete for 2 s" in process.stderr_text()
    writer_a.close()
    writer_c.close()
    await asyncio.get_running_loop().run_in_executor(None, assert_serves, process.socket_path(PLUGIN))


async def test_in_process_the_backlog_is_released_however_a_connection_ends(tmp_path):
    server = PluginServer(loader.load_all(FIXTURES))
    path = str(tmp_path / "t.socket")
    backlog = Backlog(cap=300_000, deadline=0.3)
    listener = await listen(server, path, backlog=backlog)

    async def settled(total: int) -> None:
        for _ in range(100):
            if backlog.total == total:
                return
            await asyncio.sleep(0.02)
        assert backlog.total == total

    try:
        call = big_call(1, 200_000)
        # a whole message sent in pieces holds its bytes only until it is complete
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(call[:150_000])
        await settled(150_000)
        writer.write(call[150_000:])
        assert msgpack.unpackb(await asyncio.wait_for(reader.read(65536), 5), raw=False)[:2] == [1, 1]
        await settled(0)
        # the peer hangs up mid-message
        writer.write(call[:150_000])
        await settled(150_000)
        writer.close()
        await settled(0)
        # the deadline cuts a stalled one off
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(call[:150_000])
        await settled(150_000)
        assert await closed_by_server(reader)
        await settled(0)
        writer.close()
        # a refused connection gives back nothing it did not hold; the holder's share stays counted
        reader_a, writer_a = await asyncio.open_unix_connection(path)
        writer_a.write(call[:150_000])
        await settled(150_000)
        reader_b, writer_b = await asyncio.open_unix_connection(path)
        writer_b.write(call[:160_000])
        assert await closed_by_server(reader_b)
        assert backlog.total == 150_000
        writer_a.close()
        writer_b.close()
        await settled(0)
    finally:
        listener.close()
        server.shutdown()

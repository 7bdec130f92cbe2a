"""The RPC as Kong speaks it, against a scripted plugin server: msg ids, pooling, typed
steps, nil answers, exits, the instance cache, restarts, errors and fail-open."""

from __future__ import annotations

import asyncio
import json
import os

import msgpack
import pytest
from aiohttp import web

from .fakeserver import FakeServer


@pytest.fixture
async def echo_upstream(upstream):
    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"method": request.method, "path": request.path_qs,
                                  "headers": {k.lower(): v for k, v in request.headers.items()},
                                  "body": body.decode("utf-8", "replace")})

    return await upstream(handler)


@pytest.fixture
async def fake():
    servers = []

    async def make(name="fake", **kw):
        s = await FakeServer(name, **kw).start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        await s.stop()


def route_config(url, plugins, *, paths=("/",), extra=None):
    doc = {"_format_version": "3.0", "services": [{"name": "svc", "url": url, "routes": [
        {"name": "r", "paths": list(paths), "plugins": plugins}]}]}
    if extra:
        doc.update(extra)
    return doc


async def test_msg_ids_rise_across_requests_on_one_pooled_connection(fake, kong, echo_upstream):
    srv = await fake()
    srv.script["access"] = [["kong.request.get_path"], ["kong.request.get_headers"], ["kong.client.get_consumer"],
                            ["kong.nginx.get_ctx", "nothing"]]
    k = await kong(route_config(echo_upstream, [{"name": "fake"}]), entries=[srv.entry()], record_messages=True)
    for _ in range(3):
        r = await k.request("GET", "/hello?x=1")
        assert r.status == 200
        await k.settle()
    sent = [m for m in srv.received if m[0] == 0]
    ids = [m[1] for m in sent]
    assert ids == list(range(1, len(ids) + 1))
    assert srv.connections == 1  # one pooled connection carried everything
    methods = [m[2] for m in sent]
    assert methods[:6] == ["plugin.StartInstance", "plugin.HandleEvent", "plugin.Step", "plugin.StepMultiMap",
                           "plugin.StepConsumer", "plugin.Step"]
    assert methods.count("plugin.StartInstance") == 1  # the instance is cached
    ev = srv.finished[0]
    assert ev.results[0] == ("plugin.Step", "/hello")
    assert ev.results[2] == ("plugin.StepConsumer", "<absent>")  # nil: no Data key at all
    assert ev.results[3] == ("plugin.Step", "<absent>")


async def test_exit_ends_the_event_without_a_step(fake, kong, echo_upstream):
    srv = await fake()
    srv.script["access"] = [["kong.request.get_method"],
                            ["kong.response.exit", 418, b"teapot", {"X-A": "1"}],
                            ["kong.request.get_path"]]
    k = await kong(route_config(echo_upstream, [{"name": "fake"}]), entries=[srv.entry()])
    r = await k.request("GET", "/")
    assert r.status == 418 and r.body == b"teapot" and r.headers["X-A"] == "1"
    assert r.headers["Server"] == "kong/3.9.3" and "X-Kong-Response-Latency" in r.headers
    await k.settle()
    steps = [m for m in srv.received if m[0] == 0 and m[2].startswith("plugin.Step")]
    assert len(steps) == 1  # the answer to get_method; nothing after the exit


async def test_error_uses_kongs_template(fake, kong, echo_upstream):
    srv = await fake()
    srv.script["access"] = [["kong.response.error", 403, "Nope"]]
    k = await kong(route_config(echo_upstream, [{"name": "fake"}]), entries=[srv.entry()])
    r = await k.request("GET", "/", headers={"Accept": "application/json"})
    assert r.status == 403
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.text == '{\n  "message":"Nope",\n  "request_id":"%s"\n}' % r.headers["X-Kong-Request-Id"]
    r = await k.request("GET", "/", headers={"Accept": "text/plain"})
    assert r.text.startswith("Nope\nrequest_id: ")


async def test_no_plugin_instance_restarts_the_instance_and_repeats(fake, kong, echo_upstream):
    srv = await fake(phases=("access",))
    srv.script["access"] = [["kong.service.request.set_header", "x-done", "1"]]
    k = await kong(route_config(echo_upstream, [{"name": "fake"}]), entries=[srv.entry()])
    assert (await k.request("GET", "/")).json()["headers"]["x-done"] == "1"
    await srv.restart()  # forgets its instances
    r = await k.request("GET", "/")
    assert r.json()["headers"]["x-done"] == "1"
    methods = srv.methods()
    assert methods[-4:] == ["plugin.HandleEvent", "plugin.StartInstance", "plugin.HandleEvent", "plugin.Step"]
    assert k.log_lines(level="warn", contains="no plugin instance #0")


async def test_server_pid_change_resets_instances(fake, kong, echo_upstream):
    srv = await fake()
    srv.send_pid_notification = True
    k = await kong(route_config(echo_upstream, [{"name": "fake"}]), entries=[srv.entry()])
    await k.request("GET", "/")
    await k.request("GET", "/")
    assert srv.methods().count("plugin.StartInstance") == 1
    srv.pid += 1  # same socket, new process id announced
    await k.request("GET", "/")  # this event runs; Kong forgets the instance on the notification
    await k.request("GET", "/")
    assert srv.methods().count("plugin.StartInstance") == 2


async def test_seq_change_replaces_and_closes_the_instance(fake, kong, echo_upstream):
    srv = await fake()
    cfg = route_config(echo_upstream, [{"name": "fake"}])
    k = await kong(cfg, entries=[srv.entry()])
    await k.request("GET", "/")
    k.load_config(cfg)  # a config reload: new __seq__ for every plugin
    await k.request("GET", "/")
    methods = srv.methods()
    assert methods.count("plugin.StartInstance") == 2
    close = [m for m in srv.received if m[0] == 0 and m[2] == "plugin.CloseInstance"]
    assert close and close[0][3] == [0]
    assert len(srv.instances) == 1


async def test_config_change_with_two_workers_is_per_worker_and_lazy(fake, kong, echo_upstream):
    """Each nginx worker is its own process with its own instance cache and its own build of the plugins
    iterator (its own ``__seq__`` from the shared counter); instances start at the first event."""
    srv = await fake()
    cfg = route_config(echo_upstream, [{"name": "fake"}])
    k = await kong(cfg, entries=[srv.entry()], workers=2)

    def starts():
        return [(peer, json.loads(m[3][0]["Config"])["__seq__"])
                for m, peer in zip(srv.received, srv.peers) if m[0] == 0 and m[2] == "plugin.StartInstance"]

    assert starts() == []                               # nothing starts before a request needs it
    for _ in range(4):
        await k.request("GET", "/")
    first = starts()
    assert len(first) == 2 and len({peer for peer, _ in first}) == 2   # two processes, one start each
    assert os.getpid() in {peer for peer, _ in first}
    k.load_config(cfg)
    assert len(starts()) == 2
    for _ in range(2):
        await k.request("GET", "/")
    second = starts()[2:]
    assert {peer for peer, _ in second} == {peer for peer, _ in first}
    assert min(seq for _, seq in second) > max(seq for _, seq in first)   # every build draws higher numbers
    assert len({seq for _, seq in first + second}) == 4                   # and each worker its own
    closes = [peer for m, peer in zip(srv.received, srv.peers) if m[0] == 0 and m[2] == "plugin.CloseInstance"]
    assert sorted(closes) == sorted(peer for peer, _ in first)            # each worker closes what it replaced
    assert len(srv.instances) == 2


async def test_start_instance_failure_is_a_500(fake, kong, echo_upstream):
    srv = await fake()
    srv.hook = lambda m: ([msgpack.packb([1, m[1], "boom", None])] if m[2] == "plugin.StartInstance" else None)
    k = await kong(route_config(echo_upstream, [{"name": "fake"}]), entries=[srv.entry()])
    r = await k.request("GET", "/")
    assert r.status == 500
    assert r.json()["message"] == "An unexpected error occurred"
    assert k.log_lines(contains="starting instance: boom")


async def test_error_answer_is_fail_open(fake, kong, echo_upstream):
    srv = await fake()
    srv.script["access"] = [["kong.service.request.set_header", "x-first", "1"],
                            ["kong.service.request.set_header", "x-second", "2"]]
    state = {"n": 0}

    def hook(m):
        if m[2] == "plugin.Step":
            state["n"] += 1
            if state["n"] == 1:  # the answer to the first set_header is an error
                return [msgpack.packb([1, m[1], "handler exploded", None])]
        return None

    srv.hook = hook
    k = await kong(route_config(echo_upstream, [{"name": "fake"}]), entries=[srv.entry()])
    r = await k.request("GET", "/")
    assert r.status == 200
    headers = r.json()["headers"]
    assert headers["x-first"] == "1" and "x-second" not in headers  # what already ran stays
    assert k.log_lines(level="err", contains="handler exploded")
    assert k.stats.last.failures == [("fake", "access", "handler exploded")]


async def test_timeout_is_fail_open(fake, kong, echo_upstream):
    srv = await fake()

    async def silent():
        await asyncio.sleep(3600)

    srv.hook = lambda m: silent() if m[2] == "plugin.HandleEvent" else None
    k = await kong(route_config(echo_upstream, [{"name": "fake"}]), entries=[srv.entry()], rpc_timeout=0.3)
    r = await k.request("GET", "/")
    assert r.status == 200
    assert k.log_lines(level="err", contains="no data")


async def test_wrong_msg_id_is_a_lua_error(fake, kong, echo_upstream):
    srv = await fake()
    srv.hook = lambda m: ([msgpack.packb([1, m[1] + 7, None, {"EventId": 0, "Data": "ret"}])]
                          if m[2] == "plugin.HandleEvent" else None)
    k = await kong(route_config(echo_upstream, [{"name": "fake"}]), entries=[srv.entry()])
    r = await k.request("GET", "/")
    assert r.status == 500
    assert k.log_lines(contains="unexpected RPC response ID")


async def test_unknown_pdk_method_is_answered_nil(fake, kong, echo_upstream):
    srv = await fake()
    srv.script["access"] = [["kong.request.get_nothing"], ["kong.ctx.plugin.get", "x"], ["kong.request.get_method"]]
    k = await kong(route_config(echo_upstream, [{"name": "fake"}]), entries=[srv.entry()])
    assert (await k.request("GET", "/")).status == 200
    ev = srv.finished[0]
    assert ev.results == [("plugin.Step", "<absent>"), ("plugin.Step", "<absent>"), ("plugin.Step", "GET")]
    assert k.log_lines(level="err", contains="could not find pdk method: kong.request.get_nothing")


async def test_pdk_error_in_access_is_a_500_and_the_event_waits(fake, kong, echo_upstream):
    srv = await fake()
    srv.script["access"] = [["kong.response.get_status"], ["kong.request.get_method"]]
    k = await kong(route_config(echo_upstream, [{"name": "fake"}]), entries=[srv.entry()])
    r = await k.request("GET", "/")
    assert r.status == 500
    assert k.log_lines(contains="function cannot be called in access phase")
    assert not [m for m in srv.received if m[0] == 0 and m[2].startswith("plugin.Step")]


async def test_workers_have_their_own_instances_and_counters(fake, kong, echo_upstream):
    srv = await fake()
    k = await kong(route_config(echo_upstream, [{"name": "fake"}]), entries=[srv.entry()], workers=2)
    for _ in range(4):
        assert (await k.request("GET", "/")).status == 200
    assert srv.methods().count("plugin.StartInstance") == 2
    ids = [m[1] for m in srv.received if m[0] == 0]
    assert ids.count(1) == 2  # each worker counts from 1
    assert srv.connections == 2


async def test_log_phase_runs_on_saved_data_after_the_response(fake, kong, echo_upstream):
    srv = await fake(phases=("access", "log"))
    srv.script["access"] = [["kong.service.request.set_header", "x-set", "v"],
                            ["kong.ctx.shared.set", "k", {"m": {}, "l": [1]}],
                            ["kong.log.set_serialize_value", "a.b.c", 7]]
    srv.script["log"] = [["kong.request.get_headers"], ["kong.ctx.shared.get", "k"], ["kong.log.serialize"],
                         ["kong.response.get_status"], ["kong.log.set_serialize_value", "late", 1],
                         ["kong.nginx.get_var", "request_id"], ["kong.request.get_method"]]
    k = await kong(route_config(echo_upstream, [{"name": "fake"}]), entries=[srv.entry()])
    r = await k.request("GET", "/x")
    assert r.status == 200
    await k.settle()
    log_ev = [e for e in srv.events.values() if e.phase == "log"][0]  # never finished: get_var hangs
    results = dict(zip(["headers", "shared", "serialize", "status", "ssv"], [x[1] for x in log_ev.results]))
    assert log_ev.results[0][0] == "plugin.StepMultiMap"
    assert results["headers"]["x-set"] == ["v"]  # headers set on the upstream request are there
    assert results["shared"] == {"m": [], "l": [1]}
    import json

    ser = json.loads(results["serialize"])
    assert ser["a"] == {"b": {"c": 7}} and ser["source"] == "upstream" and ser["response"]["status"] == 200
    assert ser["route"]["name"] == "r" and ser["request"]["headers"]["x-set"] == "v"
    assert results["status"] == 200
    assert len(log_ev.results) == 5  # the get_var step was never answered
    assert k.log_lines(level="err", contains="API disabled in the current context")


async def test_rewrite_runs_for_global_plugins_only(fake, kong, echo_upstream):
    glob = await fake("glob", phases=("rewrite", "access"))
    scoped = await fake("scoped", phases=("rewrite", "access"))
    glob.script["rewrite"] = [["kong.service.request.set_header", "x-rewrite", "g"]]
    scoped.script["rewrite"] = [["kong.service.request.set_header", "x-rewrite-scoped", "s"]]
    cfg = route_config(echo_upstream, [{"name": "scoped"}], extra={"plugins": [{"name": "glob"}]})
    k = await kong(cfg, entries=[glob.entry(), scoped.entry()])
    headers = (await k.request("GET", "/")).json()["headers"]
    assert headers["x-rewrite"] == "g" and "x-rewrite-scoped" not in headers
    assert "rewrite" not in [m[3][0].get("EventName") for m in scoped.received if m[0] == 0 and
                             m[2] == "plugin.HandleEvent"]


async def test_serialize_value_set_in_log_reaches_no_other_plugin(fake, kong, echo_upstream):
    first = await fake("first", priority=20, phases=("access", "log"))
    second = await fake("second", priority=10, phases=("access", "log"))
    first.script["access"] = [["kong.log.set_serialize_value", "from_access", 1]]
    first.script["log"] = [["kong.log.set_serialize_value", "from_log", 1], ["kong.log.serialize"]]
    second.script["log"] = [["kong.log.serialize"]]
    k = await kong(route_config(echo_upstream, [{"name": "first"}, {"name": "second"}]),
                   entries=[first.entry(), second.entry()])
    assert (await k.request("GET", "/")).status == 200
    await k.settle()
    import json

    own = json.loads([e for e in first.finished if e.phase == "log"][0].results[1][1])
    other = json.loads([e for e in second.finished if e.phase == "log"][0].results[0][1])
    assert own["from_access"] == 1 and "from_log" not in own  # the snapshot was taken before the timer
    assert other["from_access"] == 1 and "from_log" not in other


async def test_consumer_scoped_instance_sees_its_consumer_id(fake, kong, echo_upstream):
    srv = await fake(phases=("access",))
    cfg = route_config(echo_upstream, [{"name": "key-auth"}], extra={
        "consumers": [{"username": "c1", "keyauth_credentials": [{"key": "k1"}]}],
        "plugins": [{"name": "fake", "consumer": "c1", "config": {}}]})
    k = await kong(cfg, entries=[srv.entry()])
    assert (await k.request("GET", "/", headers={"apikey": "k1"})).status == 200
    started = [m for m in srv.received if m[0] == 0 and m[2] == "plugin.StartInstance"]
    import json

    conf = json.loads(started[0][3][0]["Config"])
    assert conf["consumer_id"] == k.declarative.consumer_by_username("c1").id
    assert conf["__key__"].startswith("plugins:fake:::" + conf["consumer_id"])
    assert "route_id" not in conf and "service_id" not in conf


async def test_buffered_answer_for_response_handlers(fake, kong, echo_upstream):
    srv = await fake(phases=("access", "response"))
    srv.script["response"] = [["kong.service.response.get_status"], ["kong.service.response.get_raw_body"],
                              ["kong.service.response.get_headers"], ["kong.response.get_raw_body"]]
    k = await kong(route_config(echo_upstream, [{"name": "fake"}]), entries=[srv.entry()])
    r = await k.request("GET", "/b")
    # kong.response.get_raw_body is refused outside body_filter: a Lua error in `response` is a 500
    assert r.status == 500
    ev = [e for e in srv.events.values() if e.phase == "response"][0]
    assert ev.results[0] == ("plugin.Step", 200)
    assert isinstance(ev.results[1][1], bytes) and b'"path": "/b"' in ev.results[1][1]
    assert ev.results[2][0] == "plugin.StepMultiMap" and ev.results[2][1]["content-type"] == ["application/json; charset=utf-8"]
    assert k.log_lines(contains="function cannot be called in response phase")

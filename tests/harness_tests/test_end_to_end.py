"""The double in front of a real plugin server (the stock kong-pdk server, or
``tollgate serve``; see ``fixture_entries``) and a real upstream: key-auth, precedence
and order, PDK quirks, buffering, streaming, fail-open, proxy headers."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from aiohttp import web

KEY = {"apikey": "alice-key"}


def doc(upstream_url, route_plugins=(), *, more_routes=(), consumers=True, plugins=(), service_plugins=(),
        route_extra=None):
    d = {"_format_version": "3.0", "services": [{
        "name": "svc", "url": upstream_url, "plugins": list(service_plugins),
        "routes": [{"name": "main", "paths": ["/v1"], "strip_path": False, "plugins": list(route_plugins),
                    **(route_extra or {})}, *more_routes]}],
        "plugins": list(plugins)}
    if consumers:
        d["consumers"] = [{"username": "alice", "custom_id": "team-a", "keyauth_credentials": [{"key": "alice-key"}]},
                          {"username": "bob", "keyauth_credentials": [{"key": "bob-key"}]}]
    return d


@pytest.fixture
async def echo(upstream):
    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path.startswith("/v1/sse") or request.path.startswith("/sse"):
            n, gap = int(request.query.get("n", "20")), float(request.query.get("gap", "0.1"))
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for i in range(n):
                await resp.write(f"data: {i}\n\n".encode())
                await asyncio.sleep(gap)
            await resp.write_eof()
            return resp
        return web.json_response({"method": request.method, "path": request.path_qs, "body": body.decode(),
                                  "headers": {k.lower(): v for k, v in request.headers.items()}},
                                 headers={"X-Upstream": "yes"})

    return await upstream(handler)


def probe(*calls, header=None):
    cfg = {"calls": json.dumps([list(c) for c in calls])}
    if header:
        cfg["header"] = header
    return {"name": "pdk_probe", "config": cfg}


# ------------------------------------------------------------------------------ key-auth


async def test_key_auth(fixture_entries, kong, echo):
    entries = await fixture_entries("pdk_probe")
    k = await kong(doc(echo, [{"name": "key-auth"},
                              probe(["kong.client.get_consumer"], ["kong.client.get_credential"], header="x-probe")]),
                   entries=entries)
    r = await k.request("GET", "/v1/x")
    assert r.status == 401 and r.json()["message"] == "No API key found in request"
    assert r.headers["WWW-Authenticate"] == "Key"
    r = await k.request("GET", "/v1/x", headers={"apikey": "nope"})
    assert r.status == 401 and r.json()["message"] == "Unauthorized"  # Kong 3.9.3's wording
    assert r.json()["request_id"] == r.headers["X-Kong-Request-Id"]
    r = await k.request("GET", "/v1/x", headers=KEY)
    assert r.status == 200
    up = r.json()["headers"]
    alice = k.declarative.consumer_by_username("alice")
    assert up["x-consumer-id"] == alice.id and up["x-consumer-username"] == "alice"
    assert up["x-consumer-custom-id"] == "team-a"
    assert up["x-credential-identifier"] == k.declarative.credential_by_key("alice-key").id
    assert "x-anonymous-consumer" not in up
    consumer, credential = json.loads(up["x-probe"])
    assert consumer == alice.entity()
    assert credential["key"] == "alice-key" and credential["consumer"] == {"id": alice.id}
    r = await k.request("GET", "/v1/x?apikey=bob-key")
    assert r.status == 200 and r.json()["headers"]["x-consumer-username"] == "bob"


async def test_acl_groups_reach_the_upstream_and_later_plugins(fixture_entries, kong, echo):
    """Kong 3.9.3's acl plugin: groups from the consumer's acls; the client's X-Consumer-Groups is replaced. OSS has
    no kong.client.get_consumer_groups (Enterprise's): the call answers nil and logs "could not find pdk method"."""
    entries = await fixture_entries("pdk_probe")
    cfg = doc(echo, [{"name": "key-auth"}, {"name": "acl", "config": {"deny": ["banned"]}},
                     probe(["kong.request.get_header", "x-consumer-groups"], ["kong.client.get_consumer_groups"],
                           header="x-probe")],
              more_routes=[{"name": "admins", "paths": ["/admins"], "strip_path": False,
                            "plugins": [{"name": "key-auth"}, {"name": "acl", "config": {"allow": ["admin"]}}]}])
    cfg["consumers"][0]["acls"] = [{"group": "admin"}, {"group": "ops"}]
    cfg["consumers"].append({"username": "mallory", "keyauth_credentials": [{"key": "m-key"}],
                             "acls": [{"group": "banned"}]})
    k = await kong(cfg, entries=entries)
    r = await k.request("GET", "/v1/x", headers={**KEY, "X-Consumer-Groups": "root"})
    assert r.status == 200 and r.json()["headers"]["x-consumer-groups"] == "admin, ops"
    assert json.loads(r.json()["headers"]["x-probe"]) == ["admin, ops", None]
    assert any("could not find pdk method: kong.client.get_consumer_groups" in line.message for line in k.log_lines("err"))
    r = await k.request("GET", "/v1/x", headers={"apikey": "bob-key", "X-Consumer-Groups": "root"})
    assert r.status == 200 and r.json()["headers"]["x-consumer-groups"] == ""     # no groups: replaced by ""
    r = await k.request("GET", "/v1/x", headers={"apikey": "m-key"})
    assert r.status == 403 and r.json()["message"] == "You cannot consume this service"
    assert (await k.request("GET", "/admins/x", headers=KEY)).status == 200
    assert (await k.request("GET", "/admins/x", headers={"apikey": "bob-key"})).status == 403


# ------------------------------------------------------------------------------ precedence and order


async def test_precedence_and_priority_order(fixture_entries, kong, echo):
    entries = await fixture_entries("tag_header", "tag_header_high", "pdk_probe")
    other = {"name": "other", "paths": ["/other"], "strip_path": False}
    cfg = doc(echo, [{"name": "key-auth"}, {"name": "tag_header", "config": {"tag": "route"}},
                     {"name": "tag_header_high", "config": {"tag": "r"}},
                     probe(["kong.request.get_header", "x-order"], header="x-probe")],
              more_routes=[other],
              service_plugins=[{"name": "tag_header", "config": {"tag": "service"}}],
              plugins=[{"name": "tag_header", "config": {"tag": "global"}},
                       {"name": "tag_header", "consumer": "bob", "config": {"tag": "bob"}}])
    k = await kong(cfg, entries=entries)
    up = (await k.request("GET", "/v1/x", headers=KEY)).json()["headers"]
    assert up["x-tag-a"] == "route"
    assert json.loads(up["x-probe"]) == ["high:r"]  # 1000 ran before 800, and after key-auth (1250)
    up = (await k.request("GET", "/v1/x", headers={"apikey": "bob-key"})).json()["headers"]
    assert up["x-tag-a"] == "bob"  # Kong's lookup_cfg: consumer-only beats route-only
    up = (await k.request("GET", "/other")).json()["headers"]
    assert up["x-tag-a"] == "service"
    rs = k.stats.last
    assert rs.by_plugin["tag_header"] == 3  # HandleEvent + set_header step (+ StartInstance)
    assert rs.round_trips == sum(rs.by_plugin.values())


# ------------------------------------------------------------------------------ PDK quirks


async def test_pdk_values_as_kong_returns_them(fixture_entries, kong, echo):
    entries = await fixture_entries("pdk_probe")
    calls = [
        ["kong.request.get_query"],
        ["kong.request.get_query_arg", "a"],
        ["kong.request.get_headers"],
        ["kong.request.get_header", "X_Multi"],
        ["kong.request.get_raw_body"],
        ["kong.request.get_body"],
        ["kong.ctx.shared.set", "k", {"a": 1, "empty_list": [], "empty_map": {}, "none": None}],
        ["kong.ctx.shared.get", "k"],
        ["kong.nginx.get_ctx", "buffered_proxying"],
        ["kong.request.get_path"],
        ["kong.request.get_raw_path"],
        ["kong.request.get_path_with_query"],
        ["kong.request.get_http_version"],
        ["kong.request.get_scheme"],
        ["kong.request.get_host"],
        ["kong.request.get_forwarded_host"],
        ["kong.client.get_ip"],
        ["kong.router.get_route"],
        ["kong.request.get_nonexistent_call"],
        ["kong.ip.is_trusted", "127.0.0.1"],
        ["kong.request.get_uri_captures"],
    ]
    k = await kong(doc(echo, [probe(*calls)]), entries=entries)
    r = await k.request("POST", "/v1/a/./b?a=1&a=2&flag&e=", json_body={"x": {}, "y": [1]},
                        headers={"X-Multi": "one", "Host": "Example.COM:8000"})
    assert r.status == 200, r.text
    (query, arg, headers, multi, raw, body, _, shared, buffered, path, raw_path, pwq, version, scheme, host, fhost,
     ip, route, unknown, trusted, captures) = r.json()
    assert query == {"a": ["1", "2"], "flag": [], "e": [""]}  # fix_mmap: strings wrapped, true -> []
    assert arg == "1"
    assert headers["x-multi"] == ["one"] and headers["host"] == ["Example.COM:8000"]
    assert multi == "one"
    assert raw == {"__bytes__": '{"x": {}, "y": [1]}'}  # fix_raw: bytes
    assert body == {"x": [], "y": [1]}  # the empty object comes back as an empty array
    assert shared == {"a": 1, "empty_list": [], "empty_map": []}
    assert buffered is None
    assert (path, raw_path, pwq) == ("/v1/a/b", "/v1/a/./b", "/v1/a/./b?a=1&a=2&flag&e=")
    assert version == 1.1 and scheme == "http" and host == "example.com" and fhost == "example.com"
    assert ip == "127.0.0.1" and route["name"] == "main" and unknown is None and trusted is False
    assert captures == {"unnamed": [], "named": []}
    assert k.log_lines(contains="could not find pdk method: kong.request.get_nonexistent_call")


async def test_empty_query_is_an_empty_map(fixture_entries, kong, echo):
    entries = await fixture_entries("pdk_probe")
    k = await kong(doc(echo, [probe(["kong.request.get_query"], ["kong.request.get_raw_body"])]), entries=entries,
                   record_messages=True)
    r = await k.request("GET", "/v1/x")
    assert r.json() == [{}, {"__bytes__": ""}]
    steps = [m["msg"] for m in k.messages if m["dir"] == "kong->server" and m["msg"][2] == "plugin.StepMultiMap"]
    assert steps[0][3][0]["Data"] == {}


async def test_body_over_client_body_buffer_size(fixture_entries, kong, echo):
    entries = await fixture_entries("pdk_probe")
    big = {"content": "x" * 9000}
    cfg = doc(echo, [probe(["kong.request.get_raw_body"])],
              more_routes=[{"name": "zero", "paths": ["/zero"], "strip_path": False,
                            "plugins": [probe(["kong.request.get_raw_body", 0])]}])
    k = await kong(cfg, entries=entries)
    r = await k.request("POST", "/v1/x", json_body=big)
    assert r.status == 500 and r.json()["message"] == "An unexpected error occurred"
    assert k.log_lines(contains="attempt to get length of local 'str'")
    r = await k.request("POST", "/zero", json_body=big)  # get_raw_body(0) reads the spilled body
    assert r.status == 200 and len(r.json()[0]["__bytes__"]) > 9000
    await k.stop()
    k = await kong(cfg, entries=entries, client_body_buffer_size=1 << 20)
    assert (await k.request("POST", "/v1/x", json_body=big)).status == 200


# ------------------------------------------------------------------------------ buffering and streaming


async def test_response_phase_buffers_and_sees_the_whole_body(fixture_entries, kong, echo):
    entries = await fixture_entries("response_filter", "response_low", "pdk_probe")
    cfg = doc(echo, [{"name": "response_filter"}, {"name": "response_low"},
                     probe(["kong.nginx.get_ctx", "buffered_proxying"], header="x-probe")],
              more_routes=[
                  {"name": "replace", "paths": ["/replace"], "strip_path": False,
                   "plugins": [{"name": "response_filter", "config": {"replace": "new body"}},
                               {"name": "response_low"}]},
                  {"name": "unbuffered", "paths": ["/unbuffered"], "strip_path": False,
                   "plugins": [{"name": "response_filter", "config": {"unbuffer": True}}]},
                  {"name": "rebuffered", "paths": ["/rebuffered"], "strip_path": False,
                   "plugins": [{"name": "response_filter", "config": {"unbuffer": True}}, {"name": "response_low"}]},
              ])
    k = await kong(cfg, entries=entries)
    r = await k.request("GET", "/v1/x")
    assert r.status == 200
    assert r.headers["x-seen-body-bytes"] == str(len(r.body)) and r.headers["x-seen-status"] == "200"
    assert r.headers["x-response-low"] == "ran" and r.headers["X-Upstream"] == "yes"
    # Kong collects plugins lazily, in priority order: the probe (800) runs before the response
    # plugins (600, 500) are collected, so it does not see buffered_proxying yet
    assert json.loads(r.json()["headers"]["x-probe"]) == [None]
    r = await k.request("GET", "/replace")
    assert r.body == b"new body" and r.headers["Content-Type"] == "text/plain"
    assert "x-response-low" not in r.headers  # exit skipped the lower response handler
    assert r.headers["x-seen-body-bytes"]  # set before the exit, kept
    r = await k.request("GET", "/unbuffered")
    assert r.status == 200 and "x-seen-body-bytes" not in r.headers
    # a LOWER-priority plugin with a response handler is collected after the set_ctx(false)
    # and turns buffering back on (get_next_and_collect in plugins_iterator.lua)
    r = await k.request("GET", "/rebuffered")
    assert r.headers["x-seen-body-bytes"] and r.headers["x-response-low"] == "ran"


async def _chunk_times(url: str) -> list[float]:
    times = []
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            assert r.status == 200
            async for _ in r.content.iter_any():
                times.append(time.monotonic() - t0)
    return times


async def test_streaming_keeps_chunk_timing(fixture_entries, kong, echo):
    entries = await fixture_entries("tag_header", "response_filter")
    cfg = doc(echo, [{"name": "tag_header"}],
              more_routes=[{"name": "buffered", "paths": ["/sse"], "strip_path": False,
                            "plugins": [{"name": "response_filter"}]}])
    k = await kong(cfg, entries=entries)
    streamed, buffered = await asyncio.gather(_chunk_times(k.url + "/v1/sse?n=20&gap=0.1"),
                                              _chunk_times(k.url + "/sse?n=10&gap=0.1"))
    assert streamed[0] < 0.6 and streamed[-1] > 1.7  # spread over ~2 s, first event at once
    assert len(streamed) >= 10
    assert buffered[0] > 0.85  # a response handler on the route: all at the end, in one piece
    assert buffered[-1] - buffered[0] < 0.2


# ------------------------------------------------------------------------------ fail-open


async def test_fail_open_on_socket_errors_and_dead_server(fixture_entries, kong, echo):
    entries = await fixture_entries("tag_header")
    k = await kong(doc(echo, [{"name": "tag_header", "config": {"extra_headers": 3}}]), entries=entries,
                   rpc_timeout=1.0)
    up = (await k.request("GET", "/v1/x")).json()["headers"]
    assert up["x-tag-a"] == "default" and up["x-extra-2"] == "2"

    k.faults.fail_event("tag_header", "access")  # at HandleEvent
    r = await k.request("GET", "/v1/x")
    assert r.status == 200 and "x-tag-a" not in r.json()["headers"]

    k.faults.fail_event("tag_header", "access", at_step=3, mode="socket_after_send")
    up = (await k.request("GET", "/v1/x")).json()["headers"]
    assert up["x-tag-a"] == "default" and up["x-extra-0"] == "0"  # steps before the failure took effect
    assert "x-extra-2" not in up

    k.faults.fail_event("tag_header", "access", at_step=1, mode="timeout")
    t0 = time.monotonic()
    r = await k.request("GET", "/v1/x")
    assert r.status == 200 and 0.9 < time.monotonic() - t0 < 5

    fixture_entries.servers[0].kill()  # the plugin server dies; the instance was started
    r = await k.request("GET", "/v1/x")
    assert r.status == 200 and "x-tag-a" not in r.json()["headers"]
    assert k.log_lines(level="err", contains="trying to connect")
    assert [f[0] for f in k.stats.last.failures] == ["tag_header"]


async def test_server_down_before_the_instance_started_is_a_500(fixture_entries, kong, echo):
    entries = await fixture_entries("tag_header")
    fixture_entries.servers[0].kill()
    k = await kong(doc(echo, [{"name": "tag_header"}]), entries=entries, wait_for_sockets=0)
    r = await k.request("GET", "/v1/x")
    assert r.status == 500


# ------------------------------------------------------------------------------ proxying


async def test_proxy_headers_paths_and_errors(fixture_entries, kong, echo):
    entries = await fixture_entries("tag_header")
    cfg = doc(echo, [{"name": "tag_header"}], route_extra={"strip_path": True},
              more_routes=[{"name": "keep", "paths": ["/keep"], "preserve_host": True, "strip_path": False}])
    cfg["services"].append({"name": "dead", "url": "http://127.0.0.1:9", "routes": [{"name": "d", "paths": ["/dead"]}]})
    k = await kong(cfg, entries=entries)
    r = await k.request("GET", "/v1/chat?q=1", headers={"X-Forwarded-For": "10.0.0.1", "Connection": "x-hop",
                                                         "X-Hop": "drop", "X-Kong-Request-Id": "forged"})
    assert r.status == 200
    body = r.json()
    assert body["path"] == "/chat?q=1"  # strip_path
    up = body["headers"]
    echo_port = echo.rsplit(":", 1)[1]
    assert up["host"] == f"127.0.0.1:{echo_port}"
    assert up["x-forwarded-for"] == "10.0.0.1, 127.0.0.1" and up["x-real-ip"] == "127.0.0.1"
    assert up["x-forwarded-proto"] == "http" and up["x-forwarded-port"] == str(k.port)
    assert up["x-forwarded-path"] == "/v1/chat" and up["x-forwarded-prefix"] == "/v1"
    assert "x-hop" not in up
    assert r.headers["Via"] == "1.1 kong/3.9.3"
    assert {"X-Kong-Upstream-Latency", "X-Kong-Proxy-Latency", "X-Kong-Request-Id"} <= set(r.headers)
    # headers_upstream = x-kong-request-id (Kong 3.x's default): the same id upstream, the client's value replaced
    assert up["x-kong-request-id"] == r.headers["X-Kong-Request-Id"] != "forged"
    r = await k.request("GET", "/keep", headers={"Host": "client.example"})
    assert r.json()["headers"]["host"] == "client.example"
    r = await k.request("GET", "/nowhere")
    assert r.status == 404 and r.json()["message"] == "no Route matched with those values"
    r = await k.request("GET", "/dead")
    assert r.status == 502
    assert r.json()["message"] == "An invalid response was received from the upstream server"
    assert r.headers["Server"] == "kong/3.9.3"


async def test_thread_runner_for_sync_tests(fixture_entries, kong_thread, echo):
    entries = await fixture_entries("tag_header")
    t = await asyncio.to_thread(kong_thread, doc(echo, [{"name": "tag_header"}]), entries=entries)

    def get():
        import urllib.request

        with urllib.request.urlopen(t.url + "/v1/x") as r:
            return json.loads(r.read())

    up = await asyncio.to_thread(get)
    assert up["headers"]["x-tag-a"] == "default"
    assert t.stats.total_round_trips >= 3

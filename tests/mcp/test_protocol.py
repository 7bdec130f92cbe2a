"""The client-side rules of both generations: which one a request speaks, the 2026-07-28 header ladder, JSON-RPC
parsing."""

from __future__ import annotations

import base64

import pytest
from multidict import CIMultiDict

from tollgate.plugins.mcp import jsonrpc, protocol
from tollgate.plugins.mcp.jsonrpc import JsonRpcError, Message

ENVELOPE = {protocol.META_VERSION: "2026-07-28", protocol.META_CAPABILITIES: {}}


def message(method: str, params: dict | None = None) -> Message:
    parsed = jsonrpc.parse(jsonrpc.orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}))
    assert isinstance(parsed, Message)
    return parsed


def headers(**values: str) -> CIMultiDict:
    return CIMultiDict({k.replace("_", "-"): v for k, v in values.items()})


def check(msg: Message, h: CIMultiDict) -> str:
    return protocol.check_modern(msg, h)


def test_generation_follows_meta_or_header_and_initialize_opens_a_session():
    call = message("tools/call", {"name": "x", "_meta": ENVELOPE})
    assert protocol.generation_of(call, headers()) == protocol.Generation("2026-07-28", True)
    assert protocol.generation_of(message("tools/list"), headers(MCP_Protocol_Version="2026-07-28")).modern
    assert protocol.generation_of(message("tools/list"), headers(MCP_Protocol_Version="2025-06-18")) is None
    assert protocol.generation_of(message("initialize", {"_meta": ENVELOPE}), headers()) is None


def test_a_consistent_modern_request_passes():
    msg = message("tools/call", {"name": "forecast", "_meta": ENVELOPE})
    h = headers(MCP_Protocol_Version="2026-07-28", Mcp_Method="tools/call", Mcp_Name="forecast")
    assert check(msg, h) == "2026-07-28"


@pytest.mark.parametrize("override,code", [
    ({"Mcp-Method": "tools/list"}, jsonrpc.HEADER_MISMATCH),
    ({"Mcp-Name": "other"}, jsonrpc.HEADER_MISMATCH),
    ({"MCP-Protocol-Version": "2025-11-25"}, jsonrpc.HEADER_MISMATCH),
])
def test_headers_that_contradict_the_body_are_header_mismatch(override, code):
    msg = message("tools/call", {"name": "forecast", "_meta": ENVELOPE})
    h = headers(MCP_Protocol_Version="2026-07-28", Mcp_Method="tools/call", Mcp_Name="forecast")
    h.update(override)
    with pytest.raises(JsonRpcError) as caught:
        check(msg, h)
    assert caught.value.code == code and caught.value.status == 400


def test_a_duplicated_routing_header_is_a_mismatch():
    msg = message("tools/list", {"_meta": ENVELOPE})
    h = headers(MCP_Protocol_Version="2026-07-28", Mcp_Method="tools/list")
    h.add("Mcp-Method", "tools/list")
    with pytest.raises(JsonRpcError) as caught:
        check(msg, h)
    assert caught.value.code == jsonrpc.HEADER_MISMATCH


def test_envelope_shape_first_then_headers_then_version():
    with pytest.raises(JsonRpcError) as shape:
        check(message("tools/list", {"_meta": {protocol.META_VERSION: "2026-07-28"}}), headers())
    assert shape.value.code == jsonrpc.INVALID_PARAMS
    future = {**ENVELOPE, protocol.META_VERSION: "2030-01-01"}
    with pytest.raises(JsonRpcError) as mismatch:
        check(message("tools/list", {"_meta": future}), headers(MCP_Protocol_Version="2026-07-28",
                                                                 Mcp_Method="tools/list"))
    assert mismatch.value.code == jsonrpc.HEADER_MISMATCH
    with pytest.raises(JsonRpcError) as unsupported:
        check(message("tools/list", {"_meta": future}), headers(MCP_Protocol_Version="2030-01-01",
                                                                 Mcp_Method="tools/list"))
    assert unsupported.value.code == jsonrpc.UNSUPPORTED_PROTOCOL_VERSION
    assert unsupported.value.data == {"supported": ["2026-07-28"], "requested": "2030-01-01"}


def test_name_headers_decode_base64_and_bad_base64_never_matches():
    encoded = "=?base64?" + base64.b64encode("météo".encode()).decode() + "?="
    assert protocol.decode_header_value(encoded) == "météo"
    assert protocol.decode_header_value("=?base64?!!!?=") is None
    assert protocol.decode_header_value("plain") == "plain"


def test_negotiation_and_meta_stripping():
    assert protocol.negotiate("2025-06-18") == "2025-06-18"
    assert protocol.negotiate("2024-11-05") == protocol.LATEST_SESSION_VERSION
    params = {"name": "x", "_meta": {**ENVELOPE, "progressToken": 5}}
    assert protocol.strip_meta(params) == {"name": "x", "_meta": {"progressToken": 5}}
    assert protocol.strip_meta({"_meta": ENVELOPE}) == {}


@pytest.mark.parametrize("body,code", [
    (b"{", jsonrpc.PARSE_ERROR),
    (b'"text"', jsonrpc.INVALID_REQUEST),
    (b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}', jsonrpc.INVALID_REQUEST),
    (b'{"jsonrpc": "2.0", "id": 1, "method": ""}', jsonrpc.INVALID_REQUEST),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}', jsonrpc.INVALID_REQUEST),
    (b'{"jsonrpc": "2.0", "id": null, "method": "ping"}', jsonrpc.INVALID_REQUEST),
    (b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}', jsonrpc.INVALID_REQUEST),
])
def test_malformed_messages(body, code):
    with pytest.raises(JsonRpcError) as caught:
        jsonrpc.parse(body)
    assert caught.value.code == code and caught.value.status == 400


def test_batches_responses_and_notifications_are_told_apart():
    assert isinstance(jsonrpc.parse(b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]'), list)
    assert jsonrpc.parse(b'{"jsonrpc": "2.0", "id": 1, "result": {}}') == {"jsonrpc": "2.0", "id": 1, "result": {}}
    note = jsonrpc.parse(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}')
    assert isinstance(note, Message) and not note.is_request

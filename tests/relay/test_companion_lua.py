"""The tollgate-analytics companion's body filter on its own (its real handler.lua in LuaJIT, with a stub ``kong``):
the trailer is cut out wherever the chunks split, and nothing else is touched."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.lua import LuaPlugin
from tollgate.relay import kong_log


class Recorder:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}


def companion_with_stub_kong(recorder: Recorder) -> LuaPlugin:
    plugin = LuaPlugin("tollgate-analytics")
    lua = plugin.lua

    def set_serialize_value(key: str, value: Any) -> None:
        recorder.values[key] = plugin._to_python(value)

    stub = lua.table(log=lua.table(set_serialize_value=set_serialize_value), ctx=lua.table(plugin=lua.table()))
    lua.globals().kong = stub
    return plugin


def run_body_filter(plugin: LuaPlugin, pieces: list[bytes]) -> bytes:
    ngx = plugin.lua.globals().ngx
    out = b""
    for i, piece in enumerate([*pieces, b""]):
        ngx.arg[1], ngx.arg[2] = piece, i == len(pieces)
        plugin.handler.body_filter(plugin.handler, plugin.lua.table())
        result = ngx.arg[1]
        out += result.encode("latin-1") if isinstance(result, str) else (result or b"")
    return out


NONCE = "0123456789abcdef"
# a model that writes the marker itself (even a whole fake trailer) cannot pass for the relay: it lacks the nonce
STREAM = (b'data: {"choices":[{"delta":{"content":": tollgate-analytics {\\"proxy\\":{}}"}}]}\n\n'
          b'data: {"choices":[{"delta":{"content":": tollgate"}}]}\n\ndata: [DONE]\n\n')
TRAILER = kong_log.trailer(NONCE, kong_log.encode({"proxy": {"usage": {"total_tokens": 7}, "meta": {"x": None}}}))


def promised(plugin: LuaPlugin) -> None:
    """What header_filter leaves when the relay's header promised a trailer with NONCE."""
    plugin.lua.globals().kong.ctx.plugin.held = ""
    plugin.lua.globals().kong.ctx.plugin.marker = kong_log.TRAILER.decode() + NONCE + " "


@pytest.mark.parametrize("cut", range(0, len(STREAM + TRAILER) + 3, 3))
def test_the_body_filter_cuts_the_trailer_wherever_the_chunks_split(cut: int):
    recorder = Recorder()
    plugin = companion_with_stub_kong(recorder)
    promised(plugin)
    whole = STREAM + TRAILER
    assert run_body_filter(plugin, [whole[:cut], whole[cut:cut + 5], whole[cut + 5:]]) == STREAM
    assert recorder.values["ai.proxy.usage"] == {"total_tokens": 7} and "ai.proxy.meta" in recorder.values


def test_the_body_filter_passes_a_body_without_trailer_unchanged_and_drops_a_cut_trailer():
    plugin = companion_with_stub_kong(Recorder())
    promised(plugin)
    assert run_body_filter(plugin, [b"data: x\n\n:", b" tolls"]) == b"data: x\n\n: tolls"
    plugin = companion_with_stub_kong(Recorder())
    promised(plugin)
    assert run_body_filter(plugin, [STREAM, TRAILER[:45]]) == STREAM


def test_a_binary_native_stream_keeps_every_byte_and_loses_only_its_trailer():
    """route_type preserve: AWS event-stream frames (binary) end the same way."""
    frames = bytes(range(256)) * 3 + b"\n\n: tollgate-analytics \x00\n\n"
    recorder = Recorder()
    plugin = companion_with_stub_kong(recorder)
    promised(plugin)
    assert run_body_filter(plugin, [frames[:100], frames[100:] + TRAILER[:9], TRAILER[9:]]) == frames
    assert recorder.values["ai.proxy.usage"] == {"total_tokens": 7}

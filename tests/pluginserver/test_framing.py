"""The framer on its own: whole messages out however the bytes are split, and named refusals for hostile input."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from tollgate.pluginserver.framing import MAX_MESSAGE, Framer, FramingError, Limits

# What Kong's messages are made of (msgpack round-trips these exactly; no tuples, no NaN).
scalars = st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False) \
    | st.text(max_size=40) | st.binary(max_size=300)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6)
                      | st.dictionaries(st.text(max_size=10), inner, max_size=6), max_leaves=40)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=5), st.lists(st.integers(0, 10_000), max_size=8))
def test_any_messages_split_anywhere_come_out_whole_and_in_order(messages, cuts):
    data = b"".join(msgpack.packb(m, use_bin_type=True) for m in messages)
    framer, out = Framer(), []
    for piece in split(data, cuts):
        out.extend(framer.feed(piece))
    assert out == messages
    assert framer.buffered == 0


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=4))
def test_garbage_gives_messages_or_a_framing_error_and_never_more_than_the_limit_held(data, cuts):
    limits = Limits(max_message=1024, max_items=64, max_objects=256)
    framer = Framer(limits)
    try:
        for piece in split(data, cuts):
            framer.feed(piece)
            assert framer.buffered <= limits.max_message
    except FramingError:
        pass


@pytest.mark.parametrize("header, reason", [
    (b"\xdd\x00\xff\xff\xff", "array declares 16777215 items"),      # the 128 MB list of the old decoder
    (b"\xdf\xff\xff\xff\xff", "map declares 4294967295 items"),
    (b"\xc6\xff\xff\xff\xff", "declares 4294967295 bytes"),
    (b"\xdb\x04\x00\x00\x01", "declares 67108865 bytes"),
    (b"\xc9\xff\xff\xff\xff\x01", "declares 4294967295 bytes"),
    (b"\x91" * 2000, "nests deeper than 1024 levels"),
    (b"\xc1", "byte 0xc1 at offset 0 is not MessagePack"),
    (b"\x92\xa1a\xa2\xff\xfe", "undecodable message"),                     # invalid UTF-8 in a str
])
def test_hostile_headers_are_refused_by_name_before_anything_is_allocated(header, reason):
    with pytest.raises(FramingError, match=reason):
        Framer().feed(header)


def test_a_refusal_comes_on_the_header_even_when_it_arrives_one_byte_at_a_time():
    framer = Framer()
    with pytest.raises(FramingError, match="array declares"):
        for byte in b"\x94\x00\x01\xa1m\xdd\x01\x00\x00\x00":
            framer.feed(bytes([byte]))


def test_size_and_object_limits_cover_the_whole_message_not_only_one_header():
    many_small = msgpack.packb([b"x" * 1000] * 60)
    with pytest.raises(FramingError, match="message larger than 50000 bytes"):
        Framer(Limits(max_message=50_000)).feed(many_small)
    nils = msgpack.packb([[None] * 1000] * 10)
    with pytest.raises(FramingError, match="more than 5000 objects"):
        Framer(Limits(max_objects=5000)).feed(nils)


def test_a_big_legal_message_in_small_pieces_arrives_whole_and_is_not_held_after():
    body = bytes(range(256)) * 40_000            # ~10 MB, as kong.request.get_raw_body can return
    data = msgpack.packb([0, 7, "plugin.Step", [{"EventId": 3, "Data": body}]], use_bin_type=True)
    framer, out = Framer(), []
    for i in range(0, len(data), 4096):
        out.extend(framer.feed(data[i:i + 4096]))
    assert out == [[0, 7, "plugin.Step", [{"EventId": 3, "Data": body}]]]
    assert framer.buffered == 0 and len(framer._buffer) == 0
    assert MAX_MESSAGE == 64 * 1024 * 1024

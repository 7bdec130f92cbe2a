"""The shared SSE decoder: WHATWG line ends wherever the reads split them, and its size cap."""

from __future__ import annotations

import pytest

from tollgate.providers.framing import SSEDecoder, SSELineTooLong

STREAM = b": hello\r\n\r\nevent: delta\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata:x\rdata\r\rdata: last\n\n"
EVENTS = [("delta", '{"a":\n1}'), ("message", "x\n"), ("message", "last")]


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(STREAM)])
def test_events_are_the_same_however_the_reads_split_the_stream(size):
    decoder = SSEDecoder()
    events = []
    for i in range(0, len(STREAM), size):
        events += decoder.feed(STREAM[i:i + size])
    events += decoder.close()
    assert [(e.event, e.data) for e in events] == EVENTS


def test_a_long_line_in_many_reads_comes_out_whole():
    decoder = SSEDecoder(max_size=1 << 20)
    line = b"data: " + b"y" * 100_000
    events = []
    for i in range(0, len(line), 1000):
        events += decoder.feed(line[i:i + 1000])
    assert events == []
    events += decoder.feed(b"\n\n")
    assert [e.raw for e in events] == [b"y" * 100_000]


def test_a_line_over_the_cap_is_refused_before_it_ends():
    decoder = SSEDecoder(max_size=100)
    decoder.feed(b"data: " + b"z" * 60)
    with pytest.raises(SSELineTooLong):
        decoder.feed(b"z" * 60)


def test_a_whole_line_over_the_cap_is_refused():
    with pytest.raises(SSELineTooLong):
        SSEDecoder(max_size=100).feed(b"data: " + b"z" * 200 + b"\n\n")


def test_an_event_whose_data_lines_add_up_over_the_cap_is_refused():
    decoder = SSEDecoder(max_size=100)
    with pytest.raises(SSELineTooLong):
        decoder.feed(b"data: " + b"z" * 60 + b"\n" + b"data: " + b"z" * 60 + b"\n")


def test_without_a_cap_nothing_is_refused():
    assert [e.raw for e in SSEDecoder().feed(b"data: " + b"z" * 100_000 + b"\n\n")] == [b"z" * 100_000]

"""Stream framings providers use: Server-Sent Events and newline-delimited JSON.

Decoders are incremental: bytes go in as the network delivers them, complete frames
come out, and a frame split across reads is held until its end arrives.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEvent:
    event: str
    raw: bytes          # the data field's bytes (its lines joined by LF)

    @property
    def data(self) -> str:
        return self.raw.decode("utf-8", "replace")


class SSELineTooLong(ValueError):
    """A line, or the data of one event, is longer than the decoder's ``max_size``."""


class SSEDecoder:
    """Incremental ``text/event-stream`` parser (WHATWG rules: LF, CRLF or CR line ends).

    ``max_size`` bounds the bytes of one line and of one event's data (None: unbounded), so a peer that never ends
    a line cannot grow the buffer without limit. A line arriving in many reads is joined once, when it ends."""

    def __init__(self, max_size: int | None = None) -> None:
        self._partial: list[bytes] = []     # the start of a line whose end has not arrived (it may end in a CR)
        self._partial_size = 0
        self._event = ""
        self._data: list[bytes] = []
        self._size = 0                      # bytes of data gathered for the event under way
        self._max = max_size

    def feed(self, chunk: bytes) -> list[SSEvent]:
        partial = self._partial
        if partial:
            ends_in_cr = partial[-1][-1:] == b"\r"
            if not ends_in_cr and b"\n" not in chunk and b"\r" not in chunk:
                partial.append(chunk)      # still no line end: keep the pieces, join them once
                self._partial_size += len(chunk)
                self._check(self._partial_size)
                return []
            partial.append(chunk)
            chunk = b"".join(partial)
            partial.clear()
        lines = chunk.splitlines(True)    # bytes split on LF, CRLF and CR only
        if not lines:
            return []
        last = lines[-1]
        if last[-1:] != b"\n":
            lines.pop()                     # unfinished, or a CR that may be the first half of a CRLF
            partial.append(last)
            self._partial_size = len(last)
            self._check(len(last) - (last[-1:] == b"\r"))
        events: list[SSEvent] = []
        for line in lines:
            line = line.rstrip(b"\r\n")
            if not line:
                if self._data:
                    events.append(SSEvent(self._event or "message", b"\n".join(self._data)))
                self._event, self._data, self._size = "", [], 0
                continue
            self._check(len(line))
            colon = line.find(b":")
            if colon == 0:
                continue                    # a comment
            name, value = (line[:colon], line[colon + 1:]) if colon > 0 else (line, b"")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._size += len(value) + 1
                self._check(self._size)
                self._data.append(value)
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
        return events

    def _check(self, size: int) -> None:
        if self._max is not None and size > self._max:
            raise SSELineTooLong(f"an SSE line or event is longer than {self._max} bytes")

    def close(self) -> list[SSEvent]:
        """Frames left when the stream ends without a final blank line."""
        tail = self.feed(b"\n\n") if self._partial or self._data else []
        self._partial.clear()
        return tail


class NDJSONDecoder:
    """Newline-delimited JSON lines (each complete line is one frame)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        return [line for line in (raw.strip() for raw in lines) if line]

    def close(self) -> list[bytes]:
        tail, self._buffer = self._buffer.strip(), b""
        return [tail] if tail else []


def sse_frame(data: bytes, event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + data + b"\n\n"


class JSONArrayError(ValueError):
    """The bytes are not one JSON array (or it ended before it closed)."""


class JSONArrayDecoder:
    """One JSON array spread over a body's reads (Gemini's ``streamGenerateContent`` without ``alt=sse``): each
    element's bytes come out as soon as the element is complete, long before the array closes.

    Only the structure is followed (brackets, braces, strings and their escapes); the elements themselves are left
    for the caller to parse.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pos = 0                  # next byte to look at
        self._start: int | None = None  # where the element being read began
        self._depth = 0                # 0: before (or after) the array, 1: between its elements
        self._in_string = False
        self._escaped = False
        self._closed = False

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        buffer, out = self._buffer, []
        i, end = self._pos, len(self._buffer)
        while i < end:
            c = buffer[i]
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif c == 0x5C:        # backslash
                    self._escaped = True
                elif c == 0x22:        # closing quote
                    self._in_string = False
            elif c in b" \t\r\n":
                pass
            elif self._depth == 0:
                if c != 0x5B or self._closed:
                    raise JSONArrayError("the stream is not one JSON array")
                self._depth = 1
            elif self._depth == 1 and c in b",]":
                if self._start is not None:
                    out.append(bytes(buffer[self._start:i]).strip())
                    self._start = None
                if c == 0x5D:
                    self._depth, self._closed = 0, True
            else:
                if self._depth == 1 and self._start is None:
                    self._start = i
                if c == 0x22:
                    self._in_string = True
                elif c in b"[{":
                    self._depth += 1
                elif c in b"]}":
                    self._depth -= 1
                    if self._depth == 1:       # an object or array element is complete: out at once
                        out.append(bytes(buffer[self._start:i + 1]))
                        self._start = None
            i += 1
        keep = self._start if self._start is not None else i
        del buffer[:keep]
        self._pos = i - keep
        if self._start is not None:
            self._start = 0
        return out

    def close(self) -> list[bytes]:
        if not self._closed and (self._depth or self._buffer.strip()):
            raise JSONArrayError("the JSON array ended before it closed")
        return []

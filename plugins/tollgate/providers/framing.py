"""Stream framings providers use: Server-Sent Events and newline-delimited JSON.

Decoders are incremental: bytes go in as the network delivers them, complete frames
come out, and a frame split across reads is held until its end arrives.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SSEvent:
    event: str
    data: str


class SSEDecoder:
    """Incremental ``text/event-stream`` parser (WHATWG rules: LF, CRLF or CR line ends)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEvent]:
        self._buffer += chunk
        events: list[SSEvent] = []
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                break
            end, width = cut
            line = self._buffer[:end].decode("utf-8", "replace")
            self._buffer = self._buffer[end + width:]
            if not line:
                if self._data:
                    events.append(SSEvent(self._event or "message", "\n".join(self._data)))
                self._event, self._data = "", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
        return events

    def close(self) -> list[SSEvent]:
        """Frames left when the stream ends without a final blank line."""
        tail = self.feed(b"\n\n") if self._buffer or self._data else []
        self._buffer = b""
        return tail


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    lf = buffer.find(b"\n")
    cr = buffer.find(b"\r")
    if cr == -1 and lf == -1:
        return None
    if cr == -1 or (lf != -1 and lf < cr):
        return lf, 1
    if cr + 1 < len(buffer):
        return cr, 2 if buffer[cr + 1:cr + 2] == b"\n" else 1
    return None  # a CR at the very end may be the first half of CRLF


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

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

"""AWS event-stream framing (``application/vnd.amazon.eventstream``), decoded incrementally.

Each message is a binary frame: a 12-byte prelude (total length, headers length, CRC32 of
those 8 bytes), typed headers (``:event-type``, ``:message-type``, ``:content-type``,
``:exception-type``...), the payload, and a CRC32 of everything before it. Bedrock's
ConverseStream answers in this framing.

The parsing itself is botocore's (``botocore.eventstream.EventStreamBuffer``: CRC checks,
every header type, frames split across reads); this module adapts it to the decoders'
``feed``/``close`` shape and turns its parser errors into one exception type.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import orjson
from botocore.eventstream import EventStreamBuffer, ParserError

CONTENT_TYPE = "application/vnd.amazon.eventstream"


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (bad CRC, impossible lengths, cut inside a frame)."""


@dataclass
class EventMessage:
    headers: dict[str, Any]
    payload: bytes

    @property
    def message_type(self) -> str:
        """``event``, ``exception`` or ``error``."""
        return str(self.headers.get(":message-type") or "event")

    @property
    def event_type(self) -> str | None:
        return self.headers.get(":event-type")

    @property
    def exception_type(self) -> str | None:
        return self.headers.get(":exception-type")

    def json(self) -> Any:
        if not self.payload:
            return {}
        try:
            return orjson.loads(self.payload)
        except orjson.JSONDecodeError:
            raise EventStreamError(f"event {self.event_type or self.exception_type!r} has a payload that is "
                                   "not JSON") from None


class EventStreamDecoder:
    """Bytes in as the network delivers them, complete messages out; a partial frame waits for its end."""

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()
        self._received = 0
        self._consumed = 0
        self._error: EventStreamError | None = None

    def feed(self, chunk: bytes) -> list[EventMessage]:
        """Whole messages completed by ``chunk``. A corrupt frame raises, but only once the good messages before
        it (in the same chunk) have been returned: the error then comes with the next ``feed`` or ``close``."""
        if self._error is not None:
            raise self._error
        if chunk:
            self._buffer.add_data(chunk)
            self._received += len(chunk)
        messages: list[EventMessage] = []
        try:
            for message in self._buffer:
                self._consumed += message.prelude.total_length
                messages.append(EventMessage(message.headers, message.payload))
        except (ParserError, ValueError, KeyError, struct.error) as exc:
            self._error = EventStreamError(f"corrupt event-stream frame: {exc}")
            if not messages:
                raise self._error from None
        return messages

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return self._received - self._consumed

    def close(self) -> list[EventMessage]:
        """The stream ended: nothing may be left half-received."""
        if self._error is not None:
            raise self._error
        if self.pending:
            raise EventStreamError(f"the event stream ended inside a frame ({self.pending} bytes left over)")
        return []

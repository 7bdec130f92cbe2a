"""Cutting Kong's byte stream into MessagePack messages, with limits, before anything is decoded.

Kong's MsgPack:1 protocol sends messages back to back with no length prefix, so a message's end is only known by
walking its structure. A streaming decoder that builds objects as bytes arrive would let one peer make the server
allocate for what it merely *declares*: an array header announcing 16 million items is a 128 MB list before a
single item has arrived. `Framer` instead walks the headers only (no object is built), keeps the walk's state across
reads, and hands a message to msgpack once all of its bytes are there. Every limit is checked on the declared sizes,
so a hostile header is refused as soon as it is read.

A message that breaks a limit or is not MessagePack raises `FramingError`; the connection closes (see
`server.RpcConnection`), since after a bad byte the stream has no recoverable boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

# Kong's largest messages carry a request or response body (kong.request.get_raw_body, up to Kong's
# client_body_buffer_size) or a config JSON string: bytes, not structure.
MAX_MESSAGE = 64 * 1024 * 1024
MAX_ITEMS = 65_536            # per array or map (Kong caps headers and query args at 100 by default, 1000 at most)
MAX_OBJECTS = 1_000_000       # per message: bounds what the decoded objects cost (~60 B each at most)
MAX_DEPTH = 1024              # msgpack's own decoder stack: deeper never decodes anyway (Kong nests a few levels)
# A read of at most this many bytes, with nothing pending, is decoded directly (Kong sends one call per connection and
# waits for the answer, so this is almost every message): what it can allocate is bounded by its size, and msgpack's
# own checks refuse what breaks a limit, which sends the bytes down the walk to be refused with a reason.
FAST_READ = 64 * 1024
# Across all connections: the bytes held for messages not yet complete, and how long one may take to complete.
MAX_BACKLOG = 256 * 1024 * 1024
MESSAGE_DEADLINE = 30.0


class FramingError(ValueError):
    """The byte stream is not a well-formed sequence of acceptable MessagePack messages."""


@dataclass(frozen=True)
class Limits:
    max_message: int = MAX_MESSAGE
    max_items: int = MAX_ITEMS
    max_objects: int = MAX_OBJECTS


class Backlog:
    """The bytes every connection holds for its incomplete message, counted together.

    One message is capped at `MAX_MESSAGE`, but a peer that opens many connections and half-sends a message on each
    could still hold any amount; with this shared count the connection whose bytes would take the total past
    ``cap`` is the one refused. ``deadline`` is how long a started message may take to arrive whole (Kong writes
    each message at once, so only a stalled or hostile peer comes near it).
    """

    def __init__(self, cap: int = MAX_BACKLOG, deadline: float = MESSAGE_DEADLINE):
        self.cap = cap
        self.deadline = deadline
        self.total = 0

    def resize(self, held: int, wanted: int) -> bool:
        """Move one connection's share from ``held`` to ``wanted`` bytes; False (share left as it was) when that
        would take the total past the cap."""
        total = self.total - held + wanted
        if wanted > held and total > self.cap:
            return False
        self.total = total
        return True


# For each first byte: (kind, count or header size, length-field size).
#   SCALAR: the object is `size` bytes in all;  ARRAY/MAP: `count` items, or a `lsize`-byte count after the byte;
#   PAYLOAD: str/bin/ext, a `lsize`-byte length (ext: plus a type byte) then that many bytes; FIXEXT: 2 + size bytes.
SCALAR, ARRAY, MAP, PAYLOAD, FIXPAYLOAD, INVALID = range(6)


def _table() -> list[tuple[int, int, int]]:
    table: list[tuple[int, int, int]] = [(INVALID, 0, 0)] * 256
    for b in range(0x00, 0x80):
        table[b] = (SCALAR, 1, 0)
    for b in range(0xE0, 0x100):
        table[b] = (SCALAR, 1, 0)
    for b in range(0x80, 0x90):
        table[b] = (MAP, b & 0x0F, 0)
    for b in range(0x90, 0xA0):
        table[b] = (ARRAY, b & 0x0F, 0)
    for b in range(0xA0, 0xC0):
        table[b] = (FIXPAYLOAD, 1 + (b & 0x1F), 0)            # fixstr: the byte, then the string
    for b in (0xC0, 0xC2, 0xC3):
        table[b] = (SCALAR, 1, 0)                             # nil, false, true
    for b, size in ((0xCA, 5), (0xCB, 9), (0xCC, 2), (0xCD, 3), (0xCE, 5), (0xCF, 9),
                    (0xD0, 2), (0xD1, 3), (0xD2, 5), (0xD3, 9)):
        table[b] = (SCALAR, size, 0)                          # floats and ints
    for b, size in ((0xD4, 3), (0xD5, 4), (0xD6, 6), (0xD7, 10), (0xD8, 18)):
        table[b] = (FIXPAYLOAD, size, 0)                      # fixext: byte, type, data
    for b, lsize in ((0xC4, 1), (0xC5, 2), (0xC6, 4), (0xD9, 1), (0xDA, 2), (0xDB, 4)):
        table[b] = (PAYLOAD, 0, lsize)                        # bin8/16/32, str8/16/32
    for b, lsize in ((0xC7, 1), (0xC8, 2), (0xC9, 4)):
        table[b] = (PAYLOAD, 1, lsize)                        # ext8/16/32: one more byte (the type)
    table[0xDC], table[0xDD] = (ARRAY, -1, 2), (ARRAY, -1, 4)
    table[0xDE], table[0xDF] = (MAP, -1, 2), (MAP, -1, 4)
    return table


_TABLE = _table()


class Framer:
    """One connection's reader: ``feed(bytes)`` returns the messages completed so far, decoded."""

    def __init__(self, limits: Limits = Limits()):
        self.limits = limits
        # every object is at least one byte: a read this small breaks neither the size nor the object limit
        self._fast_read = min(FAST_READ, limits.max_message, limits.max_objects)
        self._buffer = bytearray()
        self._start = 0          # where the message being walked begins in the buffer
        self._pos = 0            # the walk's position: the next header to read
        self._stack: list[int] = []  # items still to come in each open array/map
        self._objects = 0
        self._end: int | None = None  # the walked message's end, once its structure is complete

    @property
    def buffered(self) -> int:
        """Bytes held for messages not yet complete."""
        return len(self._buffer) - self._start

    def feed(self, data: bytes) -> list[Any]:
        buffer = self._buffer
        if not buffer and len(data) <= self._fast_read:
            try:
                return [self._decode(data)]
            except Exception:  # incomplete, several messages, or refused: the walk below says which
                pass
        buffer += data
        messages = []
        while True:
            end = self._walk()
            if end is None:
                break
            with memoryview(buffer)[self._start:end] as message:
                try:
                    messages.append(self._decode(message))
                except (ValueError, msgpack.UnpackException) as exc:
                    # the walk accepted it, so this is a value msgpack refuses (e.g. invalid UTF-8 in a str)
                    raise FramingError(f"undecodable message: {exc}") from None
            self._start = self._pos = end
            self._objects, self._end = 0, None
        if self._start:
            del buffer[:self._start]
            self._pos -= self._start
            if self._end is not None:
                self._end -= self._start
            self._start = 0
        return messages

    def _decode(self, message: Any) -> Any:
        limits = self.limits
        return msgpack.unpackb(message, raw=False, strict_map_key=False, max_str_len=limits.max_message,
                               max_bin_len=limits.max_message, max_ext_len=limits.max_message,
                               max_array_len=limits.max_items, max_map_len=limits.max_items)

    def _walk(self) -> int | None:
        """Advance over headers; the message's end once it is complete and all there, else None (more to come)."""
        buffer, limits, stack = self._buffer, self.limits, self._stack
        available = len(buffer)
        pos = self._pos
        if self._end is not None:
            return self._end if self._end <= available else None
        while pos < available:
            kind, size, lsize = _TABLE[buffer[pos]]
            if kind == SCALAR or kind == FIXPAYLOAD:
                next_pos = pos + size
                count = 0
            elif kind == INVALID:
                raise FramingError(f"byte 0x{buffer[pos]:02x} at offset {pos - self._start} is not MessagePack")
            else:
                if pos + 1 + lsize > available:
                    break                                    # the length field is still on its way
                length = int.from_bytes(buffer[pos + 1:pos + 1 + lsize], "big") if lsize else size
                if kind == PAYLOAD:
                    if length > limits.max_message:
                        raise FramingError(f"a string/binary declares {length} bytes, over the "
                                           f"{limits.max_message}-byte message limit")
                    next_pos = pos + 1 + lsize + size + length
                    count = 0
                else:
                    if length > limits.max_items:
                        raise FramingError(f"an {'array' if kind == ARRAY else 'map'} declares {length} items, "
                                           f"over the limit of {limits.max_items}")
                    next_pos = pos + 1 + lsize
                    count = length if kind == ARRAY else 2 * length
            if next_pos - self._start > limits.max_message:
                raise FramingError(f"message larger than {limits.max_message} bytes")
            self._objects += 1
            if self._objects > limits.max_objects:
                raise FramingError(f"message has more than {limits.max_objects} objects")
            pos = next_pos
            if count:
                if len(stack) >= MAX_DEPTH:
                    raise FramingError(f"message nests deeper than {MAX_DEPTH} levels")
                stack.append(count)
                continue
            while stack:                                     # this object completes the containers it ends
                stack[-1] -= 1
                if stack[-1]:
                    break
                stack.pop()
            if not stack:
                self._pos = self._end = pos
                return pos if pos <= available else None
        self._pos = pos
        return None

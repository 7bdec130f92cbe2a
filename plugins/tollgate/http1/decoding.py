"""Content-Encoding: gzip and deflate bodies are inflated as they arrive; any other encoding is refused.

The client never asks for a compressed answer, but a server may send one anyway; the drivers read JSON and event
streams, never compressed bytes, so what cannot be inflated is an error (`UndecodableBody`), never passed on.
"""

from __future__ import annotations

import zlib

from .errors import UndecodableBody

_GZIP = 16 + zlib.MAX_WBITS


class Inflater:
    """Inflates one body, chunk by chunk. ``deflate`` is zlib-wrapped by the standard, but some servers send raw
    deflate data: the first two bytes tell which (a zlib header, or not)."""

    __slots__ = ("_encoding", "_inflate", "_start")

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._inflate = zlib.decompressobj(_GZIP if encoding == "gzip" else zlib.MAX_WBITS)
        self._start: bytes | None = b"" if encoding == "deflate" else None   # deflate's first bytes, until known

    def decode(self, data: bytes) -> bytes:
        if self._start is not None:
            return self._sniff(data)
        try:
            return self._inflate.decompress(data)
        except zlib.error as exc:
            raise UndecodableBody(f"the {self._encoding} body cannot be inflated ({exc})") from None

    def flush(self) -> bytes:
        try:
            return self._inflate.flush()
        except zlib.error as exc:
            raise UndecodableBody(f"the {self._encoding} body cannot be inflated ({exc})") from None

    def _sniff(self, data: bytes) -> bytes:
        assert self._start is not None
        start = self._start + data
        if len(start) < 2:
            self._start = start
            return b""
        self._start = None
        if not (start[0] & 0x0F == 8 and ((start[0] << 8) | start[1]) % 31 == 0):   # no zlib header: raw
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        return self.decode(start)


def inflater(encoding: str | None) -> Inflater | None:
    """The decoder for a ``Content-Encoding`` header (None: the body is as sent); `UndecodableBody` for an
    encoding this client does not decode."""
    if encoding is None:
        return None
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return None
    if name in ("gzip", "x-gzip"):
        return Inflater("gzip")
    if name == "deflate":
        return Inflater("deflate")
    raise UndecodableBody(f"the answer's Content-Encoding {encoding!r} is not one Tollgate decodes (gzip, deflate)")

"""Answers the relay's server sends: `StreamResponse` (head first, then the body as it is written: SSE, a passed-on
provider answer) and `Response` (a whole body, head and body in one write).

Shaped like aiohttp's classes of the same names, and framed as aiohttp frames them, so clients see the same bytes:
``Content-Length`` when the length is known, else chunked; no body and no length for 1xx, 204 and 304 (and no body
for HEAD); ``application/octet-stream`` when a body has no ``Content-Type``; a ``Date``; ``Connection: close``
when the connection ends after this answer.
"""

from __future__ import annotations

import json
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Callable, Mapping

from multidict import CIMultiDict

if TYPE_CHECKING:
    from .incoming import Request

REASONS = {s.value: s.phrase for s in HTTPStatus}
EMPTY_BODY_STATUS = frozenset((204, 304, *range(100, 200)))
_date = ("", 0)


def http_date() -> str:
    """The ``Date`` value, formatted once per second."""
    global _date
    now = int(time.time())
    if _date[1] != now:
        _date = (formatdate(now, usegmt=True), now)
    return _date[0]


class StreamResponse:
    """An answer whose body is written after ``prepare`` (``write``, ``write_eof``)."""

    def __init__(self, *, status: int = 200, reason: str | None = None,
                 headers: Mapping[str, str] | CIMultiDict[str] | None = None):
        self._status = int(status)
        self._reason = _reason(self._status, reason)
        self._headers: CIMultiDict[str] = CIMultiDict(headers) if headers else CIMultiDict()
        self._writer: Any = None      # the connection, once prepared
        self._chunked = False
        self._empty = False           # no body may follow the head (HEAD, 204, 304, 1xx)
        self._eof_sent = False
        self.keep_alive = True

    @property
    def status(self) -> int:
        return self._status

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def headers(self) -> CIMultiDict[str]:
        return self._headers

    @property
    def prepared(self) -> bool:
        return self._writer is not None or self._eof_sent

    @property
    def content_length(self) -> int | None:
        value = self._headers.get("Content-Length")
        return int(value) if value is not None else None

    @content_length.setter
    def content_length(self, value: int | None) -> None:
        if value is None:
            self._headers.pop("Content-Length", None)
        else:
            self._headers["Content-Length"] = str(int(value))

    async def prepare(self, request: Request) -> None:
        """Send the head (once)."""
        if self.prepared:
            return
        connection = request._connection
        if connection is None:
            raise ConnectionResetError("the request has no connection")
        self._empty = self._status in EMPTY_BODY_STATUS or request.method == "HEAD"
        await connection.start(self, self._start(request, connection.keep_alive_for(request)), request)
        self._writer = connection

    def _start(self, request: Request, keep_alive: bool) -> bytes:
        """What leaves first: the head."""
        self._frame(request)
        return self._head(request, keep_alive)

    def _frame(self, request: Request) -> None:
        headers = self._headers
        if self._status in EMPTY_BODY_STATUS:
            headers.pop("Content-Length", None)
            headers.pop("Transfer-Encoding", None)
            return
        if "Content-Length" not in headers:
            if request.version >= (1, 1):
                if not self._empty:
                    self._chunked = True
                    headers["Transfer-Encoding"] = "chunked"
            elif not self._empty:
                self.keep_alive = False
        if self._empty:
            headers.pop("Transfer-Encoding", None)
        elif headers.get("Content-Length") != "0":
            headers.setdefault("Content-Type", "application/octet-stream")

    def _head(self, request: Request, keep_alive: bool) -> bytes:
        headers = self._headers
        if "Date" not in headers:
            headers["Date"] = http_date()
        keep_alive = keep_alive and self.keep_alive
        self.keep_alive = keep_alive
        if "Connection" not in headers:
            if keep_alive:
                if request.version == (1, 0):
                    headers["Connection"] = "keep-alive"
            elif request.version == (1, 1):
                headers["Connection"] = "close"
        major, minor = request.version
        fields = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        if fields.count("\n") != len(headers) or fields.count("\r") != len(headers):
            raise ValueError("a header name or value holds a line break")   # no header injection
        return f"HTTP/{major}.{minor} {self._status} {self._reason}\r\n{fields}\r\n".encode("utf-8", "surrogateescape")

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        writer = self._writer
        if writer is None:
            if self._eof_sent:
                raise RuntimeError("Cannot call write() after write_eof()")
            raise RuntimeError("Cannot call write() before prepare()")
        if not data or self._empty:
            return
        if self._chunked:
            await writer.send(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            await writer.send(data)

    async def write_eof(self, data: bytes = b"") -> None:
        if self._eof_sent:
            return
        writer = self._writer
        if writer is None:
            raise RuntimeError("Response has not been started")
        if data and not self._empty:
            await self.write(data)
        self._writer = None
        self._eof_sent = True
        if self._chunked:
            await writer.send(b"0\r\n\r\n")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._status} {self._reason}>"


class Response(StreamResponse):
    """A whole answer: its head and body leave in one write."""

    def __init__(self, *, body: bytes | bytearray | str | None = None, status: int = 200, reason: str | None = None,
                 text: str | None = None, headers: Mapping[str, str] | CIMultiDict[str] | None = None,
                 content_type: str | None = None, charset: str | None = None):
        super().__init__(status=status, reason=reason, headers=headers)
        if body is not None and text is not None:
            raise ValueError("body and text are not allowed together")
        if text is not None:
            body = text.encode(charset or "utf-8")
            if content_type is None and "Content-Type" not in self._headers:
                content_type = "text/plain"
            if content_type is not None:
                charset = charset or "utf-8"
        elif isinstance(body, str):
            body = body.encode(charset or "utf-8")
        if content_type is not None:
            if "Content-Type" in self._headers:
                raise ValueError("passing both Content-Type header and content_type or charset params is forbidden")
            self._headers["Content-Type"] = content_type + (f"; charset={charset}" if charset else "")
        self.body: bytes | bytearray | None = body

    def _start(self, request: Request, keep_alive: bool) -> bytes:
        """The head with the whole body (a Response is whole: nothing is written after)."""
        body = self.body or b""
        if "Content-Length" not in self._headers and self._status not in EMPTY_BODY_STATUS:
            if body or request.method != "HEAD":
                self._headers["Content-Length"] = str(len(body))
        head = super()._start(request, keep_alive)
        return head if self._empty or not body else head + bytes(body)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        raise RuntimeError("a Response is sent whole (use StreamResponse to write a body in parts)")

    async def write_eof(self, data: bytes = b"") -> None:
        self._writer = None
        self._eof_sent = True


def json_response(data: Any = None, *, status: int = 200, reason: str | None = None,
                  headers: Mapping[str, str] | None = None, content_type: str = "application/json",
                  dumps: Callable[[Any], str] = json.dumps) -> Response:
    """``data`` as JSON text (``application/json; charset=utf-8``, as aiohttp's ``json_response``)."""
    return Response(text=dumps(data), status=status, reason=reason, headers=headers, content_type=content_type)


def _reason(status: int, reason: str | None) -> str:
    if reason is None:
        return REASONS.get(status, "")
    if "\r" in reason or "\n" in reason:
        raise ValueError("Reason cannot contain \\r or \\n")
    return reason

"""The bytes of a request's head: request line, Host, the caller's headers, Content-Length.

Nothing is added that the caller did not ask for (no User-Agent, no Accept-Encoding: answers then arrive as the
provider sends them by default, uncompressed). The framing headers are the client's own: a caller's
Content-Length or Transfer-Encoding is ignored, since the body is always sent whole with its length.
"""

from __future__ import annotations

import re
from typing import Mapping

from .url import Target

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FRAMING = frozenset({"host", "content-length", "transfer-encoding"})
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})     # methods whose empty body still gets a length
_checked: set[str] = set()                           # method and header names already seen to be tokens
_CHECKED_MAX = 4096


class InvalidRequest(ValueError):
    """A method, header name or header value that cannot be sent as it is (it would change the request's
    framing: a line break in a value, a separator in a name)."""


def _check_token(name: str, what: str) -> None:
    if name in _checked:
        return
    if not _TOKEN.fullmatch(name):
        raise InvalidRequest(f"invalid {what} {name!r}")
    if len(_checked) < _CHECKED_MAX:
        _checked.add(name)


def head(method: str, target: Target, headers: Mapping[str, str] | None, length: int | None) -> bytes:
    """The request head; ``length`` is the body's (None: no body)."""
    _check_token(method, "method")
    host = target.authority
    lines = [f"{method} {target.path} HTTP/1.1\r\n"]
    if headers:
        for name, value in headers.items():
            _check_token(name, "header name")
            lower = name.lower()
            if lower in _FRAMING:
                if lower == "host":
                    host = value
                continue
            lines.append(f"{name}: {value}\r\n")
    lines.append(f"Host: {host}\r\n")
    if length is not None:
        lines.append(f"Content-Length: {length}\r\n")
    elif method in _WITH_BODY:
        lines.append("Content-Length: 0\r\n")
    lines.append("\r\n")
    text = "".join(lines)
    # One line break per line, and no lone CR: a value carrying CR or LF would start a header (or a request) of
    # its own. Counted once over the whole head, rather than value by value.
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        raise InvalidRequest("a header value contains a line break")
    return text.encode("utf-8")

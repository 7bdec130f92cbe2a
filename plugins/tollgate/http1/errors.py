"""What can go wrong on a call, as named exceptions.

The proxy classifies them for failover (``proxy/attempt.py``: ``failure_of``) and MCP turns them into JSON-RPC
errors, so each says where the call failed: before the server saw it, before its answer began, inside the answer's
body, or because the answer is not HTTP the client can read. Timeouts are also ``TimeoutError``, as asyncio's are.
"""

from __future__ import annotations


class HTTPError(Exception):
    """A call failed for a reason the network or the server gave (never a mistake of the caller)."""


class InvalidURL(HTTPError, ValueError):
    """The URL is not an absolute ``http://`` or ``https://`` URL the client can call."""


class ClientClosed(HTTPError):
    """The client was closed (the process is shutting down): no new call is made on it."""


class ConnectError(HTTPError):
    """No connection could be made (refused, unresolvable, TLS handshake failed): the server never saw the call."""


class ConnectTimeout(ConnectError, TimeoutError):
    """The connection was not made within the connect timeout."""


class ReadTimeout(HTTPError, TimeoutError):
    """Nothing arrived within the read timeout, or the call's total time ran out, while waiting for the answer."""


class Disconnected(HTTPError):
    """The server closed the connection before the answer's status line and headers were complete."""


class InvalidResponse(HTTPError):
    """The answer's head is not HTTP/1.x as the client reads it (malformed, an upgrade, or over its limits)."""


class UndecodableBody(InvalidResponse):
    """The body's ``Content-Encoding`` is not one the client decodes (gzip, deflate), or its data is corrupt."""


class BrokenBody(HTTPError):
    """The answer's body broke off before its end, or its framing (chunk sizes) is corrupt."""

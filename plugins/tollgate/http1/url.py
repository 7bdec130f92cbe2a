"""Where a URL points: the origin a connection is pooled under, and the request target sent on it.

Parsed once per distinct URL (the provider and MCP URLs of a route repeat on every call).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, urlsplit

from .errors import InvalidURL

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters left as they are in the request target: RFC 3986's reserved and unreserved ones, and '%' so that what
# is already escaped stays escaped. Anything else (spaces, controls, non-ASCII) is percent-encoded.
_SAFE = "/:@!$&'()*+,;=-._~%?[]"


@dataclass(frozen=True, slots=True)
class Target:
    origin: tuple[str, str, int]   # (scheme, host, port): connections are pooled per origin
    host: str                      # to connect to (an IPv6 address without brackets)
    port: int
    tls: bool
    authority: str                 # the Host header
    path: str                      # path and query, as sent in the request line


@lru_cache(maxsize=4096)
def parse(url: str) -> Target:
    """``url`` as a `Target`; `InvalidURL` when it is not an absolute http(s) URL without credentials."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"invalid URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidURL(f"only http:// and https:// URLs can be called, not {url!r}")
    host = parts.hostname
    if not host:
        raise InvalidURL(f"the URL {url!r} names no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidURL("credentials in a URL are not sent: give them in a header")
    default = _DEFAULT_PORTS[scheme]
    port = port or default
    shown = f"[{host}]" if ":" in host else host
    authority = shown if port == default else f"{shown}:{port}"
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target((scheme, host, port), host, port, scheme == "https", authority, quote(path, safe=_SAFE))

"""The two generations of MCP over Streamable HTTP, as the gateway meets them on the client side.

- 2025-03-26 / 2025-06-18 / 2025-11-25: ``initialize`` opens a session named by ``Mcp-Session-Id``; later requests
  carry it and the ``MCP-Protocol-Version`` header.
- 2026-07-28: stateless. Each request carries its version and client capabilities in ``params._meta`` and mirrors
  its method (and tool, prompt or resource) in the ``Mcp-Method`` / ``Mcp-Name`` headers, which must agree with
  the body. The body is what the gateway acts on; the headers are only checked.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass
from typing import Any, Mapping

from multidict import MultiMapping

from .jsonrpc import HEADER_MISMATCH, INVALID_PARAMS, INVALID_REQUEST, UNSUPPORTED_PROTOCOL_VERSION, JsonRpcError, Message

MODERN_VERSIONS = ("2026-07-28",)
SESSION_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
LATEST_SESSION_VERSION = SESSION_VERSIONS[0]
BATCH_VERSIONS = frozenset({"2025-03-26"})  # JSON-RPC batches were removed in 2025-06-18

META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"

VERSION_HEADER = "MCP-Protocol-Version"
METHOD_HEADER = "Mcp-Method"
NAME_HEADER = "Mcp-Name"
SESSION_HEADER = "Mcp-Session-Id"
PARAM_HEADER_PREFIX = "mcp-param-"   # lower-cased
_ROUTING_HEADERS = (VERSION_HEADER, METHOD_HEADER, NAME_HEADER)

# Methods that name one tool, prompt or resource, and the parameter that names it.
NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

_B64 = re.compile(r"^=\?base64\?(.*)\?=$")


@dataclass(frozen=True, slots=True)
class Generation:
    """How one client request speaks: ``version`` and whether it belongs to a session."""

    version: str
    modern: bool


_MODERN = {version: Generation(version, True) for version in MODERN_VERSIONS}    # made once, not per request


def decode_header_value(value: str | None) -> str | None:
    """A routing header's value; non-ASCII names travel as ``=?base64?...?=``."""
    if value is None or not value.startswith("=?"):
        return value
    match = _B64.match(value)
    if not match:
        return value
    try:
        return base64.b64decode(match.group(1), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def generation_of(message: Message, headers: Mapping[str, str]) -> Generation | None:
    """The generation a request speaks, or None when it is a session-generation request (the session decides).

    A request is modern when its ``_meta`` or its version header names a modern version; ``initialize`` always
    opens a session."""
    if message.method == "initialize":
        return None
    meta = message.params.get("_meta")
    version = meta.get(META_VERSION) if type(meta) is dict else None
    if version is None:
        version = headers.get(VERSION_HEADER)
        if version not in MODERN_VERSIONS:
            return None
    known = _MODERN.get(version) if type(version) is str else None
    return known or Generation(str(version), True)


def check_modern(message: Message, headers: MultiMapping[str]) -> str:
    """Validate a 2026-07-28 request's envelope and routing headers (a case-insensitive multidict); returns its
    version.

    Order follows the spec's ladder: envelope shape, then header agreement (so a client that contradicts itself
    is told so), then the version."""
    meta = message.params.get("_meta")
    if not isinstance(meta, dict) or META_VERSION not in meta or META_CAPABILITIES not in meta:
        raise JsonRpcError(INVALID_PARAMS, f"params._meta must carry {META_VERSION!r} and {META_CAPABILITIES!r}")
    for key in _ROUTING_HEADERS:
        if len(headers.getall(key, ())) > 1:
            raise JsonRpcError(HEADER_MISMATCH, f"{key} header appears more than once")
    version = meta[META_VERSION]
    if headers.get(VERSION_HEADER) != version:
        raise JsonRpcError(HEADER_MISMATCH, f"{VERSION_HEADER} header does not match params._meta's protocol version")
    if headers.get(METHOD_HEADER) != message.method:
        raise JsonRpcError(HEADER_MISMATCH, f"{METHOD_HEADER} header does not match the body's method")
    key = NAME_PARAM.get(message.method)
    if key is not None:
        named = message.params.get(key)
        if not isinstance(named, str):
            raise JsonRpcError(INVALID_PARAMS, f"{message.method} needs params.{key} (a string)")
        if decode_header_value(headers.get(NAME_HEADER)) != named:
            raise JsonRpcError(HEADER_MISMATCH, f"{NAME_HEADER} header does not match the body's {key!r}")
    if version not in MODERN_VERSIONS:
        raise JsonRpcError(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
                           {"supported": list(MODERN_VERSIONS), "requested": version})
    return version


def check_session_header(headers: Mapping[str, str], negotiated: str) -> None:
    """A session request's version header, when sent, must name the negotiated version (or one we speak)."""
    header = headers.get(VERSION_HEADER)
    if header is not None and header != negotiated and header not in SESSION_VERSIONS:
        raise JsonRpcError(INVALID_REQUEST, f"Unsupported {VERSION_HEADER}: {header}", status=400)


def param_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A call's ``Mcp-Param-*`` headers (they mirror arguments the tool's schema marks). The first letter is
    checked first: most headers of a request fail there, and this runs on every call."""
    return {k: v for k, v in headers.items() if k[:1] in "Mm" and k[:10].lower() == PARAM_HEADER_PREFIX}


def negotiate(requested: Any) -> str:
    """The session version answering an ``initialize`` that asks for ``requested``."""
    return requested if requested in SESSION_VERSIONS else LATEST_SESSION_VERSION


@functools.cache
def modern_meta(version: str) -> dict[str, Any]:
    """The ``_meta`` envelope the gateway sends upstream when it speaks 2026-07-28 itself (one per version: it is
    only ever copied into requests, never changed)."""
    from ... import __version__
    return {META_VERSION: version, META_CAPABILITIES: {},
            META_CLIENT_INFO: {"name": "tollgate-mcp", "version": __version__}}


def strip_meta(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` without the 2026-07-28 envelope keys (what a session-generation upstream should see)."""
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        return params
    rest = {k: v for k, v in meta.items() if not k.startswith("io.modelcontextprotocol/")}
    out = {k: v for k, v in params.items() if k != "_meta"}
    if rest:
        out["_meta"] = rest
    return out

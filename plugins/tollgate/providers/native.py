"""``route_type: preserve``: the provider's own wire format, passed through untouched.

The pieces the drivers' optional preserve methods share (the methods themselves are described in ``base.py``):

- ``native_url``: where the client's native request goes: the client's path (as Kong forwards it, i.e. relative to
  the route when the route strips its path) and query, on the provider's host, unless the config says otherwise.
  ``options.upstream_url`` replaces the host, and by its path: none (or ``/``), or one the client's path lies under
  (``http://vllm:8000/v1`` for ``/v1/chat/completions``): the client's path is kept; a path ending in ``/``: a
  prefix put before the client's path (``https://gateway.example/anthropic/`` + ``/v1/messages``); any other path:
  the one endpoint every request goes to. ``options.upstream_path`` replaces the client's path.
- ``forwarded_headers`` / ``forwarded_query``: what of the client's request may go to the provider: the content type,
  ``Accept`` and the providers' own API headers (``anthropic-*``, ``openai-*``, ``x-goog-*``,
  ``x-amzn-bedrock-*``, Cohere's ``x-client-name``), never a credential (the configured ``auth`` is what reaches the
  provider; a client's own key only through ``auth.allow_override``, which the proxy has already applied) nor a
  header that picks the account it bills (``OpenAI-Organization``, ``OpenAI-Project``, ``x-goog-user-project``).
- ``apply_auth``: Kong's generic auth fields on a native request (a header, a query parameter, or a body parameter:
  the only case where the body is rewritten).
- ``StreamUsage``: usage read from a native stream as it passes, by the driver's own stream decoder: the bytes are
  observed, never changed or held back; a frame the decoder refuses ends the observation, not the stream.
- ``json_of`` / ``is_stream``: small readers for the complete-answer and stream cases.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import yarl

from .base import ProviderError, Usage

# The client's headers that may reach the provider (lower case), and header families of the providers' own APIs.
FORWARDED = frozenset({"content-type", "accept", "x-client-name"})
FORWARDED_PREFIXES = ("anthropic-", "openai-", "x-goog-", "x-amzn-bedrock-")
# Never forwarded whatever the lists above say: credentials, the client's own AWS signature, and the headers that
# choose which account the configured credential bills (that is the config's to say).
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key",
                                "cookie", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256",
                                "x-goog-user-project", "openai-organization", "openai-project"})
# Query parameters that carry credentials (Gemini's ``key``, Kong key-auth's ``apikey``, OAuth, presigned AWS).
CREDENTIAL_PARAMS = frozenset({"key", "apikey", "api_key", "api-key", "access_token", "x-goog-api-key"})

STREAM_TYPES = ("text/event-stream", "application/vnd.amazon.eventstream", "application/x-ndjson",
                "application/jsonl")


def forwarded_headers(headers: Any) -> dict[str, str]:
    """The client's headers that go to the provider with a preserve request."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in CREDENTIAL_HEADERS:
            continue
        if lower in FORWARDED or lower.startswith(FORWARDED_PREFIXES):
            out[name] = value
    return out


def forwarded_query(query: str, auth: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """The client's query parameters less credentials (the configured ``auth.param_name`` among them)."""
    own = str((auth or {}).get("param_name") or "").lower()
    return [(k, v) for k, v in parse_qsl(query, keep_blank_values=True)
            if k.lower() not in CREDENTIAL_PARAMS and k.lower() != own and not k.lower().startswith("x-amz-")]


def native_url(origin: str | None, path: str, query: str, options: Mapping[str, Any],
               auth: Mapping[str, Any] | None = None) -> str:
    """The URL a preserve request goes to (see the module docstring); ``origin`` is the provider's
    ``scheme://host`` (None: the provider has none, ``upstream_url`` is required)."""
    upstream = options.get("upstream_url")
    fixed = options.get("upstream_path")
    own_query: list[tuple[str, str]] = []
    if upstream:
        parts = urlsplit(upstream)
        origin = f"{parts.scheme}://{parts.netloc}"
        own_query = parse_qsl(parts.query, keep_blank_values=True)
        base = parts.path.rstrip("/")
        if base and path != base and not path.startswith(base + "/"):
            if parts.path.endswith("/"):
                path = base + ((fixed if fixed.startswith("/") else "/" + fixed) if fixed else path)
                fixed = None                        # a prefix before the client's (or the configured) path
            else:
                path, fixed = parts.path, None      # one endpoint for every request
    if not origin:
        raise ProviderError(500, "preserve needs model.options.upstream_url for this provider", "server_error",
                            "misconfigured")
    if fixed:
        path = fixed if fixed.startswith("/") else "/" + fixed
    if not path.startswith("/"):
        path = "/" + path
    names = {k for k, _ in own_query}
    params = own_query + [(k, v) for k, v in forwarded_query(query, auth) if k not in names]
    url = urlunsplit(urlsplit(origin.rstrip("/"))._replace(path=path, query=urlencode(params)))
    return as_sent(url)


def as_sent(url: str) -> str:
    """``url`` exactly as the HTTP client will put it on the wire (yarl's normal form), so that what is signed
    (SigV4) is what is sent."""
    return str(yarl.URL(url))


def apply_auth(url: str, headers: dict[str, str], body: bytes, auth: Mapping[str, Any]) -> tuple[str, bytes]:
    """Kong's generic auth fields on a native request; returns the URL and the body (rewritten only for a body
    parameter, which needs a JSON object body)."""
    if auth.get("header_name") and auth.get("header_value"):
        for name in [n for n in headers if n.lower() == str(auth["header_name"]).lower()]:
            del headers[name]
        headers[auth["header_name"]] = auth["header_value"]
    name, value = auth.get("param_name"), auth.get("param_value")
    if name and value:
        if auth.get("param_location") == "body":
            data = json_of(body)
            if not isinstance(data, dict):
                raise ProviderError(400, f"auth.param_location body needs a JSON object body to carry {name}",
                                    "invalid_request_error", "invalid_request")
            data[name] = value
            body = orjson.dumps(data)
        else:
            parts = urlsplit(url)
            query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
            url = as_sent(urlunsplit(parts._replace(query=urlencode(query + [(name, value)]))))
    return url, body


def json_of(body: bytes) -> Any:
    """A JSON answer body, or None when it is not JSON."""
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def is_stream(content_type: str | None) -> bool:
    """Whether an answer with this content type is a stream (read frame by frame) rather than one JSON body."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return kind in STREAM_TYPES


class StreamUsage:
    """Usage of a native stream, read by the driver's own decoder from the bytes as they pass.

    ``feed`` returns the decoder's chunks (OpenAI-shaped, for an estimate of the generated text when the provider
    reports no usage); ``from_chunk`` reads usage the decoder itself does not keep (e.g. OpenAI's Responses API
    events). Whatever the decoder raises (an error event, a frame it does not understand) ends the observation and
    keeps what was read before: the client's stream is never affected.
    """

    def __init__(self, decoder: Any, from_chunk: Callable[[dict[str, Any]], Usage | None] | None = None):
        self._decoder = decoder
        self._from_chunk = from_chunk
        self._found: Usage | None = None
        self.stopped = False

    @property
    def usage(self) -> Usage | None:
        return getattr(self._decoder, "usage", None) or self._found

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self._read(self._decoder.feed, data)

    def close(self) -> list[dict[str, Any]]:
        return self._read(self._decoder.close)

    def _read(self, step: Callable[..., list[dict[str, Any]]], *args: Any) -> list[dict[str, Any]]:
        if self.stopped:
            return []
        try:
            chunks = step(*args)
        except Exception:  # noqa: BLE001 - observation only: nothing a provider sends may break the relay
            self.stopped = True
            return []
        if self._from_chunk is not None:
            for chunk in chunks:
                if isinstance(chunk, dict):
                    found = self._from_chunk(chunk)
                    if found is not None:
                        self._found = found
        return chunks


__all__ = ["StreamUsage", "apply_auth", "as_sent", "forwarded_headers", "forwarded_query", "is_stream", "json_of",
           "native_url"]

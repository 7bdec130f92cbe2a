"""OAuth 2.1 resource-server mode (like Kong's ai-mcp-oauth2): the MCP endpoint accepts JWT access tokens.

- RFC 9728 protected-resource metadata at ``/.well-known/oauth-protected-resource`` (add that path to the route);
- a request without a valid token gets 401 with ``WWW-Authenticate: Bearer resource_metadata="..."``, so clients
  find the authorization server;
- a token is checked against the issuer's JWKS: signature (asymmetric algorithms only), issuer, audience (the
  resource, RFC 8707), expiry and the required scopes (else 403 ``insufficient_scope``);
- one claim names the caller, who then stands for the consumer in ACLs, limits, sessions and audit.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import orjson

from ... import log
from ...relay import upstream as http
from .jsonrpc import INVALID_REQUEST, FORBIDDEN, JsonRpcError

logger = log.get("mcp.oauth")

METADATA_PATH = "/.well-known/oauth-protected-resource"
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
JWKS_TTL = 300.0
LEEWAY = 30


class Unauthorized(JsonRpcError):
    """No usable token: 401 and the challenge that points at the metadata."""


@dataclass
class ResourceServer:
    resource: str                         # this endpoint's identifier: the audience tokens must carry
    issuer: str
    authorization_servers: list[str]
    jwks_url: str | None
    jwks: dict[str, Any] | None
    scopes: list[str]
    claim: str
    metadata_url: str
    _keys: dict[str, Any] = field(default_factory=dict, repr=False)
    _fetched: float = field(default=0.0, repr=False)
    _lock: asyncio.Lock | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> "ResourceServer | None":
        if not config or not config.get("resource"):
            return None
        if not config.get("issuer") or not (config.get("jwks_url") or config.get("jwks")):
            raise ValueError("oauth needs resource, issuer and jwks_url (or jwks)")
        resource = config["resource"]
        metadata = config.get("metadata_url") or _metadata_url(resource)
        return cls(resource, config["issuer"], list(config.get("authorization_servers") or [config["issuer"]]),
                   config.get("jwks_url"), config.get("jwks"), list(config.get("scopes_required") or []),
                   config.get("consumer_claim") or "sub", metadata)

    def metadata(self) -> dict[str, Any]:
        """RFC 9728 protected-resource metadata."""
        out: dict[str, Any] = {"resource": self.resource, "authorization_servers": self.authorization_servers,
                               "bearer_methods_supported": ["header"]}
        if self.scopes:
            out["scopes_supported"] = self.scopes
        return out

    async def identify(self, authorization: str | None) -> dict[str, Any]:
        """The caller a valid bearer token names, as an identity; raises `Unauthorized` (401) or 403."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self._challenge("missing bearer token", error=None)
        try:
            header = jwt.get_unverified_header(token.strip())
            key = await self._key(header.get("kid"))
            claims = jwt.decode(token.strip(), key, algorithms=ALGORITHMS, audience=self.resource,
                                issuer=self.issuer, leeway=LEEWAY,
                                options={"require": ["exp", "iss", "aud"]})
        except (jwt.PyJWTError, ValueError) as exc:
            raise self._challenge(f"invalid token: {_reason(exc)}", error="invalid_token") from None
        granted = _scopes(claims)
        missing = [s for s in self.scopes if s not in granted]
        if missing:
            raise JsonRpcError(FORBIDDEN, f"insufficient_scope: the token lacks {' '.join(missing)}", status=403,
                               headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", '
                                                            f'scope="{" ".join(self.scopes)}", '
                                                            f'resource_metadata="{self.metadata_url}"'})
        subject = claims.get(self.claim)
        if not isinstance(subject, (str, int)) or subject == "":
            raise self._challenge(f"invalid token: no {self.claim!r} claim", error="invalid_token")
        return {"id": f"oauth:{subject}", "username": str(subject), "custom_id": str(subject)}

    def _challenge(self, message: str, error: str | None) -> Unauthorized:
        parts = [f'resource_metadata="{self.metadata_url}"']
        if error:
            parts.insert(0, f'error="{error}"')
        if self.scopes:
            parts.append(f'scope="{" ".join(self.scopes)}"')
        return Unauthorized(INVALID_REQUEST, message, status=401,
                            headers={"WWW-Authenticate": "Bearer " + ", ".join(parts)})

    async def _key(self, kid: str | None) -> Any:
        """The signing key ``kid`` from the JWKS (fetched at most every `JWKS_TTL` s, or at once for a new kid)."""
        if self.jwks is not None and not self._keys:
            self._keys = _parse_jwks(self.jwks)
        stale = time.monotonic() - self._fetched > JWKS_TTL
        if self.jwks_url and (stale or kid not in self._keys):
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if time.monotonic() - self._fetched > 1.0:       # a burst of unknown kids fetches once a second
                    self._keys = await self._fetch()
                    self._fetched = time.monotonic()
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        key = self._keys.get(kid or "")
        if key is None:
            raise ValueError("unknown signing key")
        return key

    async def _fetch(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(5):
                async with http.session().get(self.jwks_url) as answer:
                    if answer.status != 200:
                        raise ValueError(f"JWKS answered HTTP {answer.status}")
                    return _parse_jwks(orjson.loads(await answer.read()))
        except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            log.event(logger, "JWKS fetch failed", 30, url=self.jwks_url, error=type(exc).__name__)
            if self._keys:
                return self._keys           # keep validating with the keys we had
            raise ValueError("the issuer's keys are unavailable") from None


def _parse_jwks(document: Any) -> dict[str, Any]:
    keys = {}
    for entry in (document or {}).get("keys") or []:
        if entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
            continue                          # never a shared secret: anyone holding it could mint tokens
        try:
            keys[str(entry.get("kid", ""))] = jwt.PyJWK(entry).key
        except jwt.PyJWTError:
            continue
    return keys


def _scopes(claims: dict[str, Any]) -> set[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return set(scope.split())
    scp = claims.get("scp")
    return {str(s) for s in scp} if isinstance(scp, list) else set()


def _metadata_url(resource: str) -> str:
    """Where RFC 9728 puts the metadata of ``resource``: the well-known path, then the resource's own path."""
    from yarl import URL

    url = URL(resource)
    path = url.path.rstrip("/")
    return str(url.with_path(METADATA_PATH + (path if path and path != "/" else "")).with_query(None))


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__

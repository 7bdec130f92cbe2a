"""OAuth resource-server mode end to end: RFC 9728 metadata, the 401 challenge, JWT checks against the issuer's
JWKS (signature, issuer, audience, expiry, scopes), and the token's subject as the caller for ACLs."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from .env import KEYS, OAUTH_RESOURCE, Env, sdk_client
from .rpc import modern

pytestmark = pytest.mark.asyncio(loop_scope="module")

METADATA = "https://gateway.test/.well-known/oauth-protected-resource/mcp/oauth"


async def bearer(http, env: Env, token: str | None, method: str = "tools/list", params: dict | None = None):
    body, headers = modern(method, params)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers.update({"Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    async with http.post(env.url("oauth"), json=body, headers=headers) as answer:
        return answer.status, answer.headers, await answer.json()


async def test_protected_resource_metadata_is_served_without_a_token(env: Env, http):
    async with http.get(f"{env.nodes[0].kong.url}/.well-known/oauth-protected-resource/mcp/oauth") as answer:
        assert answer.status == 200
        assert await answer.json() == {"resource": OAUTH_RESOURCE, "authorization_servers": [env.idp.url],
                                       "bearer_methods_supported": ["header"], "scopes_supported": ["mcp:tools"]}


async def test_no_token_is_a_401_challenge_naming_the_metadata(env: Env, http):
    status, headers, body = await bearer(http, env, None)
    assert status == 401 and body["error"]["code"] == -32600 and body["id"] is None
    assert headers["WWW-Authenticate"] == f'Bearer resource_metadata="{METADATA}", scope="mcp:tools"'


async def test_a_valid_token_lists_and_calls_and_its_subject_meets_the_acl(env: Env, http):
    before = len(env.weather.seen)
    async with sdk_client(env.url("oauth"), headers={"Authorization": f"Bearer {env.idp.token()}"}) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("forecast", {"city": "Lima"})
    assert "forecast" in tools and result.content[0].text == "sunny in Lima"
    assert all("authorization" not in s.headers for s in env.weather.seen[before:])   # the token stays here
    status, _, body = await bearer(http, env, env.idp.token(sub="mallory"))
    assert status == 200 and body["result"]["tools"] == []                           # not on the allow list


@pytest.mark.parametrize("case", ["wrong audience", "wrong issuer", "expired", "unknown key", "forged", "alg none",
                                  "no exp", "garbage"])
async def test_bad_tokens_are_401_invalid_token(env: Env, http, case):
    idp = env.idp
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = {
        "wrong audience": lambda: idp.token(aud="https://elsewhere.test/mcp"),
        "wrong issuer": lambda: idp.token(iss="https://evil.test"),
        "expired": lambda: idp.token(exp=int(time.time()) - 120),
        "unknown key": lambda: idp.token(key=other, kid="key-2"),
        "forged": lambda: idp.token(key=other),                    # the issuer's kid, someone else's key
        "alg none": lambda: jwt.encode({"iss": idp.url, "sub": "alice-sub", "aud": OAUTH_RESOURCE,
                                        "exp": int(time.time()) + 60, "scope": "mcp:tools"}, None, algorithm="none"),
        "no exp": lambda: idp.token(exp=None),
        "garbage": lambda: "not.a.jwt",
    }[case]()
    status, headers, body = await bearer(http, env, token)
    assert status == 401, body
    assert headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert f'resource_metadata="{METADATA}"' in headers["WWW-Authenticate"]


async def test_a_token_without_the_required_scope_is_403_insufficient_scope(env: Env, http):
    status, headers, body = await bearer(http, env, env.idp.token(scope="openid"))
    assert status == 403 and body["error"]["code"] == -32003 and "insufficient_scope" in body["error"]["message"]
    assert headers["WWW-Authenticate"].startswith('Bearer error="insufficient_scope", scope="mcp:tools"')


async def test_access_leaves_the_consumer_to_the_token(env: Env, http):
    """The token names the caller, so tollgate-mcp's access does not ask Kong for a consumer: HandleEvent and the
    attachment, two round trips; a route whose caller is Kong's consumer (key-auth) has three."""
    kong = env.nodes[0].kong
    for _ in range(2):      # an instance's first request also asks Kong for its route's name
        status, _, _ = await bearer(http, env, env.idp.token())
        assert status == 200
    await kong.settle()
    stats = kong.stats.last
    assert stats.by_phase[("tollgate-mcp", "access")] == 2
    assert ("tollgate-mcp", "kong.client.get_consumer") not in stats.pdk_calls
    body, headers = modern("tools/list")
    for _ in range(2):
        async with http.post(env.url("one"), json=body, headers={**headers, "apikey": KEYS["alice"],
                                                                 "Accept": "application/json, text/event-stream"}
                             ) as answer:
            assert answer.status == 200
    await kong.settle()
    assert kong.stats.last.by_phase[("tollgate-mcp", "access")] == 3

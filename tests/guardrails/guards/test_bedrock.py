"""Bedrock ApplyGuardrail: the documented request, SigV4 signing (checked by the mock's own implementation of the
documented algorithm, and against a fixed-clock vector), blocks named by policy and item (never the match), and
masking when the guardrail anonymises."""

import datetime
from urllib.parse import urlsplit

import pytest

from tollgate.plugins.guardrails.guards.base import GuardUnavailable
from tollgate.plugins.guardrails.guards.bedrock import BedrockGuard

from ..mocks import CARD, MASKED_CARD, SMASH
from ..mocks.bedrock import ACCESS_KEY, GUARDRAIL_ID, REGION, SECRET_KEY, verify
from .conftest import make

pytestmark = pytest.mark.asyncio(loop_scope="module")


def guard(mocks, **settings):
    return make("bedrock", {"guardrails_id": GUARDRAIL_ID, "guardrails_version": "1", "aws_region": REGION,
                            "aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY,
                            "endpoint_url": mocks.url, **settings})


async def test_the_request_is_the_documented_one_and_signed(mocks):
    assert not (await guard(mocks).check("hello", "input")).blocked
    sent = mocks.of("bedrock")[-1]
    assert sent.path == f"/guardrail/{GUARDRAIL_ID}/version/1/apply"
    assert sent.json == {"source": "INPUT", "content": [{"text": {"text": "hello"}}]}
    assert sent.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert "/us-east-1/bedrock/aws4_request" in sent.headers["Authorization"]
    await guard(mocks).check("an answer", "output")
    assert mocks.of("bedrock")[-1].json["source"] == "OUTPUT"


async def test_a_fixed_clock_signs_reproducibly_and_the_signature_verifies(mocks):
    class Fixed(BedrockGuard):
        clock = staticmethod(lambda: datetime.datetime(2026, 12, 6, 12, 0, 0, tzinfo=datetime.timezone.utc))

    g = Fixed("b", guard(mocks).config)
    data = b'{"source":"INPUT","content":[{"text":{"text":"hi"}}]}'
    headers = g.signed(data)
    assert headers == Fixed("b", g.config).signed(data) and headers["X-Amz-Date"] == "20261206T120000Z"
    url = urlsplit(g.url)
    assert verify("POST", url.path, "", {**headers, "Host": url.netloc}, data) is None
    assert verify("POST", url.path, "", {**headers, "Host": url.netloc}, data + b" ") == "signature mismatch"


async def test_a_wrong_secret_is_refused_by_the_service_and_unavailable(mocks):
    with pytest.raises(GuardUnavailable, match="HTTP 403"):
        await guard(mocks, aws_secret_access_key="wrong-secret").check("hello", "input")


async def test_blocked_items_name_policy_and_type_never_the_match(mocks):
    verdict = await guard(mocks).check(SMASH, "input")
    assert verdict.blocked and verdict.categories == ("contentPolicy:VIOLENCE",)


async def test_an_anonymised_text_is_the_mask(mocks):
    verdict = await guard(mocks).check(f"pay with {CARD}", "output")
    assert not verdict.blocked and verdict.masked == f"pay with {MASKED_CARD}"


async def test_environment_credentials_and_region(mocks, monkeypatch):
    monkeypatch.setattr(BedrockGuard, "environ", {"AWS_ACCESS_KEY_ID": ACCESS_KEY,
                                                  "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION})
    g = make("bedrock", {"guardrails_id": GUARDRAIL_ID, "guardrails_version": "1", "endpoint_url": mocks.url})
    assert (await g.check(SMASH, "input")).blocked
    monkeypatch.setattr(BedrockGuard, "environ", {"AWS_BEARER_TOKEN_BEDROCK": "bedrock-api-key", "AWS_REGION": REGION})
    g = make("bedrock", {"guardrails_id": GUARDRAIL_ID, "endpoint_url": mocks.url})
    assert g.signed(b"{}")["Authorization"] == "Bearer bedrock-api-key"

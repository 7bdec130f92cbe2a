"""The guard services end to end: the openai SDK -> the Kong double -> ``tollgate serve`` -> the guard service mocks
(tests/guardrails/mocks) and the mock LLM, which echoes the last user message (so an answer shows what the provider
saw, and an output guard judges the prompt's words again).

For each service: a prompt passes; a prompt is blocked (400 content_blocked, the categories shown only with
reveal_failure_reason); a service that hangs past ``timeout`` is a 500 guardrail_failed, or with ``fail_open`` lets
the request on and says so; a whole answer is blocked (400 content_filter); the masking services (the HTTP guard,
Bedrock) mask the prompt before the provider sees it, and the answer.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

import openai
import pytest
import pytest_asyncio

from tests.harness import KongDouble
from tests.harness.procs import TollgateServer
from tollgate.mock import MockLLM

from .mocks import CARD, HANG, MASKED_CARD, SMASH, GuardMocks
from .mocks import azure_content_safety as azure
from .mocks import bedrock, custom, lakera, openai_moderation
from .pii_samples import EMAIL
from .test_acceptance import Env, user

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVICES = ["http", "openai_moderation", "azure_content_safety", "bedrock", "lakera"]
MASKING = ["http", "bedrock"]
CATEGORIES = {"http": "violence", "openai_moderation": "violence", "azure_content_safety": "Violence",
              "bedrock": "contentPolicy:VIOLENCE", "lakera": "moderated_content/violence"}
SECRETS = [custom.KEY, openai_moderation.KEY, azure.KEY, bedrock.SECRET_KEY, lakera.KEY]


def settings(kind: str, url: str) -> dict[str, Any]:
    """Each service's settings, pointed at its mock."""
    return {
        "http": {"request": {"url": f"{url}/custom/check", "body": '{"input": "$(content)", "phase": "$(phase)"}',
                             "auth": {"name": "X-Api-Key", "value": custom.KEY}},
                 "response": {"block": "verdict.action", "block_values": ["BLOCK"], "block_reason": "verdict.reasons",
                              "masked": "redacted"}},
        "openai_moderation": {"url": f"{url}/v1/moderations", "api_key": openai_moderation.KEY},
        "azure_content_safety": {"content_safety_url": f"{url}/contentsafety/text:analyze",
                                 "content_safety_key": azure.KEY,
                                 "categories": [{"name": "Violence", "rejection_level": 4}]},
        "bedrock": {"guardrails_id": bedrock.GUARDRAIL_ID, "guardrails_version": "1", "aws_region": bedrock.REGION,
                    "aws_access_key_id": bedrock.ACCESS_KEY, "aws_secret_access_key": bedrock.SECRET_KEY,
                    "endpoint_url": url},
        "lakera": {"lakera_service_url": f"{url}/v2/guard", "api_key": lakera.KEY},
    }[kind]


def routes(url: str) -> dict[str, dict[str, Any]]:
    out = {}
    for kind in SERVICES:
        guard = {"name": f"{kind}-guard", "type": kind, kind: settings(kind, url), "timeout": 1500}
        out[f"{kind}-in"] = {**guard, "reveal_failure_reason": True}
        out[f"{kind}-open"] = {**guard, "fail_open": True}
        out[f"{kind}-out"] = {**guard, "guarding_mode": "OUTPUT", "reveal_failure_reason": True}
    return out


def configs(url: str) -> dict[str, dict[str, Any]]:
    """Each route's guardrails config: one guard per route, and PII redaction before a guard on both sides."""
    out = {name: {"guards": [guard]} for name, guard in routes(url).items()}
    out["pii-http"] = {"pii": {"enabled": True},
                       "guards": [{"name": "both", "type": "http", "http": settings("http", url),
                                   "guarding_mode": "BOTH"}]}
    return out


def declarative(relay_url: str, mock_url: str, configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One route per guardrails config, each with its own path on the mock LLM."""
    entries = []
    for name, config in configs.items():
        proxy = {"route_type": "llm/v1/chat",
                 "model": {"provider": "openai", "name": "gpt-4o-mini",
                           "options": {"upstream_url": f"{mock_url}/{name}/v1/chat/completions"}},
                 "auth": {"header_name": "Authorization", "header_value": "Bearer sk-guards-e2e-0123456789"}}
        entries.append({"name": name, "paths": [f"/{name}/"], "strip_path": False,
                        "plugins": [{"name": "tollgate-guardrails", "config": config},
                                    {"name": "tollgate-proxy", "config": proxy}]})
    return {"_format_version": "3.0", "services": [{"name": "relay", "url": relay_url, "retries": 0,
                                                     "routes": entries}]}


class GuardEnv(Env):
    guards: GuardMocks


@asynccontextmanager
async def guard_env(configs: Callable[[str], dict[str, dict[str, Any]]]) -> AsyncIterator[GuardEnv]:
    """The mock LLM, the guard service mocks, ``tollgate serve`` and the Kong double, with the routes
    ``configs(guard mocks' URL)`` gives."""
    mock = MockLLM(shutdown_timeout=0.1)
    await mock.start()
    guards = GuardMocks()
    await guards.start()
    proc = TollgateServer(env={"TOLLGATE_LOG_LEVEL": "info"})
    await proc.astart()
    kong = KongDouble(proc.entries("3.9", ["tollgate-guardrails", "tollgate-proxy"]),
                      declarative(proc.relay_url, mock.url, configs(guards.url)))
    await kong.start()
    env = GuardEnv(proc, mock, kong)
    env.guards = guards
    try:
        yield env
    finally:
        await kong.stop()
        proc.cleanup()
        await guards.stop()
        await mock.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env():
    async with guard_env(configs) as env:
        yield env
        logs = "\n".join(env.log_lines())
    for secret in SECRETS:                 # no key of any guard service in any log line
        assert secret not in logs


@pytest.fixture(autouse=True)
def fresh(env: GuardEnv):
    env.mock.reset()
    env.guards.reset()
    yield


@pytest.mark.parametrize("kind", SERVICES)
async def test_a_clean_prompt_passes_and_is_audited(env: GuardEnv, kind: str):
    before = len(env.log_lines())
    answer = await env.client(f"{kind}-in").chat.completions.create(model="gpt-4o-mini", messages=user("hello"))
    assert answer.choices[0].message.content == "hello"
    assert len(env.guards.of(kind.replace("http", "custom"))) == 1
    logged = await env.logged(f'"guards":[{{"name":"{kind}-guard","phase":"input","result":"pass"', since=before)
    assert "hello" not in logged.split('"guardrails"', 1)[1]


@pytest.mark.parametrize("kind", SERVICES)
async def test_a_blocked_prompt_is_a_400_content_blocked_and_the_provider_is_not_called(env: GuardEnv, kind: str):
    before = len(env.log_lines())
    with pytest.raises(openai.BadRequestError) as caught:
        await env.client(f"{kind}-in").chat.completions.create(model="gpt-4o-mini", messages=user(SMASH))
    assert caught.value.code == "content_blocked" and not env.mock.requests
    assert caught.value.body["message"] == f"the prompt was blocked by a content guard: {CATEGORIES[kind]}"
    assert SMASH not in str(caught.value.body)
    logged = await env.logged('"result":"block"', since=before)
    assert f'"blocked_by":["{kind}-guard"]' in logged and SMASH not in logged
    with pytest.raises(openai.BadRequestError) as caught:                  # without it: no categories
        await env.client(f"{kind}-open").chat.completions.create(model="gpt-4o-mini", messages=user(SMASH))
    assert caught.value.body["message"] == "the prompt was blocked by a content guard"


@pytest.mark.parametrize("kind", SERVICES)
async def test_a_service_that_hangs_fails_closed(env: GuardEnv, kind: str):
    with pytest.raises(openai.InternalServerError) as caught:
        await env.client(f"{kind}-in").chat.completions.create(model="gpt-4o-mini", messages=user(f"{HANG} now"))
    assert caught.value.code == "guardrail_failed" and not env.mock.requests
    assert await env.logged('"guard unavailable"', f'"guard":"{kind}-guard"', "did not answer within 1.5 s")


@pytest.mark.parametrize("kind", SERVICES)
async def test_a_service_that_hangs_with_fail_open_lets_the_request_on_and_says_so(env: GuardEnv, kind: str):
    before = len(env.log_lines())
    raw = await env.client(f"{kind}-open").chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=user(f"{HANG} now"))
    assert raw.headers["X-Tollgate-Guardrails"] == "failed-open"
    assert raw.parse().choices[0].message.content == f"{HANG} now"
    assert await env.logged('"result":"unavailable"', '"fail_open":true', since=before)


@pytest.mark.parametrize("kind", SERVICES)
async def test_a_whole_answer_is_blocked_with_content_filter(env: GuardEnv, kind: str):
    with pytest.raises(openai.BadRequestError) as caught:
        await env.client(f"{kind}-out").chat.completions.create(model="gpt-4o-mini", messages=user(SMASH))
    assert caught.value.code == "content_filter" and len(env.mock.requests) == 1     # the input was not checked
    assert caught.value.body["message"] == f"the answer was blocked by a content guard: {CATEGORIES[kind]}"
    assert SMASH not in str(caught.value.body)
    answer = await env.client(f"{kind}-out").chat.completions.create(model="gpt-4o-mini", messages=user("calm"))
    assert answer.choices[0].message.content == "calm"


@pytest.mark.parametrize("kind", SERVICES)
async def test_a_streamed_answer_is_judged_before_any_text_goes_out(env: GuardEnv, kind: str):
    stream = await env.client(f"{kind}-out").chat.completions.create(model="gpt-4o-mini", messages=user(SMASH),
                                                                     stream=True)
    seen = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            seen.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(seen) == "" and "content guard" in caught.value.message


@pytest.mark.parametrize("kind", MASKING)
async def test_masking_on_the_prompt_and_on_the_answer(env: GuardEnv, kind: str):
    answer = await env.client(f"{kind}-in").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": "Be brief."}, *user(f"pay with {CARD}")])
    assert CARD not in env.sent() and env.mock.requests[-1].json["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": f"pay with {MASKED_CARD}"}]
    assert answer.choices[0].message.content == f"pay with {MASKED_CARD}"
    answer = await env.client(f"{kind}-out").chat.completions.create(model="gpt-4o-mini",
                                                                     messages=user(f"card {CARD}"))
    assert CARD in env.sent() and answer.choices[0].message.content == f"card {MASKED_CARD}"


async def test_guard_services_see_the_prompt_and_answer_with_pii_redacted(env: GuardEnv):
    answer = await env.client("pii-http").chat.completions.create(model="gpt-4o-mini",
                                                                  messages=user(f"write to {EMAIL} today"))
    judged = [r.json["input"] for r in env.guards.of("custom")]
    assert judged == ["write to <EMAIL_ADDRESS_1> today"] * 2 and [r.json["phase"] for r in
                                                                   env.guards.of("custom")] == ["input", "output"]
    assert EMAIL not in env.sent() and answer.choices[0].message.content == f"write to {EMAIL} today"

"""The policy in the relay pipeline (stand-in terminal): stage order, what is hidden from logs, and no answer filter
when there is nothing to do on the answer."""

from __future__ import annotations

from typing import Any

from tollgate import schema
from tollgate.context import RequestContext
from tollgate.plugins.guardrails.policy import GuardrailsPolicy
from tollgate.plugins.guardrails.schema import Schema

from .pii_samples import EMAIL


def policy(**config: Any) -> GuardrailsPolicy:
    return GuardrailsPolicy(schema.validate(Schema, config), "tollgate-guardrails")


def ctx_for(body: dict[str, Any]) -> RequestContext:
    import orjson
    return RequestContext(method="POST", path="/v1/chat/completions", query="", headers={},
                          body=orjson.dumps(body), identity={}, policies={})


async def test_template_then_decorator_then_rules_then_pii():
    p = policy(templates=[{"name": "t", "template": '{"messages": [{"role": "user", "content": "mail {{who}}"}]}'}],
               prompts={"append": [{"role": "user", "content": "reply to password holders"}]},
               deny_patterns=["(?i)password"], match_all_roles=True, pii={"enabled": True})
    blocked = await p.before(ctx_for({"messages": "{template://t}", "properties": {"who": EMAIL}}))
    assert blocked is not None and blocked.status == 400          # the decorator's message reached the guard
    p = policy(templates=[{"name": "t", "template": '{"messages": [{"role": "user", "content": "mail {{who}}"}]}'}],
               prompts={"prepend": [{"role": "system", "content": "be brief"}]}, pii={"enabled": True})
    ctx = ctx_for({"model": "m", "messages": "{template://t}", "properties": {"who": EMAIL}})
    assert await p.before(ctx) is None
    assert ctx.json() == {"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                                     {"role": "user", "content": "mail <EMAIL_ADDRESS_1>"}]}
    assert ctx.meta["ai_log"]["guardrails"] == {"template": "applied", "pii_input": {"EMAIL_ADDRESS": 1},
                                                "pii_action": {"EMAIL_ADDRESS": "redact"}}
    assert "hide_payload" not in ctx.meta and p.answer_filter(ctx) is not None


async def test_a_request_refused_before_redaction_keeps_its_payload_out_of_the_logs():
    p = policy(deny_patterns=["(?i)secret"], pii={"enabled": True})
    ctx = ctx_for({"messages": [{"role": "user", "content": f"secret {EMAIL}"}]})
    assert (await p.before(ctx)).status == 400 and ctx.meta["hide_payload"] is True


async def test_no_answer_filter_when_the_answer_needs_nothing():
    p = policy(pii={"enabled": True})
    ctx = ctx_for({"messages": [{"role": "user", "content": "no personal data here"}]})
    assert await p.before(ctx) is None and p.answer_filter(ctx) is None      # nothing to restore, no output scan
    assert policy(deny_patterns=["x"]).answer_filter(ctx) is None

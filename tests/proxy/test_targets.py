"""Targets from config, match rules, resolution (templates, allow_override) and the credentials to redact."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from tollgate import schema as schema_lang
from tollgate.plugins.proxy.schema import Schema
from tollgate.plugins.proxy.targets import (ClientAuth, Facts, eligible, kinds_in, resolve, rules_hold, secrets_of,
                                            specs_from_config)
from tollgate.plugins.proxy.templates import Sources, TemplateError


def config(**extra):
    return schema_lang.validate(Schema, {"route_type": "llm/v1/chat", **extra})


def target(name="gpt-4o", provider="openai", **extra):
    return {"model": {"provider": provider, "name": name}, **extra}


def facts(headers=None, identity=None, model=None, tokens=0) -> Facts:
    return Facts(CIMultiDict(headers or {}), identity or {}, model, lambda: tokens)


def test_the_single_model_form_is_one_implicit_target():
    (spec,) = specs_from_config(config(model={"provider": "openai", "name": "gpt-4o"},
                                       auth={"header_name": "Authorization", "header_value": "Bearer k1234"}))
    assert (spec.provider, spec.model, spec.weight, spec.match) == ("openai", "gpt-4o", 100, None)
    assert spec.auth["header_value"] == "Bearer k1234" and spec.label == "openai/gpt-4o"


@pytest.mark.parametrize("cfg, message", [
    ({}, "model.provider is required"),
    ({"model": {"provider": "openai"}, "targets": [target()]}, "either model"),
    ({"targets": [target()], "auth": {"header_name": "x", "header_value": "k"}}, "own auth"),
    ({"targets": [target(), {"model": {"provider": "openai", "name": "m",
                                       "options": {"upstream_url": "http://$(headers.h)/v1"}}}]}, "scheme or host"),
    ({"targets": [target(match={"min_prompt_tokens": 10, "max_prompt_tokens": 5})]}, "min_prompt_tokens"),
])
def test_configs_that_cannot_work_are_refused(cfg, message):
    with pytest.raises(ValueError, match=message):
        specs_from_config(config(**cfg))


def test_schema_requires_a_provider_per_target():
    with pytest.raises(schema_lang.SchemaError, match="provider"):
        config(targets=[{"model": {"name": "x"}}])


def test_target_ids_are_stable_and_distinct():
    cfg = config(targets=[target(), target(), target("gpt-4o-mini")])
    a, b, c = specs_from_config(cfg)
    assert len({a.id, b.id, c.id}) == 3
    assert [s.id for s in specs_from_config(cfg)] == [a.id, b.id, c.id]


def test_rules():
    (spec,) = specs_from_config(config(targets=[target(match={
        "headers": {"X-Tier": ["premium", "gold"]}, "consumers": ["alice", "team-b"], "models": ["smart"],
        "min_prompt_tokens": 10, "max_prompt_tokens": 100})]))
    ok = dict(headers={"x-tier": "gold"}, identity={"id": "c1", "username": "alice"}, model="smart", tokens=50)
    assert rules_hold(spec.match, facts(**ok))
    for change in ({"headers": {"x-tier": "free"}}, {"headers": {}}, {"identity": {}},
                   {"identity": {"id": "c2", "custom_id": "team-a"}}, {"model": "dumb"}, {"model": None},
                   {"tokens": 9}, {"tokens": 101}):
        assert not rules_hold(spec.match, facts(**{**ok, **change})), change
    assert rules_hold(spec.match, facts(**{**ok, "identity": {"id": "x", "custom_id": "team-b"}, "tokens": 100}))


def test_a_header_rule_without_values_needs_the_header_only():
    (spec,) = specs_from_config(config(targets=[target(match={"headers": {"x-beta": []}})]))
    assert rules_hold(spec.match, facts({"X-Beta": "anything"})) and not rules_hold(spec.match, facts())


def test_prompt_tokens_are_counted_only_when_a_rule_needs_them():
    (spec,) = specs_from_config(config(targets=[target(match={"headers": {"x": ["1"]}})]))

    def boom() -> int:
        raise AssertionError("counted")
    assert rules_hold(spec.match, Facts(CIMultiDict({"x": "1"}), {}, None, boom))


def test_specific_targets_come_before_the_defaults():
    specs = specs_from_config(config(targets=[
        target("small", match={"max_prompt_tokens": 1000}), target("large", match={"min_prompt_tokens": 1001}),
        target("default")]))
    specific, defaults = eligible(specs, facts(tokens=5000))
    assert [s.model for s in specific] == ["large"] and [s.model for s in defaults] == ["default"]
    specific, _ = eligible(specs, facts(tokens=10))
    assert [s.model for s in specific] == ["small"]


def test_resolve_renders_templates_and_pins_the_rest():
    specs = specs_from_config(config(targets=[target("$(headers.x-model)"), target(None), target("fixed"),
                                              {"model": {"provider": "azure", "options": {
                                                  "azure_deployment_id": "dep", "azure_instance": "i"}}}]))
    assert kinds_in(specs) == {"headers"}
    src = Sources(CIMultiDict({"x-model": "gpt-4o-mini"}))
    client = ClientAuth(src.headers, src, {})
    templated, open_, fixed, azure = specs
    assert resolve(templated, src, "ignored", client).model == "gpt-4o-mini"
    assert resolve(open_, src, "client-choice", client).model == "client-choice"
    assert resolve(fixed, src, "client-choice", client).model == "fixed"
    assert resolve(azure, src, "client-choice", client).model is None and azure.deployment_pinned
    with pytest.raises(TemplateError):
        resolve(templated, Sources(CIMultiDict()), None, client)


def test_allow_override_lets_the_clients_own_key_through_only_when_on():
    headers = CIMultiDict({"Authorization": "Bearer client-key", "x-api-key": "client-x"})
    src = Sources(headers, "key=client-q")
    client = ClientAuth(headers, src, {"api_key": "client-b"})
    cases = [({"header_name": "Authorization", "header_value": "Bearer conf"}, "header_value", "Bearer client-key"),
             ({"param_name": "key", "param_value": "conf", "param_location": "query"}, "param_value", "client-q"),
             ({"param_name": "api_key", "param_value": "conf", "param_location": "body"}, "param_value", "client-b")]
    for auth, field, client_value in cases:
        (off,) = specs_from_config(config(targets=[target(auth=auth)]))
        (on,) = specs_from_config(config(targets=[target(auth={**auth, "allow_override": True})]))
        assert resolve(off, src, None, client).auth[field] == auth[field]
        assert resolve(on, src, None, client).auth[field] == client_value
    # allowed, but the client sent nothing: the configured key stays
    (on,) = specs_from_config(config(targets=[target(auth={"header_name": "api-key", "header_value": "conf",
                                                           "allow_override": True})]))
    assert resolve(on, src, None, client).auth["header_value"] == "conf"


def test_secrets_cover_every_credential_and_the_bare_bearer_token():
    specs = specs_from_config(config(targets=[
        target(auth={"header_name": "Authorization", "header_value": "Bearer sk-abcdef"}),
        target("m", "bedrock", auth={"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "wJalrXUt"}),
        target("g", "gemini", auth={"param_name": "key", "param_value": "AIzaSyX"})]))
    assert set(secrets_of(specs)) == {"Bearer sk-abcdef", "sk-abcdef", "AKIAEXAMPLE", "wJalrXUt", "AIzaSyX"}

"""Kong vault references resolved in the Tollgate process: Kong's env-vault rules, and errors without values."""

from __future__ import annotations

import pytest

from tollgate import schema, vaults
from tollgate.plugins.proxy.schema import Schema as PROXY_SCHEMA

ENV = {"OPENAI_KEY": "Bearer s3cret-value", "TG_OPENAI_KEY": "prefixed", "OPENAI_KEY_PREVIOUS": "older",
       "CREDS": '{"openai": "from-json", "n": 5}', "MY_KEY": "dashed"}


@pytest.mark.parametrize("reference, value", [
    ("{vault://env/OPENAI_KEY}", "Bearer s3cret-value"),
    ("{vault://env/openai-key}", "Bearer s3cret-value"),            # upper-cased, '-' as '_', as Kong does
    ("{vault://env/my-key}", "dashed"),
    ("{vault://env/openai_key?prefix=tg_}", "prefixed"),
    ("{vault://env/openai_key#2}", "older"),                         # version 2: NAME_PREVIOUS
    ("{vault://env/creds/openai}", "from-json"),                     # a key of a JSON value
])
def test_env_references_resolve_as_kongs_env_vault(reference, value):
    assert vaults.is_reference(reference)
    assert vaults.resolve(reference, ENV) == value


@pytest.mark.parametrize("reference, message", [
    ("{vault://aws/openai-key}", "vault 'aws' is not available"),
    ("{vault://my-env-vault/openai-key}", "vault 'my-env-vault' is not available"),
    ("{vault://env/missing}", "environment variable MISSING is not set"),
    ("{vault://env/}", "names no variable"),
    ("{vault://env/openai_key/field}", "OPENAI_KEY is not a JSON object"),
    ("{vault://env/creds/n}", "CREDS has no string under 'n'"),
    ("{vault://env/openai_key#x}", "version is not a number"),
])
def test_unresolvable_references_say_why_and_never_show_a_value(reference, message):
    with pytest.raises(vaults.VaultError, match=message) as caught:
        vaults.resolve(reference, ENV)
    assert not any(secret in str(caught.value) for secret in ENV.values())


def test_plain_values_are_not_references():
    for value in ("Bearer x", "{vault://env/x", "vault://env/x", None, 5):
        assert not vaults.is_reference(value)


def test_referenceable_config_fields_are_resolved_at_validation(monkeypatch):
    monkeypatch.setenv("TG_TEST_PROVIDER_KEY", "Bearer from-the-vault")
    config = {"route_type": "llm/v1/chat", "model": {"provider": "openai", "name": "gpt-4o-mini"},
              "auth": {"header_name": "Authorization", "header_value": "{vault://env/tg-test-provider-key}"}}
    assert schema.validate(PROXY_SCHEMA, config)["auth"]["header_value"] == "Bearer from-the-vault"
    # a field Kong does not mark referenceable keeps the text as it is
    config["model"]["name"] = "{vault://env/tg-test-provider-key}"
    assert schema.validate(PROXY_SCHEMA, config)["model"]["name"] == "{vault://env/tg-test-provider-key}"


def test_an_unresolvable_reference_is_a_config_error_on_its_field():
    config = {"route_type": "llm/v1/chat", "model": {"provider": "openai", "name": "gpt-4o-mini"},
              "auth": {"header_name": "Authorization", "header_value": "{vault://hcv/openai}"}}
    with pytest.raises(schema.SchemaError) as caught:
        schema.validate(PROXY_SCHEMA, config)
    assert caught.value.errors == {"auth.header_value": "{vault://hcv/openai}: vault 'hcv' is not available (Kong OSS "
                                   "has the env vault; vault entities and Enterprise vaults are not resolved here)"}

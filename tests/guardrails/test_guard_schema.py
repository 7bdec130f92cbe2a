"""The ``guards`` config: Kong's common guard field names and defaults, one settings sub-record per type, and what
cannot work refused when the instance starts (so by ``tollgate validate`` too)."""

import pytest

from tollgate import schema
from tollgate.plugins.guardrails.guards import KINDS, build
from tollgate.pluginserver.loader import load_builtin

PLUGIN = load_builtin()["tollgate-guardrails"]
LAKERA = {"name": "lakera", "type": "lakera", "lakera": {"api_key": "lk-test"}}


def checked(*guards: dict) -> dict:
    return schema.validate(PLUGIN.schema, {"guards": list(guards)})


def test_common_fields_have_kongs_names_and_defaults():
    guard = checked(LAKERA)["guards"][0]
    assert {k: guard[k] for k in ("guarding_mode", "text_source", "response_buffer_size", "reveal_failure_reason",
                                  "fail_open", "timeout")} == {
        "guarding_mode": "INPUT", "text_source": "concatenate_all_content", "response_buffer_size": 100,
        "reveal_failure_reason": False, "fail_open": False, "timeout": 10000}
    assert set(KINDS) == {"http", "openai_moderation", "azure_content_safety", "bedrock", "lakera", "semantic"}
    assert all(kind in guard for kind in KINDS)        # one settings sub-record per type


@pytest.mark.parametrize("guard, field", [
    ({**LAKERA, "type": "nope"}, "guards[0].type"),
    ({**LAKERA, "guarding_mode": "SOMETIMES"}, "guards[0].guarding_mode"),
    ({**LAKERA, "text_source": "everything"}, "guards[0].text_source"),
    ({**LAKERA, "timeout": 0}, "guards[0].timeout"),
    ({"type": "lakera"}, "guards[0].name"),
    ({"name": "az", "type": "azure_content_safety",
      "azure_content_safety": {"categories": [{"name": "Gore", "rejection_level": 2}]}},
     "guards[0].azure_content_safety.categories[0].name"),
])
def test_the_schema_refuses(guard, field):
    with pytest.raises(schema.SchemaError) as caught:
        checked(guard)
    assert field in caught.value.errors


@pytest.mark.parametrize("guard, message", [
    ({"name": "h", "type": "http", "http": {"response": {"block": "flagged"}}}, "http.request.url is required"),
    ({"name": "h", "type": "http", "http": {"request": {"url": "http://g/check"}}}, "http.response.block"),
    ({"name": "h", "type": "http", "http": {"request": {"url": "http://g", "body": "{not json"},
                                            "response": {"block": "x"}}}, "not JSON"),
    ({"name": "h", "type": "http", "http": {"request": {"url": "http://g", "body": '{"a": 1}'},
                                            "response": {"block": "x"}}}, "must contain $(content)"),
    ({"name": "o", "type": "openai_moderation"}, "api_key is required"),
    ({**LAKERA, "http": {"request": {"url": "http://g"}}}, "is of type lakera but has http settings"),
    ({"name": "l", "type": "lakera"}, "api_key is required"),
    ({"name": "a", "type": "azure_content_safety", "azure_content_safety": {"content_safety_url": "http://a"}},
     "needs categories or blocklist_names"),
    ({"name": "b", "type": "bedrock", "bedrock": {"aws_region": "us-east-1"}}, "guardrails_id is required"),
    ({"name": "b", "type": "bedrock", "bedrock": {"guardrails_id": "g1", "aws_region": "us-east-1",
                                                  "aws_access_key_id": "AKIA"}}, "both aws_access_key_id"),
])
def test_the_instance_refuses_what_cannot_work(guard, message):
    with pytest.raises(ValueError, match=message.replace("$", r"\$").replace("(", r"\(").replace(")", r"\)")):
        PLUGIN.instantiate({"guards": [guard]})


def test_guard_names_are_unique():
    with pytest.raises(ValueError, match="unique"):
        build(checked(LAKERA, LAKERA))


def test_tollgate_validate_reports_guard_errors(tmp_path):
    from tollgate import deckcheck
    entry = {"name": "tollgate-guardrails", "config": {"guards": [{"name": "l", "type": "lakera"},
                                                                   {"name": "x", "type": "nope"}]}}
    errors = deckcheck.check_entry(load_builtin(), entry)
    assert errors == {"config.guards[1].type": "expected one of: http, openai_moderation, azure_content_safety, "
                                                "bedrock, lakera, semantic"}
    errors = deckcheck.check_entry(load_builtin(), {**entry, "config": {"guards": [{"name": "l", "type": "lakera"}]}})
    assert "api_key is required" in errors["config"]

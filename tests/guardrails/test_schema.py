"""The config schema Kong gets: Kong's field names, and patterns Kong itself checks as regexes when it loads a
config (``is_regex``), before the instance (RE2) refuses what PCRE accepts but RE2 cannot run."""

from tollgate import schema
from tollgate.pluginserver.loader import load_builtin


def fields(record: list[dict]) -> dict[str, dict]:
    return {name: spec for entry in record for name, spec in entry.items()}


def test_kong_checks_every_pattern_as_a_regex_at_config_load():
    info = load_builtin()["tollgate-guardrails"].info()
    config = fields(info["Schema"]["fields"][0]["config"]["fields"])
    assert config["deny_patterns"]["elements"]["is_regex"] and config["allow_patterns"]["elements"]["is_regex"]
    custom = fields(fields(config["pii"]["fields"])["custom_patterns"]["elements"]["fields"])
    assert custom["regex"]["is_regex"]


def test_kongs_names_and_defaults():
    config = schema.validate(load_builtin()["tollgate-guardrails"].schema, {})
    assert config["allow_untemplated_requests"] is True and config["allow_all_conversation_history"] is False
    assert config["match_all_roles"] is False and config["fail_open"] is False
    assert config["pii"]["enabled"] is False and config["pii"]["mode"] == "INPUT" and config["pii"]["restore"]
    assert config["prompts"] == {"prepend": None, "append": None}

"""`tollgate validate`: Tollgate plugin configs of decK files, checked as Kong and the plugin server check them."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness.config import ConfigError, config_record_fields, process_config
from tollgate import deckcheck
from tollgate.pluginserver import loader

REPO = Path(__file__).resolve().parents[1]
DECLARATIVE = sorted((REPO / "declarative").glob("*.yml"))


@pytest.fixture(scope="module")
def plugins():
    return loader.load_all()


def validate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tollgate", "validate", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_the_example_decK_files_are_valid():
    done = validate(*(str(p.relative_to(REPO)) for p in DECLARATIVE))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    example = (REPO / "declarative" / "kong.yml").read_text()
    count = len(re.findall(r"^\s*- name: tollgate-(?!relay)", example, re.M))   # tollgate-relay is the Service
    assert f"declarative/kong.yml: {count} Tollgate plugin configs, valid" in done.stdout


BROKEN = """\
_format_version: "3.0"
plugins:
  - name: tollgate-token-limit
    config: {limits: 5}
services:
  - name: relay
    url: http://127.0.0.1:8081
    plugins:
      - name: tollgate-cost-quota
        config: {budgets: [{amount: -1, period: day}]}
    routes:
      - name: chat
        paths: ["/v1"]
        plugins:
          - name: key-auth
            config: {not_ours_to_check: true}
          - name: tollgate-proxy
            conifg: {route_type: llm/v1/chat}
          - name: tollgate-proxy
            config:
              route_type: llm/v1/chat
              respones_streaming: allow
              model: {provider: opneai, name: gpt-4o-mini}
          - name: tollgate-proxi
consumers:
  - username: alice
    plugins:
      - name: tollgate-proxy
        config: {route_type: llm/v1/chat}
"""


def test_every_error_names_its_file_and_path(tmp_path):
    path = tmp_path / "kong.yml"
    path.write_text(BROKEN)
    done = validate(str(path))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    text = done.stderr
    assert f"{path}: plugins[0] (tollgate-token-limit): config.limits: expected array" in text
    assert "services[0].plugins[0] (tollgate-cost-quota): config.budgets[0]" in text
    assert "services[0].routes[0].plugins[1] (tollgate-proxy): conifg: unknown field of a plugin entry" in text
    assert "services[0].routes[0].plugins[1] (tollgate-proxy): config.route_type: required field missing" in text
    assert "services[0].routes[0].plugins[2] (tollgate-proxy): config.respones_streaming: unknown field" in text
    assert "services[0].routes[0].plugins[2] (tollgate-proxy): config.model.provider: expected one of:" in text
    assert "services[0].routes[0].plugins[3] (tollgate-proxi): name: no Tollgate plugin is named" in text
    # a config the schema allows but the plugin server refuses when Kong starts the instance (a 500 on the route)
    assert "consumers[0].plugins[0] (tollgate-proxy): config: model.provider is required" in text
    assert "key-auth" not in text  # Kong's own plugins are not ours to check
    assert done.stdout.strip() == f"{path}: 6 Tollgate plugin configs, {len(lines)} errors"


def test_an_unreadable_or_broken_file_is_one_line_and_the_others_are_still_checked(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("services: [\n")
    done = validate(str(tmp_path / "missing.yml"), str(broken), str(DECLARATIVE[0]))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"tollgate validate: {tmp_path / 'missing.yml'}: cannot read: No such file or directory",
        *[line for line in done.stderr.splitlines() if line.startswith(f"tollgate validate: {broken}: not YAML")],
    ]
    assert "Traceback" not in done.stderr
    assert done.stdout.strip().endswith("valid")


@pytest.mark.parametrize("config", [
    {"route_type": "llm/v1/chat", "model": {"provider": "openai"}, "bogus": 1},
    {"route_type": "llm/v1/nope", "model": {"provider": "openai"}},
    {"route_type": "llm/v1/chat", "model": {"provider": "openai", "name": 5}},
    {"model": {"provider": "openai"}},
], ids=["unknown field", "not one of", "wrong type", "required missing"])
def test_what_kong_refuses_validate_refuses(plugins, config):
    """The Kong double applies Kong's schema processing to the schema the query command gives Kong."""
    entry = {"name": "tollgate-proxy", "config": config}
    fields = config_record_fields(plugins["tollgate-proxy"].info()["Schema"])
    with pytest.raises(ConfigError):
        process_config(fields, copy.deepcopy(config), "tollgate-proxy.config")
    assert deckcheck.check_entry(plugins, entry)


def test_every_plugin_entry_place_of_a_decK_file_is_found():
    doc = yaml.safe_load(BROKEN)
    assert [where for where, _ in deckcheck.plugin_entries(doc)] == [
        "plugins[0]", "services[0].plugins[0]", "services[0].routes[0].plugins[0]",
        "services[0].routes[0].plugins[1]", "services[0].routes[0].plugins[2]", "services[0].routes[0].plugins[3]",
        "consumers[0].plugins[0]"]

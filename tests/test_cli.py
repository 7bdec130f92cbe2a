"""The query command Kong runs at start: JSON on stdout and nothing else."""

import json
import os
import subprocess
import sys

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "test_plugins")
NAMES = {"tollgate-proxy", "tollgate-token-limit", "tollgate-semantic-cache", "tollgate-guardrails",
         "tollgate-cost-quota", "tollgate-mcp"}


def dump(*args):
    done = subprocess.run([sys.executable, "-m", "tollgate", "dump", *args], capture_output=True, text=True,
                          check=True, timeout=60)
    return json.loads(done.stdout), done.stderr


def test_dump_lists_all_six_plugins_with_kong_fields():
    document, _ = dump()
    assert document["Protocol"] == "MsgPack:1"
    plugins = {p["Name"]: p for p in document["Plugins"]}
    assert set(plugins) == NAMES
    for plugin in plugins.values():
        assert set(plugin) == {"Name", "Version", "Priority", "Phases", "Schema"}
        assert plugin["Phases"] == ["access"]
        (config,) = plugin["Schema"]["fields"]
        assert config["config"]["type"] == "record" and config["config"]["fields"]
    # Kong's AI plugin order: limits before guards before cache before proxy.
    order = sorted(plugins, key=lambda n: -plugins[n]["Priority"])
    assert order.index("tollgate-token-limit") < order.index("tollgate-guardrails") \
        < order.index("tollgate-semantic-cache") < order.index("tollgate-proxy")


def test_dump_one_plugin_for_a_kong_39_entry():
    document, _ = dump("--plugin", "tollgate-cost-quota")
    assert [p["Name"] for p in document["Plugins"]] == ["tollgate-cost-quota"]


def test_a_plugin_printing_on_import_cannot_corrupt_stdout():
    document, stderr = dump("--plugins-dir", FIXTURES)
    assert "noisy" in {p["Name"] for p in document["Plugins"]}
    assert "hello from a noisy plugin" in stderr


def test_unknown_plugin_fails_with_nothing_on_stdout():
    done = subprocess.run([sys.executable, "-m", "tollgate", "dump", "--plugin", "nope"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""

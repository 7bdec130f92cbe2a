"""The compose stack's `observability` profile, checked without Docker: Prometheus scrapes what Tollgate and Kong
serve (with the status token the stack sets), Grafana's provisioning points at the dashboard it mounts, and every
panel queries series that exist. ``promtool`` (Debian's ``prometheus`` package; TOLLGATE_PROMTOOL to name one)
checks the config and parses every panel's PromQL when it is installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .harness import REPO

COMPOSE = REPO / "docker-compose.yml"
OBSERVABILITY = REPO / "observability"
PROMETHEUS = OBSERVABILITY / "prometheus.yml"
DASHBOARD = OBSERVABILITY / "grafana" / "dashboards" / "tollgate.json"
# Kong's prometheus plugin with ai_metrics (kong/plugins/prometheus/exporter.lua in Kong/kong).
KONG_AI_SERIES = {"kong_ai_llm_requests_total", "kong_ai_llm_cost_total", "kong_ai_llm_tokens_total",
                  "kong_ai_llm_provider_latency_ms_bucket"}


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def default_of(value: str) -> str:
    """``${NAME:-default}`` -> default (what compose uses when the variable is unset)."""
    match = re.fullmatch(r"\$\{[A-Z_]+:-([^}]*)\}", value)
    return match.group(1) if match else value


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path (relative to the repository) of a service's bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        out[container] = REPO / host
    return out


def tollgate_series() -> set[str]:
    """Every series name the Tollgate process exports (histograms with their _bucket/_sum/_count)."""
    from tollgate import metrics
    from tollgate.plugins.proxy import policy  # noqa: F401  (registers tollgate_ai_proxy_attempts_total)

    names = set()
    for family in metrics.REGISTRY.collect():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
        if family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
    return names


def exprs() -> list[tuple[str, str]]:
    document = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in document["panels"] for target in panel["targets"]]


def promtool() -> str:
    found = os.environ.get("TOLLGATE_PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return found


def test_the_profile_adds_prometheus_and_grafana_with_their_files():
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]
        for host in mounts(services[name]).values():
            assert host.exists(), host
        assert all(str(port).startswith("127.0.0.1:") for port in services[name]["ports"])
    assert mounts(services["prometheus"])["/etc/prometheus/prometheus.yml"] == PROMETHEUS
    # The default stack does not need them.
    assert all("profiles" not in services[name] for name in ("kong", "redis", "mock-llm"))


def test_prometheus_scrapes_tollgate_with_the_stack_token_and_kong_admin():
    kong = compose()["services"]["kong"]
    env = kong["environment"]
    jobs = {job["job_name"]: job for job in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]}
    tollgate = jobs["tollgate"]
    assert tollgate["static_configs"][0]["targets"] == [f"kong:{env['TOLLGATE_STATUS_PORT']}"]
    assert env["TOLLGATE_STATUS_HOST"] == "0.0.0.0"
    assert tollgate["authorization"] == {"type": "Bearer", "credentials": default_of(env["TOLLGATE_STATUS_TOKEN"])}
    assert tollgate["metrics_path"] == "/metrics"
    admin_port = env["KONG_ADMIN_LISTEN"].rsplit(":", 1)[1]
    assert jobs["kong"]["static_configs"][0]["targets"] == [f"kong:{admin_port}"]
    # the dashboard's port is published on the host's loopback
    assert any(str(p).startswith("127.0.0.1:") and str(p).endswith(f":{env['TOLLGATE_STATUS_PORT']}")
               for p in kong["ports"])
    # Kong exports the AI series only with the prometheus plugin's ai_metrics on
    declarative = yaml.safe_load((REPO / "declarative" / "kong.yml").read_text())
    assert {"name": "prometheus", "config": {"ai_metrics": True}} in declarative["plugins"]


def test_grafana_provisions_the_datasource_and_the_dashboard_it_mounts():
    grafana = compose()["services"]["grafana"]
    volumes = mounts(grafana)
    provisioning = volumes["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "tollgate.yml").read_text())["providers"]
    assert provider["type"] == "file"
    assert volumes[provider["options"]["path"]] / DASHBOARD.name == DASHBOARD
    document = json.loads(DASHBOARD.read_text())
    assert document["uid"] and document["title"] == "Tollgate"
    panels = document["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == source["uid"]
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"]) and panel["targets"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_every_panel_queries_series_that_exist():
    known = tollgate_series() | KONG_AI_SERIES
    seen = set()
    for title, expr in exprs():
        names = set(re.findall(r"\b((?:tollgate|kong)_[a-z0-9_]+)", expr))
        assert names, title
        assert names <= known, (title, names - known)
        seen |= names
    # the panels of the built-in dashboard: requests, tokens, cost, refusals, latency, TTFT, errors (and Kong's view)
    assert {"tollgate_ai_llm_requests_total", "tollgate_ai_llm_tokens_total", "tollgate_ai_llm_cost_total",
            "tollgate_refusals_total", "tollgate_ai_llm_provider_latency_ms_bucket",
            "tollgate_ai_llm_time_to_first_token_ms_bucket", "tollgate_ai_proxy_attempts_total",
            "kong_ai_llm_requests_total"} <= seen


def test_promtool_accepts_the_config():
    done = subprocess.run([promtool(), "check", "config", str(PROMETHEUS)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_parses_every_panel_query(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"panel:{i}", "expr": expr.replace("$__rate_interval", "1m").replace("$__range", "1h")}
        for i, (_, expr) in enumerate(exprs())]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

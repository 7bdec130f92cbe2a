"""The per-tool counters as the status listener exposes them (the records themselves: test_acceptance.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from tollgate.plugins.mcp.audit import Tallies


def exposed(tallies: Tallies) -> list[str]:
    registry = CollectorRegistry()
    registry.register(tallies)
    return [line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#")]


def test_calls_and_latency_buckets_follow_prometheus_rules():
    tallies = Tallies()
    for ms in (0.4, 1.0, 3.0, 3.0, 40_000.0):            # 1.0 is on a bound: it counts in le="1"
        tallies.add(("r1", "tools/call", "echo", "ok"), ms)
    tallies.add(("r1", "tools/call", "echo", "-32602"), 7.0)
    lines = exposed(tallies)
    assert 'tollgate_mcp_requests_total{method="tools/call",name="echo",outcome="ok",route="r1"} 5.0' in lines
    assert 'tollgate_mcp_requests_total{method="tools/call",name="echo",outcome="-32602",route="r1"} 1.0' in lines
    bucket = 'tollgate_mcp_latency_ms_bucket{{le="{}",method="tools/call",route="r1"}} {}'
    assert bucket.format("1", "2.0") in lines
    assert bucket.format("2", "2.0") in lines
    assert bucket.format("5", "4.0") in lines
    assert bucket.format("10", "5.0") in lines
    assert bucket.format("30000", "5.0") in lines
    assert bucket.format("+Inf", "6.0") in lines
    assert 'tollgate_mcp_latency_ms_count{method="tools/call",route="r1"} 6.0' in lines
    assert 'tollgate_mcp_latency_ms_sum{method="tools/call",route="r1"} 40014.4' in lines

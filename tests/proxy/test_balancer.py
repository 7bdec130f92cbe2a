"""Balancer math: each algorithm's order, shares and tie-breaking."""

from __future__ import annotations

from collections import Counter

import pytest

from tollgate.plugins.proxy.balancer import Balancer, Inputs, Latency, Snapshot, ewma
from tollgate.plugins.proxy.routing import Decision
from tollgate.plugins.proxy.targets import TargetSpec


def spec(name: str, weight: int = 100, priority: int = 1, index: int = 0) -> TargetSpec:
    return TargetSpec(index=index, id=name, provider="openai", model=name, options={}, auth={}, weight=weight,
                      priority=priority)


def firsts(balancer: Balancer, tier, n: int, inputs: Inputs | None = None) -> Counter:
    return Counter(balancer.order(tier, inputs or Inputs())[0].id for _ in range(n))


def test_weighted_round_robin_gives_exact_shares_spread_out():
    tier = [spec("a", 3, index=0), spec("b", 1, index=1)]
    balancer = Balancer("round-robin")
    picks = [balancer.order(tier, Inputs())[0].id for _ in range(1000)]
    assert Counter(picks) == {"a": 750, "b": 250}
    assert "bb" not in "".join(picks)                 # never twice in a row at 3:1
    orders = {tuple(s.id for s in balancer.order(tier, Inputs())) for _ in range(8)}
    assert orders == {("a", "b"), ("b", "a")}         # the rest follow as failover


def test_weighted_round_robin_three_ways():
    tier = [spec("a", 5, index=0), spec("b", 3, index=1), spec("c", 2, index=2)]
    assert firsts(Balancer("round-robin"), tier, 100) == {"a": 50, "b": 30, "c": 20}


def test_priority_groups_fail_over_group_by_group():
    tier = [spec("p1a", 1, 1, 0), spec("p1b", 1, 1, 1), spec("p2", 100, 2, 2), spec("p3", 1, 3, 3)]
    balancer = Balancer("priority")
    orders = [[s.id for s in balancer.order(tier, Inputs())] for _ in range(4)]
    assert all(o[2:] == ["p2", "p3"] for o in orders)
    assert Counter(o[0] for o in orders) == {"p1a": 2, "p1b": 2}


def test_consistent_hashing_is_sticky_weighted_and_moves_little():
    tier = [spec("a", 100, index=0), spec("b", 100, index=1), spec("c", 200, index=2)]
    balancer = Balancer("consistent-hashing")
    keys = [f"user-{i}" for i in range(4000)]
    first = {k: balancer.order(tier, Inputs(hash_key=k))[0].id for k in keys}
    assert all(balancer.order(tier, Inputs(hash_key=k))[0].id == first[k] for k in keys[:200])
    shares = Counter(first.values())
    assert 0.40 < shares["c"] / len(keys) < 0.60 and 0.17 < shares["a"] / len(keys) < 0.33
    order = balancer.order(tier, Inputs(hash_key="user-1"))
    assert sorted(s.id for s in order) == ["a", "b", "c"]       # the ring walk is the failover order
    without_b = [s for s in tier if s.id != "b"]
    moved = sum(1 for k in keys if first[k] != "b" and balancer.order(without_b, Inputs(hash_key=k))[0].id != first[k])
    assert moved == 0                                           # only b's keys move
    assert firsts(balancer, tier, 40, Inputs(hash_key=None)) == {"a": 10, "b": 10, "c": 20}  # no key: round-robin


def test_lowest_latency_prefers_the_fastest_and_probes_first():
    tier = [spec("slow", index=0), spec("fast", index=1), spec("new", index=2)]
    snap = Snapshot(now=100.0, latency={"slow": Latency(300.0, 10, 99.0), "fast": Latency(40.0, 10, 99.0)})
    balancer = Balancer("lowest-latency")
    assert [s.id for s in balancer.order(tier, Inputs(snapshot=snap))] == ["fast", "slow", "new"]
    probing = Inputs(snapshot=snap, probing=frozenset({"new"}))
    assert [s.id for s in balancer.order(tier, probing)] == ["new", "fast", "slow"]
    assert snap.latency_known("fast") and not Snapshot(now=200.0, latency=snap.latency).latency_known("fast")


def test_lowest_usage_weighs_usage_by_weight_and_least_busy_counts_in_flight():
    tier = [spec("a", 100, index=0), spec("b", 300, index=1)]
    snap = Snapshot(usage={"a": 1000.0, "b": 2400.0})
    assert Balancer("lowest-usage").order(tier, Inputs(snapshot=snap))[0].id == "b"    # 8/weight vs 10/weight
    busy = Balancer("least-busy")
    busy.in_flight.update({"a": 2, "b": 3})
    assert busy.order(tier, Inputs())[0].id == "b"
    busy.in_flight["b"] += 4
    assert busy.order(tier, Inputs())[0].id == "a"


def test_equal_scores_take_turns():
    tier = [spec("a", index=0), spec("b", index=1), spec("c", index=2)]
    assert firsts(Balancer("least-busy"), tier, 30) == {"a": 10, "b": 10, "c": 10}
    assert firsts(Balancer("lowest-usage"), tier, 30, Inputs(snapshot=Snapshot())) == {"a": 10, "b": 10, "c": 10}


def test_cost_prefers_the_cheapest_priced_target():
    tier = [spec("unpriced", index=0), spec("dear", index=1), spec("cheap", index=2)]
    prices = {"dear": 0.01, "cheap": 0.001}
    order = Balancer("cost").order(tier, Inputs(cost_of=lambda s: prices.get(s.id)))
    assert [s.id for s in order] == ["cheap", "dear", "unpriced"]


def test_ewma():
    assert ewma(None, 100.0) == 100.0
    assert ewma(Latency(100.0, 3, 0.0), 200.0) == pytest.approx(130.0)


def test_single_target_is_returned_as_is():
    only = [spec("a")]
    for algorithm in ("round-robin", "lowest-latency", "consistent-hashing", "cost", "priority"):
        assert Balancer(algorithm).order(only, Inputs()) == only


# -- semantic, complexity ------------------------------------------------------------------------------------------

def meaning(name: str, index: int, description: str | None = None, tier: str | None = None) -> TargetSpec:
    return TargetSpec(index=index, id=name, provider="openai", model=name, options={}, auth={},
                      description=description, tier=tier)


def test_semantic_puts_the_nearest_first_and_the_defaults_last():
    tier = [meaning("code", 0, "code"), meaning("math", 1, "math"), meaning("d1", 2), meaning("d2", 3)]
    balancer = Balancer("semantic")
    near = Decision("semantic", similarity={"code": 0.2, "math": 0.7}, nearest="math")
    orders = [[s.id for s in balancer.order(tier, Inputs(decision=near))] for _ in range(4)]
    assert all(o[:2] == ["math", "code"] for o in orders)
    assert {o[2] for o in orders} == {"d1", "d2"}                      # the defaults share by weight
    below = Decision("semantic", similarity={"code": 0.2, "math": 0.25}, fallback="below-threshold")
    assert [s.id for s in balancer.order(tier, Inputs(decision=below))][2:] == ["math", "code"]
    failed = Decision("semantic", fallback="embeddings-failed")
    assert {s.id for s in balancer.order(tier, Inputs(decision=failed))[:2]} == {"d1", "d2"}


def test_complexity_puts_the_tier_first_then_the_nearest_tiers_stronger_first():
    tier = [meaning("s", 0, tier="simple"), meaning("m1", 1, tier="standard"), meaning("m2", 2, tier="standard"),
            meaning("h", 3, tier="hard")]
    balancer = Balancer("complexity")

    def order(chosen: str) -> list[str]:
        return [s.id for s in balancer.order(tier, Inputs(decision=Decision("complexity", tier=chosen)))]

    assert order("hard")[0] == "h" and order("hard")[3] == "s"
    assert order("simple")[0] == "s" and order("simple")[3] == "h"
    firsts_standard = Counter(order("standard")[0] for _ in range(4))
    assert firsts_standard == {"m1": 2, "m2": 2}                        # a tier's targets share by weight
    assert order("standard")[2:] == ["h", "s"]                         # at equal distance, the stronger first

"""Balancer algorithms: in which order a request tries the targets it may use.

Every algorithm returns a full preference order, not one pick: the first target answers unless it fails, and the
rest are the failover order. The inputs that are shared between nodes (latency, usage, circuit state) come in a
``Snapshot`` read from the store (``health.py``); what is inherently per node stays here:

* the smooth weighted round-robin position (nginx's algorithm: exact shares, well interleaved);
* in-flight counts for ``least-busy`` (like Kong's least-connections, each node counts its own connections:
  a count kept in a shared store would drift for good whenever a node died mid-request).

``semantic`` and ``complexity`` order by a per-request ``Decision`` (``routing.py``): the nearest targets first
(the defaults first when the prompt is near none), or the chosen tier first, then the other tiers nearest first
(a stronger tier before a weaker one at the same distance), each group by weighted round-robin.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from .schema import TIERS
from .targets import TargetSpec

if TYPE_CHECKING:
    from .routing import Decision

INF = math.inf
# A latency sample older than this no longer counts as known: the target gets one probe request, so a target that
# was slow once is not starved for ever.
STALE_AFTER = 30.0
RING_POINTS = 160  # virtual nodes of the heaviest target on the consistent-hashing ring


@dataclass
class Latency:
    ewma: float        # ms (ttft, e2e) or ms per output token (tpot)
    samples: int
    at: float          # when the last sample was recorded (store clock, epoch seconds)


@dataclass
class Snapshot:
    """Shared state of the targets at the start of one request."""

    now: float = 0.0
    latency: dict[str, Latency] = field(default_factory=dict)
    usage: dict[str, float] = field(default_factory=dict)
    open_until: dict[str, float] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def is_open(self, tid: str) -> bool:
        return self.open_until.get(tid, 0.0) > self.now

    def latency_known(self, tid: str) -> bool:
        stat = self.latency.get(tid)
        return stat is not None and stat.samples > 0 and self.now - stat.at <= STALE_AFTER


@dataclass
class Inputs:
    """Per-request inputs an algorithm may need."""

    snapshot: Snapshot = field(default_factory=Snapshot)
    hash_key: str | None = None                          # consistent-hashing
    probing: frozenset[str] = frozenset()                # lowest-latency: targets this request probes
    cost_of: Callable[[TargetSpec], float | None] = lambda spec: None
    decision: "Decision | None" = None                   # semantic, complexity


class Balancer:
    def __init__(self, algorithm: str):
        self.algorithm = algorithm
        self._wrr: dict[tuple[str, ...], dict[str, int]] = {}
        self._rings: dict[tuple[str, ...], "Ring"] = {}
        self._turn = itertools.count()
        self.in_flight: Counter[str] = Counter()

    def order(self, tier: Sequence[TargetSpec], inputs: Inputs) -> list[TargetSpec]:
        """``tier`` in the order this request should try it."""
        if len(tier) <= 1:
            return list(tier)
        algorithm = self.algorithm
        if algorithm == "round-robin":
            return self.weighted_round_robin(tier)
        if algorithm == "priority":
            groups: dict[int, list[TargetSpec]] = {}
            for spec in tier:
                groups.setdefault(spec.priority, []).append(spec)
            return [s for level in sorted(groups) for s in self.weighted_round_robin(groups[level])]
        if algorithm == "consistent-hashing":
            if inputs.hash_key is None:
                return self.weighted_round_robin(tier)
            return self._ring(tier).walk(inputs.hash_key)
        if algorithm == "lowest-latency":
            return self._by_score(tier, lambda s: latency_score(s, inputs))
        if algorithm == "lowest-usage":
            return self._by_score(tier, lambda s: inputs.snapshot.usage.get(s.id, 0.0) / s.weight)
        if algorithm == "least-busy":
            return self._by_score(tier, lambda s: self.in_flight[s.id] / s.weight)
        if algorithm == "cost":
            return self._by_score(tier, lambda s: _or_inf(inputs.cost_of(s)))
        if algorithm == "semantic":
            return self._nearest_first(tier, inputs.decision)
        if algorithm == "complexity":
            return self._tier_first(tier, inputs.decision)
        raise ValueError(f"unknown balancer algorithm {algorithm!r}")

    # -- weighted round-robin ---------------------------------------------------------------------------------

    def weighted_round_robin(self, tier: Sequence[TargetSpec]) -> list[TargetSpec]:
        """Smooth weighted round-robin (as nginx does it): over any run of sum(weights) picks each target gets
        exactly its share, spread out rather than in bursts. The rest follow by weight."""
        if len(tier) <= 1:
            return list(tier)
        key = tuple(s.id for s in tier)
        current = self._wrr.get(key)
        if current is None:
            if len(self._wrr) > 256:      # tiers come from rule outcomes: bounded, but never let it grow
                self._wrr.clear()
            current = self._wrr[key] = {s.id: 0 for s in tier}
        total = 0
        best: TargetSpec | None = None
        for spec in tier:
            current[spec.id] += spec.weight
            total += spec.weight
            if best is None or current[spec.id] > current[best.id]:
                best = spec
        assert best is not None
        current[best.id] -= total
        rest = sorted((s for s in tier if s is not best), key=lambda s: (-s.weight, s.index))
        return [best, *rest]

    # -- scored algorithms ------------------------------------------------------------------------------------

    def _by_score(self, tier: Sequence[TargetSpec], score: Callable[[TargetSpec], float]) -> list[TargetSpec]:
        """Lowest score first; equal scores take turns (so ties spread instead of piling on the first target)."""
        turn = next(self._turn)
        n = len(tier)
        return [s for _, _, s in sorted((score(s), (i - turn) % n, s) for i, s in enumerate(tier))]

    # -- semantic, complexity ---------------------------------------------------------------------------------

    def _nearest_first(self, tier: Sequence[TargetSpec], decision: "Decision | None") -> list[TargetSpec]:
        similarity = decision.similarity if decision is not None else {}
        defaults = self.weighted_round_robin([s for s in tier if not s.has_meaning])
        meaning = [s for s in tier if s.has_meaning]
        if similarity:
            near = sorted(meaning, key=lambda s: (-similarity.get(s.id, -INF), s.index))
        else:
            near = self.weighted_round_robin(meaning)
        if decision is None or decision.fallback:
            return defaults + near
        return near + defaults

    def _tier_first(self, tier: Sequence[TargetSpec], decision: "Decision | None") -> list[TargetSpec]:
        chosen = TIERS.index(decision.tier) if decision is not None and decision.tier in TIERS else 1
        groups: dict[tuple[int, int], list[TargetSpec]] = {}
        for spec in tier:
            rank = TIERS.index(spec.tier) if spec.tier in TIERS else len(TIERS)
            groups.setdefault((abs(rank - chosen), -rank), []).append(spec)
        return [s for key in sorted(groups) for s in self.weighted_round_robin(groups[key])]

    # -- consistent hashing -----------------------------------------------------------------------------------

    def _ring(self, tier: Sequence[TargetSpec]) -> "Ring":
        key = tuple(s.id for s in tier)
        ring = self._rings.get(key)
        if ring is None:
            if len(self._rings) > 256:
                self._rings.clear()
            ring = self._rings[key] = Ring(tier)
        return ring


def latency_score(spec: TargetSpec, inputs: Inputs) -> float:
    """A target being probed goes first; an unknown one not probed by this request goes last."""
    if spec.id in inputs.probing:
        return -1.0
    stat = inputs.snapshot.latency.get(spec.id)
    if stat is None or stat.samples == 0:
        return INF
    return stat.ewma


class Ring:
    """A consistent-hashing ring with weight-proportional virtual nodes: a key keeps its target while the
    targets stay, and only the keys of a removed target move."""

    def __init__(self, tier: Sequence[TargetSpec]):
        heaviest = max(s.weight for s in tier)
        points: list[tuple[int, int]] = []
        for position, spec in enumerate(tier):
            for replica in range(max(1, round(RING_POINTS * spec.weight / heaviest))):
                points.append((hash64(f"{spec.id}#{replica}"), position))
        points.sort()
        self._hashes = [h for h, _ in points]
        self._owners = [p for _, p in points]
        self._tier = list(tier)

    def walk(self, key: str) -> list[TargetSpec]:
        """The key's target, then the next distinct targets clockwise (its failover order)."""
        start = bisect.bisect(self._hashes, hash64(key)) % len(self._hashes)
        seen: list[int] = []
        for i in range(len(self._owners)):
            owner = self._owners[(start + i) % len(self._owners)]
            if owner not in seen:
                seen.append(owner)
                if len(seen) == len(self._tier):
                    break
        return [self._tier[i] for i in seen]


def hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def ewma(previous: Latency | None, sample: float, alpha: float = 0.3) -> float:
    """Exponentially weighted moving average; the first sample stands alone."""
    if previous is None or previous.samples == 0:
        return sample
    return (1 - alpha) * previous.ewma + alpha * sample


def _or_inf(value: float | None) -> float:
    return INF if value is None else value

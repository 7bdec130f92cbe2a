"""Routing by what a prompt is: the per-request decision of ``balancer.algorithm: semantic`` and ``complexity``.

A router turns a request body into a `Decision` before the balancer orders the targets (``balancer.py``): which
tier the prompt needs, or how near it is to each target. The decision is said in the ``X-Tollgate-Route-Reason``
response header and in the request's log line (``ai.routing``); which target answered is ``X-Tollgate-Target``.
Failover still goes down the whole order: after the chosen tier, the nearest tiers; after the nearest target, the
next nearest and the defaults.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from prometheus_client import Counter

from ... import log, metrics
from ...embeddings import Embedder, EmbeddingError
from ...embeddings import from_config as embeddings_from_config
from . import classifier, complexity
from .complexity import Prompt
from .schema import SEMANTIC_THRESHOLD, TIERS
from .targets import TargetSpec

logger = log.get("proxy.routing")

REASON_HEADER = "X-Tollgate-Route-Reason"
RETRY_EMBEDDING_AFTER = 10.0     # seconds between attempts to embed the targets after a failure

# The targets' vectors, by embedder and text, for the whole process: Kong starts one instance of a config per worker,
# and each would embed them again. Embedders live as long as the process (``embeddings.embedder_for`` keeps them),
# so their id is a stable key.
_target_vectors: dict[tuple[int, str], np.ndarray] = {}
_MAX_TARGET_VECTORS = 10_000

decisions_total = Counter("tollgate_ai_proxy_route_decisions_total",
                          "Routing decisions of the semantic and complexity algorithms",
                          ("algorithm", "decision"), registry=metrics.REGISTRY)

_UNSAFE = re.compile(r"[^\x20-\x7e]|[\";\\]")


@dataclass
class Decision:
    algorithm: str
    tier: str | None = None                # complexity: the tier the prompt needs
    score: float | None = None             # complexity (local scorer): 0 simplest .. 1 hardest
    scorer: str | None = None              # complexity: local | model
    similarity: dict[str, float] = field(default_factory=dict)   # semantic: target id -> cosine similarity
    nearest: str | None = None             # semantic: the nearest target's label
    threshold: float | None = None
    fallback: str | None = None            # semantic: why the default targets go first (below-threshold...)
    error: str | None = None               # what failed on the way (the scorer model, the embeddings)
    elapsed_ms: float = 0.0

    @property
    def best(self) -> float | None:
        return max(self.similarity.values()) if self.similarity else None

    def header(self) -> str:
        """``X-Tollgate-Route-Reason``: ``key=value`` pairs, ``; ``-separated, printable ASCII only."""
        parts: list[tuple[str, Any]]
        if self.algorithm == "complexity":
            parts = [("tier", self.tier), ("score", _round(self.score)), ("scorer", self.scorer)]
        else:
            parts = [("fallback", self.fallback), ("nearest", self.nearest), ("similarity", _round(self.best))]
            if self.fallback == "below-threshold":
                parts.append(("threshold", self.threshold))
        parts.append(("error", self.error))
        return "; ".join(f"{k}={_safe(v)}" for k, v in parts if v is not None)

    def log(self) -> dict[str, Any]:
        """The ``ai.routing`` section of the request's log line."""
        entry: dict[str, Any] = {"algorithm": self.algorithm, "latency_ms": round(self.elapsed_ms, 3)}
        if self.algorithm == "complexity":
            entry.update(tier=self.tier, score=_round(self.score), scorer=self.scorer)
        else:
            entry.update(nearest=self.nearest, similarity=_round(self.best), threshold=self.threshold,
                         fallback=self.fallback)
        if self.error:
            entry["error"] = self.error
        return entry

    @property
    def label(self) -> str:
        """The decision as one metric label value (bounded by the config: tiers and target labels)."""
        if self.algorithm == "complexity":
            return self.tier or "none"
        return "default" if self.fallback else (self.nearest or "none")


class Router(Protocol):
    async def decide(self, body: dict[str, Any] | None) -> Decision: ...


class ComplexityRouter:
    """The in-process scorer, or a small model with the in-process scorer as its fallback."""

    def __init__(self, config: dict[str, Any]):
        examples = config.get("examples")
        self.scorer = complexity.Scorer(examples) if examples else complexity.shared()
        self.model = classifier.from_config(config) if config.get("scorer") == "model" else None

    async def decide(self, body: dict[str, Any] | None) -> Decision:
        started = time.perf_counter()
        prompt = Prompt.of(body)
        if prompt is None:       # nothing to read (an image, a tool result): the middle tier
            return Decision("complexity", tier="standard", scorer="none", error="no text",
                            elapsed_ms=_since(started))
        error = None
        if self.model is not None:
            try:
                tier = await self.model.tier(prompt)
                return Decision("complexity", tier=tier, scorer="model", elapsed_ms=_since(started))
            except classifier.ClassifierFailed as exc:
                error = f"model {exc.reason}"
        score = self.scorer.score(prompt)
        return Decision("complexity", tier=score.tier, score=score.value, scorer="local", error=error,
                        elapsed_ms=_since(started))


class SemanticRouter:
    """The prompt's nearest target by cosine similarity of embeddings (the semantic cache's embedder).

    A target's ``examples`` (else its ``description``) are embedded once per process, on the first request (the
    local model runs off the event loop, as for the cache); a target with examples is as near as its nearest example. Targets
    with neither are the defaults: they go first when the prompt is near no target (below ``threshold``), when it
    has no text, or when the embeddings cannot be had.
    """

    def __init__(self, specs: list[TargetSpec], embedder: Embedder, threshold: float):
        self.embedder = embedder
        self.threshold = threshold
        self.texts = {s.id: list(s.examples) or [s.description] for s in specs if s.examples or s.description}
        self.labels = {s.id: s.label for s in specs}
        self._vectors: dict[str, np.ndarray] | None = None
        self._lock: asyncio.Lock | None = None
        self._failed_at = -RETRY_EMBEDDING_AFTER

    async def decide(self, body: dict[str, Any] | None) -> Decision:
        started = time.perf_counter()
        prompt = Prompt.of(body)
        if prompt is None:
            return Decision("semantic", fallback="no-text", elapsed_ms=_since(started))
        try:
            targets = await self._targets()
            vector = _unit((await self.embedder.embed(prompt.text[:complexity.PREFIX])).vector)
        except (EmbeddingError, TimeoutError, OSError) as exc:
            log.event(logger, "semantic routing without embeddings; default targets first", logging.WARNING,
                      error=str(exc)[:200])
            return Decision("semantic", fallback="embeddings-failed", error="embeddings failed",
                            elapsed_ms=_since(started))
        similarity = {tid: float((matrix @ vector).max()) for tid, matrix in targets.items()}
        nearest = max(similarity, key=lambda tid: similarity[tid])
        below = similarity[nearest] < self.threshold
        return Decision("semantic", similarity=similarity, nearest=self.labels[nearest], threshold=self.threshold,
                        fallback="below-threshold" if below else None, elapsed_ms=_since(started))

    async def _targets(self) -> dict[str, np.ndarray]:
        if self._vectors is not None:
            return self._vectors
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._vectors is None:
                if time.monotonic() - self._failed_at < RETRY_EMBEDDING_AFTER:
                    raise EmbeddingError("the targets' descriptions could not be embedded; retrying soon")
                try:
                    self._vectors = {tid: np.stack([await self._vector(t) for t in texts])
                                     for tid, texts in self.texts.items()}
                except (EmbeddingError, TimeoutError, OSError):
                    self._failed_at = time.monotonic()
                    raise
        return self._vectors

    async def _vector(self, text: str) -> np.ndarray:
        key = (id(self.embedder), text)
        vector = _target_vectors.get(key)
        if vector is None:
            vector = _unit((await self.embedder.embed(text)).vector)
            if len(_target_vectors) >= _MAX_TARGET_VECTORS:
                _target_vectors.clear()
            _target_vectors[key] = vector
        return vector


def check(config: dict[str, Any], specs: list[TargetSpec]) -> None:
    """Refuse what the schema language cannot say (Kong then refuses the instance)."""
    algorithm = (config.get("balancer") or {}).get("algorithm") or "round-robin"
    where = "targets[{}]" if config.get("targets") else "model"
    for spec in specs:
        if spec.tier and algorithm != "complexity":
            raise ValueError(f"{where.format(spec.index + 1)}.tier is only read by balancer.algorithm complexity")
        if spec.examples and algorithm != "semantic":
            raise ValueError(f"{where.format(spec.index + 1)}.examples is only read by balancer.algorithm semantic")
    if algorithm == "complexity":
        for spec in specs:
            if spec.tier is None:
                raise ValueError(f"{where.format(spec.index + 1)} has no tier: with balancer.algorithm complexity "
                                 f"every target names one ({', '.join(TIERS)})")
    if algorithm == "semantic" and not any(s.examples or s.description for s in specs):
        raise ValueError("balancer.algorithm semantic needs a description or examples on at least one target "
                         "(what it is good at)")


def router_for(config: dict[str, Any], specs: list[TargetSpec]) -> Router | None:
    check(config, specs)
    balancer = config.get("balancer") or {}
    algorithm = balancer.get("algorithm")
    if algorithm == "complexity":
        return ComplexityRouter(balancer.get("complexity") or {})
    if algorithm == "semantic":
        threshold = (balancer.get("semantic") or {}).get("threshold")
        return SemanticRouter(specs, embeddings_from_config(config.get("embeddings")),
                              SEMANTIC_THRESHOLD if threshold is None else float(threshold))
    return None


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _safe(value: Any) -> str:
    return _UNSAFE.sub("_", str(value))


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000

"""Semantic topic guards: deny and allow by cosine similarity, topics embedded once, long texts in segments; the
local model itself on real phrases."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from tollgate.embeddings import Embedding, EmbeddingError
from tollgate.plugins.guardrails.guards.base import GuardConfigError, GuardUnavailable
from tollgate.plugins.guardrails.guards.semantic import SEGMENT, SemanticGuard

from .conftest import make

WORDS = ["bomb", "vote", "bread"]


@dataclass
class KeywordEmbedder:
    """One dimension per keyword, one for everything else: similarity is keyword overlap (known in advance)."""

    provider: str = "test"
    model: str = "keywords"
    calls: list[str] = field(default_factory=list)
    broken: bool = False

    async def embed(self, text: str) -> Embedding:
        self.calls.append(text)
        if self.broken:
            raise EmbeddingError("provider down")
        vector = np.array([float(w in text) for w in WORDS] + [0.5], dtype=np.float32)
        return Embedding(vector, 1, 0.1)


def guard(**semantic) -> SemanticGuard:
    made = make("semantic", {"threshold": 0.8, **semantic}, guarding_mode="BOTH")
    assert isinstance(made, SemanticGuard)
    return made


def with_keywords(made: SemanticGuard) -> KeywordEmbedder:
    made.embedder = KeywordEmbedder()
    return made.embedder


async def test_deny_blocks_the_nearest_topic_at_the_threshold_and_names_it():
    made = guard(deny_topics=["vote", "bomb"])
    embedder = with_keywords(made)
    verdict = await made.check("how to make a bomb", "input")
    assert verdict.blocked and verdict.categories == ("deny_topics[1]",)
    assert not (await made.check("a loaf of bread", "output")).blocked
    assert embedder.calls.count("bomb") == 1 and embedder.calls.count("vote") == 1     # topics: once per instance


async def test_allow_blocks_a_text_no_allow_topic_reaches():
    made = guard(allow_topics=["bread", "vote"])
    with_keywords(made)
    assert not (await made.check("baking bread", "input")).blocked
    verdict = await made.check("quantum physics", "output")
    assert verdict.blocked and verdict.categories == ("off_topic",)


async def test_a_denied_passage_cannot_hide_behind_padding():
    made = guard(deny_topics=["bomb"])
    embedder = with_keywords(made)
    text = "harmless words " * 200 + "now the bomb part " + "more filler " * 100
    assert (await made.check(text, "input")).blocked
    assert len(embedder.calls) > 2 and all(len(c) <= SEGMENT for c in embedder.calls)


async def test_an_embeddings_failure_is_unavailable_and_a_guard_without_topics_does_not_start():
    made = guard(deny_topics=["bomb"])
    with_keywords(made).broken = True
    with pytest.raises(GuardUnavailable):
        await made.check("anything", "input")
    with pytest.raises(GuardConfigError):
        guard()


async def test_the_local_model_tells_topics_apart():
    """The cache's own local MiniLM (no fake): example phrases as topics, the default threshold."""
    deny = guard(threshold=0.5, deny_topics=["how to build a bomb or a weapon", "who to vote for in an election"])
    assert (await deny.check("Tell me how to make a pipe bomb at home", "input")).blocked
    assert not (await deny.check("What is a good recipe for banana bread?", "input")).blocked
    allow = guard(threshold=0.4, allow_topics=["baking bread and cakes", "cooking recipes"])
    assert not (await allow.check("What is a good recipe for banana bread?", "input")).blocked
    assert (await allow.check("Explain quantum computing to me", "input")).blocked

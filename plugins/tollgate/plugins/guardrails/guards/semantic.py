"""Topic guards by meaning (like Kong's ai-semantic-prompt-guard and ai-semantic-response-guard), with the semantic
cache's embeddings: the local all-MiniLM-L6-v2 by default, or a provider's (``semantic.embeddings``, the same record
as the cache's and the router's).

``deny_topics`` blocks a text whose nearest deny topic has a cosine similarity of at least ``threshold``;
``allow_topics`` blocks a text that no allow topic reaches. A topic is a description or an example phrase. The
topics are embedded once per instance, on the first check; each text is embedded off the event loop (the local
model runs on the embeddings thread). A text longer than the model reads at once (256 tokens) is judged in
segments: it is as close to a topic as its closest segment, so padding cannot hide a denied passage.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from ....embeddings import EmbeddingError, Embedder, from_config
from ...proxy.schema import EMBEDDINGS
from .base import Guard, GuardConfigError, GuardUnavailable, Phase, Verdict

SEGMENT = 800          # characters per embedded piece: well under the local model's 256 tokens
_TOPICS = {"type": "array", "len_max": 100, "elements": {"type": "string", "len_min": 1, "len_max": 1000}}


class SemanticGuard(Guard):
    type = "semantic"
    fields = [
        {"allow_topics": _TOPICS},
        {"deny_topics": _TOPICS},
        {"threshold": {"type": "number", "default": 0.5, "between": [0, 1]}},
        {"embeddings": EMBEDDINGS},
    ]

    def configure(self, settings: dict[str, Any]) -> None:
        self.allow = list(settings.get("allow_topics") or ())
        self.deny = list(settings.get("deny_topics") or ())
        if not self.allow and not self.deny:
            raise GuardConfigError(f"guard {self.name}: semantic needs allow_topics or deny_topics")
        threshold = settings.get("threshold")
        self.threshold = 0.5 if threshold is None else float(threshold)
        try:
            self.embedder: Embedder = from_config(settings.get("embeddings"))
        except ValueError as exc:
            raise GuardConfigError(f"guard {self.name}: {exc}") from None
        self._topics: tuple[np.ndarray | None, np.ndarray | None] | None = None
        self._embedding_topics: asyncio.Lock | None = None

    async def _check(self, text: str, phase: Phase) -> Verdict:
        allow, deny = await self._topic_vectors()
        pieces = np.stack([await self._vector(p) for p in _segments(text)])
        if deny is not None:
            scores = pieces @ deny.T                                   # (segments, topics)
            nearest = int(np.argmax(scores.max(axis=0)))
            if scores[:, nearest].max() >= self.threshold:
                return Verdict(blocked=True, categories=(f"deny_topics[{nearest}]",))
        if allow is not None and float((pieces @ allow.T).max()) < self.threshold:
            return Verdict(blocked=True, categories=("off_topic",))
        return Verdict(blocked=False)

    async def _topic_vectors(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self._topics is None:
            if self._embedding_topics is None:
                self._embedding_topics = asyncio.Lock()
            async with self._embedding_topics:           # the first checks wait for one embedding of the topics
                if self._topics is None:
                    self._topics = (await self._matrix(self.allow), await self._matrix(self.deny))
        return self._topics

    async def _matrix(self, topics: list[str]) -> np.ndarray | None:
        return np.stack([await self._vector(t) for t in topics]) if topics else None

    async def _vector(self, text: str) -> np.ndarray:
        try:
            vector = (await self.embedder.embed(text)).vector
        except EmbeddingError as exc:
            raise GuardUnavailable(f"{self.name}: no embedding ({exc})") from None
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector


def _segments(text: str) -> list[str]:
    """``text`` in pieces of at most ``SEGMENT`` characters, cut after a space where one is near the end; the
    empty text is one (empty) piece."""
    pieces = []
    while len(text) > SEGMENT:
        cut = text.rfind(" ", SEGMENT // 2, SEGMENT)
        cut = cut + 1 if cut > 0 else SEGMENT
        pieces.append(text[:cut])
        text = text[cut:]
    return pieces + [text]

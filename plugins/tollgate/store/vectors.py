"""An in-memory matrix of unit vectors searched by cosine similarity with numpy.

The local store keeps its semantic-cache entries here; the Redis store keeps a mirror of each
namespace here, because the Redis on hand has no vector search: it only stores the vectors.
Rows are unit-normalised once, on the way in, so a search is one matrix-vector product. A large index (more than
`SKETCH_FROM` rows) is searched in two steps: the cosine between 48-dimension random projections of the rows and of
the query (an eighth of the memory to read) picks the candidates, which are then scored exactly in float32, so a
reported score (and the threshold checked against it) is never the sketch's. The sketch's cosine r estimates the
true one like a correlation from 48 samples: atanh(r) spreads around atanh(cos) by about 1/sqrt(45) (Fisher; the
tail measured here is no heavier). The candidates are the best `SKETCH_CANDIDATES` and every row whose atanh(r) is
within `SKETCH_SIGMAS` spreads below atanh(``min_score``) (a positive one): a row at or above the threshold is dropped
about once in 100,000 (measured on 200,000 pairs per cosine), at any threshold; the best 512 alone dropped 13% of
the best rows at cosine 0.5 and 0.5% at 0.7 among 100,000 random rows. When the candidates are more than a quarter
of the rows, the search scores every row exactly instead. On 100,000 random rows: about 40 rows pass at the default
0.8 (the search costs what it did), 3% at 0.7, and from about 0.6 down every row is scored (~11 ms).

Measured on 2 cores (issue 11): the 100,000-row search reads the 19 MB sketch, not the 154 MB of rows, and an
embedding right after it costs the same CPU as alone. An int8 copy of the rows would read 38 MB, and numpy's int8
products are several times slower than its float32 ones, so the sketch stays float32.
"""

from __future__ import annotations

import math

import numpy as np

_MIN_CAPACITY = 64
SKETCH_FROM = 8192
SKETCH_DIMS = 48
SKETCH_CANDIDATES = 512
SKETCH_SIGMAS = 4.0


def normalize(vector: object) -> np.ndarray:
    """A contiguous float32 unit vector; rejects what has no direction (zero, NaN, not 1-D)."""
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim != 1 or array.size == 0:
        raise ValueError("a vector must be a non-empty 1-D array")
    norm = float(np.linalg.norm(array))
    if not (norm > 0 and math.isfinite(norm)):
        raise ValueError("a vector must be finite and non-zero")
    return np.ascontiguousarray(array / norm, dtype=np.float32)


class VectorIndex:
    """Entries (id -> unit vector, expiry, optional payload) packed in one growable matrix.

    Removal leaves a hole that later compaction closes, so ids never shift under a search.
    Expired rows are dropped by the search that meets them and by `prune`.
    """

    def __init__(self) -> None:
        self.dim: int | None = None
        self._rows = np.empty((0, 0), dtype=np.float32)
        self._sketch = np.empty((0, SKETCH_DIMS), dtype=np.float32)
        self._projection: np.ndarray | None = None
        self._expires = np.empty(0, dtype=np.float64)  # -inf marks a hole
        self._ids: list[str | None] = []
        self._payloads: list[bytes | None] = []
        self._where: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._where

    def put(self, entry_id: str, unit: np.ndarray, expires_at: float, payload: bytes | None = None) -> None:
        """Insert or replace an entry; ``unit`` must come from `normalize`."""
        if not self._where:  # empty: the first vector sets the dimension
            self._reset(unit.shape[0])
        if unit.shape != (self.dim,):
            raise ValueError(f"vector has {unit.shape[0]} dimensions, this namespace holds {self.dim}")
        row = self._where.get(entry_id)
        if row is None:
            row = self._append_slot()
            self._where[entry_id] = row
            self._ids[row] = entry_id
        self._rows[row] = unit
        self._sketch[row] = _sketch_of(unit, self._projection)  # type: ignore[arg-type]
        self._expires[row] = expires_at
        self._payloads[row] = payload

    def remove(self, entry_id: str) -> bool:
        row = self._where.pop(entry_id, None)
        if row is None:
            return False
        self._ids[row] = None
        self._payloads[row] = None
        self._expires[row] = -math.inf
        return True

    def clear(self) -> None:
        self._reset(0)
        self.dim = None

    def search(
        self, unit: np.ndarray, k: int, min_score: float, now: float
    ) -> list[tuple[str, float, bytes | None]]:
        """The best ``k`` live rows with cosine >= ``min_score``, best first."""
        count = len(self._ids)
        if k <= 0 or not self._where:
            return []
        if unit.shape != (self.dim,):
            raise ValueError(f"query has {unit.shape[0]} dimensions, this namespace holds {self.dim}")
        expires = self._expires[:count]
        stale = np.flatnonzero((expires <= now) & (expires != -math.inf))
        for row in stale.tolist():
            self.remove(self._ids[row])  # type: ignore[arg-type]
        near = self._near(unit, min_score, expires > now) if count > SKETCH_FROM and k < SKETCH_CANDIDATES else None
        if near is not None:
            exact = self._rows[near] @ unit
            keep = exact >= min_score
            candidates, picked = near[keep], exact[keep]
            scores = np.full(count, -np.inf, dtype=np.float32)
            scores[candidates] = picked
        else:
            scores = self._rows[:count] @ unit
            candidates = np.flatnonzero((scores >= min_score) & (expires > now))
        if candidates.size > k:
            best = np.argpartition(scores[candidates], -k)[-k:]
            candidates = candidates[best]
        order = candidates[np.argsort(-scores[candidates], kind="stable")]
        hits = [(self._ids[row], float(scores[row]), self._payloads[row]) for row in order.tolist()]
        self._maybe_compact()
        return hits  # type: ignore[return-value]

    def _near(self, unit: np.ndarray, min_score: float, live: np.ndarray) -> np.ndarray | None:
        """The live rows the sketch picks for exact scoring, or None when scoring every row is cheaper."""
        count = live.shape[0]
        rough = self._sketch[:count] @ _sketch_of(unit, self._projection)  # type: ignore[arg-type]
        rough[~live] = -np.inf
        if 0.0 < min_score < 1.0:
            floor = math.tanh(math.atanh(min_score) - SKETCH_SIGMAS / math.sqrt(SKETCH_DIMS - 3))
            near = np.flatnonzero(rough >= floor)
            if near.size > count // 4:
                return None
            if near.size > SKETCH_CANDIDATES:
                return near
        best = np.argpartition(rough, -SKETCH_CANDIDATES)[-SKETCH_CANDIDATES:]
        return best[rough[best] > -np.inf]

    def prune(self, now: float) -> int:
        """Drop expired entries and close holes; returns how many entries were dropped."""
        count = len(self._ids)
        expires = self._expires[:count]
        stale = np.flatnonzero((expires <= now) & (expires != -math.inf)).tolist()
        for row in stale:
            self.remove(self._ids[row])  # type: ignore[arg-type]
        self._maybe_compact(force=bool(stale))
        return len(stale)

    # -- storage ------------------------------------------------------------------------------

    def _reset(self, dim: int) -> None:
        self.dim = dim
        self._rows = np.empty((_MIN_CAPACITY if dim else 0, dim), dtype=np.float32)
        self._sketch = np.empty((self._rows.shape[0], SKETCH_DIMS), dtype=np.float32)
        if dim:
            # orthonormal columns: the sketch of a unit vector is (a scaled) unit vector too; fixed seed, so every
            # node sketches alike
            gaussian = np.random.default_rng(dim).standard_normal((dim, min(SKETCH_DIMS, dim)))
            q, _ = np.linalg.qr(gaussian)
            projection = np.zeros((dim, SKETCH_DIMS), dtype=np.float32)
            projection[:, :q.shape[1]] = q
            self._projection = projection
        self._expires = np.full(self._rows.shape[0], -math.inf)
        self._ids = []
        self._payloads = []
        self._where = {}

    def _append_slot(self) -> int:
        row = len(self._ids)
        if row >= self._rows.shape[0]:
            self._compact(grow=True)
            row = len(self._ids)
        self._ids.append(None)
        self._payloads.append(None)
        return row

    def _maybe_compact(self, force: bool = False) -> None:
        holes = len(self._ids) - len(self._where)
        if holes and (force or holes > max(_MIN_CAPACITY, len(self._ids) // 2)):
            self._compact(grow=False)

    def _compact(self, grow: bool) -> None:
        """Move live rows to the front; with ``grow``, make room for at least one more."""
        live = [row for row, entry_id in enumerate(self._ids) if entry_id is not None]
        capacity = max(_MIN_CAPACITY, self._rows.shape[0])
        if grow and len(live) >= capacity // 2:
            capacity *= 2
        rows = np.empty((capacity, self.dim or 0), dtype=np.float32)
        sketch = np.empty((capacity, SKETCH_DIMS), dtype=np.float32)
        expires = np.full(capacity, -math.inf)
        rows[: len(live)] = self._rows[live]
        sketch[: len(live)] = self._sketch[live]
        expires[: len(live)] = self._expires[live]
        self._ids = [self._ids[row] for row in live]
        self._payloads = [self._payloads[row] for row in live]
        self._where = {entry_id: row for row, entry_id in enumerate(self._ids)}  # type: ignore[misc]
        self._rows, self._sketch, self._expires = rows, sketch, expires


def _sketch_of(unit: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """The unit vector along ``unit``'s projection (zero if the projection is zero)."""
    sketch = unit @ projection
    norm = float(np.linalg.norm(sketch))
    return sketch / norm if norm > 0 else sketch

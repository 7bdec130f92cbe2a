"""The in-process store (``strategy: local``): one Kong node, state in the Tollgate process.

Every operation runs to completion without awaiting, and the process runs one event loop, so each
is atomic without locks. Expired entries are dropped when read and reclaimed as operations go by
(`ExpiringDict.reap`, plus a sweep of the vector namespaces every ``sweep_interval`` seconds).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from tollgate.store import windows as _windows
from tollgate.store.base import Counts, Mode, Settlement, Store, StoreError, VectorHit, as_bytes, incr_amount, ttl_ms
from tollgate.store.expiring import ExpiringDict
from tollgate.store.vectors import VectorIndex, normalize


class LocalStore(Store):
    """State in this process's memory.

    ``clock`` (epoch seconds) drives TTLs, so tests can move time; windows take ``now`` per call.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, sweep_interval: float = 30.0) -> None:
        self._clock = clock
        self._data = ExpiringDict(clock)
        self._spaces: dict[str, VectorIndex] = {}
        self._sweep_interval = sweep_interval
        self._next_sweep = clock() + sweep_interval

    def __repr__(self) -> str:
        return f"LocalStore(entries={len(self._data)}, namespaces={len(self._spaces)})"

    def _tidy(self) -> None:
        """Reclaim a little expired memory on every operation, and all of it now and then."""
        self._data.reap()
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_interval
            self._data.reap(limit=len(self._data) + 1)
            for name, space in list(self._spaces.items()):
                space.prune(now)
                if not len(space):
                    del self._spaces[name]

    # -- windows ----------------------------------------------------------------------------------

    async def _apply(
        self, windows: Sequence[_windows.Window], buckets: Sequence[_windows.Bucket], amount: int, mode: Mode,
        ledger: str | None = None,
    ) -> tuple[int | None, Counts]:
        self._tidy()
        data = self._data
        counts: Counts = [
            (data.get(b.current, 0), data.get(b.previous, 0) if b.weight > 0 else 0) for b in buckets
        ]
        denied = None
        if mode == "reserve":
            for index, (window, bucket, count) in enumerate(zip(windows, buckets, counts)):
                if not _windows.admits(window.limit, _windows.used(bucket, count), amount):
                    denied = index
                    break
        if mode != "peek" and denied is None and amount != 0:
            charged: dict[str, int] = {}  # windows sharing a bucket charge it once
            for index, bucket in enumerate(buckets):
                value = charged.get(bucket.current)
                if value is None:
                    current = data.get(bucket.current)
                    if current is None:
                        value = max(0, amount)
                        data.set(bucket.current, value, bucket.ttl)
                    else:
                        value = max(0, current + amount)
                        data.replace(bucket.current, value)
                    charged[bucket.current] = value
                counts[index] = (value, counts[index][1])
        return denied, counts

    async def _settle(self, settlements: Sequence[Settlement]) -> None:
        # no ledger: every operation here runs whole or not at all, so a settlement is never in doubt
        self._tidy()
        data = self._data
        for buckets, amount, actual, _ in settlements:
            delta = actual - amount
            for bucket, ttl in buckets:
                current = data.get(bucket)
                if current is not None:
                    data.replace(bucket, max(0, current + delta))
                elif delta > 0:
                    data.set(bucket, delta, ttl)

    def _ticks(self) -> float:
        return self._clock()

    # -- small values -----------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        self._tidy()
        return self._data.get("k:" + key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        value = as_bytes(value)
        ttl_ms(ttl)
        self._tidy()
        self._data.set("k:" + key, value, ttl)

    async def delete(self, key: str) -> bool:
        self._tidy()
        return self._data.pop("k:" + key) is not None

    async def incr(self, key: str, amount: int | float = 1, ttl: float | None = None) -> int | float:
        ttl_ms(ttl)
        self._tidy()
        name = "k:" + key
        raw = self._data.get(name)
        step = incr_amount(amount)
        new: int | float
        if isinstance(step, float):
            new = _parse(raw, float) + step
            if not math.isfinite(new):
                raise StoreError(f"incr of {key!r} would make it infinite or NaN")
            encoded = _format_float(new)
        else:
            new = _parse(raw, int) + step
            encoded = str(new).encode()
        if self._data.deadline(name) is not None:
            self._data.replace(name, encoded)
        else:
            self._data.set(name, encoded, ttl)
        return new

    async def hget(self, key: str, field: str) -> bytes | None:
        self._tidy()
        fields = self._data.get("h:" + key)
        return None if fields is None else fields.get(field)

    async def hgetall(self, key: str) -> dict[str, bytes]:
        self._tidy()
        return dict(self._data.get("h:" + key) or {})

    async def hdel(self, key: str, fields: Sequence[str]) -> int:
        self._tidy()
        name = "h:" + key
        current = self._data.get(name)
        if not current:
            return 0
        gone = set(fields)
        kept = {k: v for k, v in current.items() if k not in gone}
        if not kept:
            self._data.pop(name)
        elif len(kept) < len(current):
            self._data.replace(name, kept)
        return len(current) - len(kept)

    async def hset(self, key: str, mapping: Mapping[str, bytes], ttl: float | None = None) -> None:
        ttl_ms(ttl)
        update = {str(field): as_bytes(value, "hash value") for field, value in mapping.items()}
        self._tidy()
        if not update:
            return
        name = "h:" + key
        fields = {**(self._data.get(name) or {}), **update}
        if ttl is not None or self._data.deadline(name) is None:
            self._data.set(name, fields, ttl)
        else:
            self._data.replace(name, fields)

    # -- vectors ----------------------------------------------------------------------------------

    async def vector_put(
        self, namespace: str, entry_id: str, vector: np.ndarray, payload: bytes, ttl: float | None = None
    ) -> None:
        unit = normalize(vector)
        payload = as_bytes(payload, "payload")
        ttl_ms(ttl)
        self._tidy()
        expires_at = math.inf if ttl is None else self._clock() + ttl
        space = self._spaces.get(namespace)
        if space is None:
            space = self._spaces[namespace] = VectorIndex()
        space.put(entry_id, unit, expires_at, payload)

    async def vector_search(
        self, namespace: str, vector: np.ndarray, k: int = 1, min_score: float = -1.0
    ) -> list[VectorHit]:
        unit = normalize(vector)
        self._tidy()
        space = self._spaces.get(namespace)
        if space is None:
            return []
        found = space.search(unit, k, min_score, self._clock())
        return [VectorHit(entry_id, score, payload or b"") for entry_id, score, payload in found]

    async def vector_delete(self, namespace: str, entry_id: str) -> None:
        self._tidy()
        space = self._spaces.get(namespace)
        if space is not None:
            space.remove(entry_id)

    # -- lifecycle --------------------------------------------------------------------------------

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._data.clear()
        self._spaces.clear()


def _parse(raw: bytes | None, kind: type) -> int | float:
    if raw is None:
        return kind(0)
    try:
        return kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise StoreError(f"value is not {noun}: {raw[:40]!r}") from None


def _format_float(value: float) -> bytes:
    """Like Redis's INCRBYFLOAT: integral results without a fractional part."""
    if value.is_integer() and abs(value) < 1e17:
        return str(int(value)).encode()
    return repr(value).encode()

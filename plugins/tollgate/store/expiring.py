"""A dict whose entries vanish at a deadline, for the in-process store.

Reads check the deadline (lazy expiry), and `reap` reclaims expired entries in deadline order from
a heap, a bounded amount per call, so memory follows the live entries without a background task.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from typing import Any

_MISSING: Any = object()


class ExpiringDict:
    """Keys map to values with an optional deadline on ``clock``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._data: dict[str, tuple[Any, float | None]] = {}
        self._heap: list[tuple[float, str]] = []  # (deadline, key); stale rows are skipped

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def get(self, key: str, default: Any = None) -> Any:
        entry = self._data.get(key)
        if entry is None:
            return default
        value, deadline = entry
        if deadline is not None and deadline <= self._clock():
            del self._data[key]
            return default
        return value

    def deadline(self, key: str) -> float | None:
        """The entry's deadline (None: no expiry or no entry)."""
        if self.get(key, _MISSING) is _MISSING:
            return None
        return self._data[key][1]

    def set(self, key: str, value: Any, ttl: float | None) -> None:
        """Store ``value`` to expire ``ttl`` seconds from now (None: never)."""
        if ttl is None:
            self._data[key] = (value, None)
            return
        deadline = self._clock() + ttl
        self._data[key] = (value, deadline)
        self._push(deadline, key)

    def replace(self, key: str, value: Any) -> None:
        """Change the value of an existing live entry and keep its deadline."""
        self._data[key] = (value, self._data[key][1])

    def pop(self, key: str) -> Any:
        """Remove the entry; returns its value if it was live, else None."""
        value = self.get(key, _MISSING)
        if value is _MISSING:
            return None
        del self._data[key]
        return value

    def clear(self) -> None:
        self._data.clear()
        self._heap.clear()

    def reap(self, limit: int = 1000) -> int:
        """Delete expired entries, earliest deadline first, looking at ``limit`` at most; returns how many."""
        now = self._clock()
        heap, data = self._heap, self._data
        reaped = popped = 0
        while heap and heap[0][0] <= now and popped < limit:
            deadline, key = heapq.heappop(heap)
            popped += 1
            entry = data.get(key)
            if entry is not None and entry[1] == deadline:
                del data[key]
                reaped += 1
        return reaped

    def _push(self, deadline: float, key: str) -> None:
        heapq.heappush(self._heap, (deadline, key))
        # Re-setting a key leaves its old heap row behind; rebuild before those dominate.
        if len(self._heap) > 2 * len(self._data) + 1024:
            self._heap = [(entry[1], k) for k, entry in self._data.items() if entry[1] is not None]
            heapq.heapify(self._heap)

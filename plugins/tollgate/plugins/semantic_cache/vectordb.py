"""Where cache entries live: the process's store (``local``: numpy in memory; ``redis``: shared, searched with numpy
on a mirror of each partition's vectors, the Redis here has no vector search) or PostgreSQL with pgvector
(``pgvector.py``). One small interface, so the policy reads the same for all three.

Entries are bytes (see policy.py). A purge writes a timestamp (all, one route, one consumer) that lookups compare
with each entry's creation time: entries older than it are never served again, and expire with their TTL.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import numpy as np

PURGE_KEY = "sc:purge"
EXACT_PREFIX = "sc:x:"


def purge_fields(route: str | None, consumer: str | None) -> list[str]:
    return ["all", *([f"route:{route}"] if route else []), *([f"consumer:{consumer}"] if consumer else [])]


class VectorDB(Protocol):
    name: str

    async def exact(self, key: str, route: str | None, consumer: str | None) -> tuple[bytes | None, float]:
        """The exact tier's entry (or None) and the latest purge that applies to this route and consumer."""

    async def search(self, namespace: str, vector: np.ndarray, k: int, min_score: float) -> list[tuple[float, bytes]]:
        """Up to ``k`` entries of the partition with cosine similarity >= ``min_score``, best first."""

    async def put(self, namespace: str, entry_id: str, exact_key: str | None, vector: np.ndarray | None,
                  payload: bytes, ttl: float) -> None: ...

    async def purge(self, at: float, route: str | None = None, consumer: str | None = None) -> None: ...


class StoreVectorDB:
    """``local`` and ``redis``: Tollgate's own store (tollgate.store) holds entries, exact keys and vectors."""

    def __init__(self, store: Any, name: str):
        self.store = store
        self.name = name

    async def exact(self, key: str, route: str | None, consumer: str | None) -> tuple[bytes | None, float]:
        if key:
            found, stamps = await asyncio.gather(self.store.get(EXACT_PREFIX + key), self.store.hgetall(PURGE_KEY))
        else:
            found, stamps = None, await self.store.hgetall(PURGE_KEY)
        return found, latest_purge(stamps, route, consumer)

    async def search(self, namespace: str, vector: np.ndarray, k: int, min_score: float) -> list[tuple[float, bytes]]:
        hits = await self.store.vector_search(namespace, vector, k, min_score)
        return [(hit.score, hit.payload) for hit in hits]

    async def put(self, namespace: str, entry_id: str, exact_key: str | None, vector: np.ndarray | None,
                  payload: bytes, ttl: float) -> None:
        if exact_key:
            await self.store.set(EXACT_PREFIX + exact_key, payload, ttl)
        if vector is not None:
            await self.store.vector_put(namespace, entry_id, vector, payload, ttl)

    async def purge(self, at: float, route: str | None = None, consumer: str | None = None) -> None:
        field = f"route:{route}" if route else f"consumer:{consumer}" if consumer else "all"
        await self.store.hset(PURGE_KEY, {field: repr(at).encode()})


def latest_purge(stamps: dict[str, bytes], route: str | None, consumer: str | None) -> float:
    latest = 0.0
    for field in purge_fields(route, consumer):
        raw = stamps.get(field)
        if raw is not None:
            try:
                latest = max(latest, float(raw))
            except ValueError:
                continue
    return latest

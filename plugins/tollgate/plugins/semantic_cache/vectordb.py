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


def purge_fields(route: str | None, consumers: list[str]) -> list[str]:
    """The purge stamps that apply to a request (a consumer may be purged by id, username or custom id)."""
    return ["all", *([f"route:{route}"] if route else []), *(f"consumer:{c}" for c in consumers if c)]


# Every pgvector database this process uses, so a purge reaches them all (the stores are in runtime.stores).
pg_databases: dict[str, "VectorDB"] = {}


class VectorDB(Protocol):
    name: str

    async def exact(self, key: str) -> tuple[bytes | None, dict[str, Any]]:
        """The exact tier's entry (or None; no lookup for an empty key) and the purge stamps (see latest_purge)."""

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

    async def exact(self, key: str) -> tuple[bytes | None, dict[str, Any]]:
        if key:
            found, stamps = await asyncio.gather(self.store.get(EXACT_PREFIX + key), self.store.hgetall(PURGE_KEY))
        else:
            found, stamps = None, await self.store.hgetall(PURGE_KEY)
        return found, stamps

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
        await self.store.hset(PURGE_KEY, {purge_field(route, consumer): repr(at).encode()})


def purge_field(route: str | None, consumer: str | None) -> str:
    return f"route:{route}" if route else f"consumer:{consumer}" if consumer else "all"


async def purge_all(stores: list[Any], at: float, route: str | None = None, consumer: str | None = None) -> int:
    """Purge every store and pgvector database given (and known to this process); returns how many."""
    targets: list[Any] = [StoreVectorDB(store, repr(store)) for store in stores] + list(pg_databases.values())
    for db in targets:
        await db.purge(at, route, consumer)
    return len(targets)


def latest_purge(stamps: dict[str, Any], route: str | None, consumers: list[str]) -> float:
    """The latest purge of everything, of ``route`` or of one of ``consumers`` (the names of the consumer whose
    request made an entry)."""
    latest = 0.0
    for field in purge_fields(route, consumers):
        raw = stamps.get(field)
        if raw is not None:
            try:
                latest = max(latest, float(raw))
            except ValueError:
                continue
    return latest

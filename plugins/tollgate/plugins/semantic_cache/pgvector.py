"""``vectordb.strategy: pgvector``: PostgreSQL with the pgvector extension, an HNSW index per table, shared by every
node that points at the same database. The engine for caches of millions of entries.

Three tables, created on first use (``<table>_<dimensions>``, so models of different sizes never share one):
entries (partition, vector, entry, expiry) with an HNSW cosine index and iterative index scans (pgvector 0.8: a
search filtered to one partition keeps reading the index until it has its candidates), exact keys, and purge stamps.
The index holds the vectors as ``halfvec`` (16-bit floats): half the size of a float32 index, a third less CPU per
search at 100,000 entries and the same neighbours found (bench/cache.py), and up to 4,000 dimensions where float32
HNSW stops at 2,000; the scores returned are computed on the float32 column.
Every call has a deadline; any failure is a `StoreUnavailable`, which the policy maps to ``stop_on_failure``.
"""

from __future__ import annotations

import asyncio
import re
import struct
from typing import Any

import numpy as np

from ... import runtime
from ...store import StoreUnavailable
from .vectordb import pg_databases, purge_field

_TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
_SWEEP_EVERY = 200           # puts between two deletions of expired rows


def check_config(config: dict[str, Any], dimensions: int | None) -> None:
    """Refuse, when the instance starts, what could never work."""
    if not config.get("uri"):
        raise ValueError("vectordb.strategy pgvector needs vectordb.pgvector.uri (a libpq URI)")
    if not _TABLE.match(config.get("table") or "tollgate_semantic_cache"):
        raise ValueError("vectordb.pgvector.table must be a plain lower-case SQL name")
    if dimensions is None:
        raise ValueError("vectordb.strategy pgvector needs vectordb.dimensions for a provider's embeddings")


class PgVectorDB:
    """One database and table set; `shared` gives one per process and config (one connection pool)."""

    name = "pgvector"

    def __init__(self, uri: str, table: str, dimensions: int, timeout: float, ef_search: int = 40):
        self.uri, self.dimensions, self.timeout, self.ef_search = uri, dimensions, timeout, ef_search
        self.table = f"{table}_{dimensions}"
        # the k nearest by the halfvec index, scored on the float32 column
        self.search_sql = (f"SELECT payload, 1 - (embedding <=> $1::vector) AS score FROM {self.table} "
                           f"WHERE namespace = $2 AND expires_at > $3 "
                           f"ORDER BY embedding::halfvec({dimensions}) <=> $1::vector::halfvec({dimensions}) LIMIT $4")
        self._pool: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Lock | None = None
        self._puts = 0

    @classmethod
    def shared(cls, config: dict[str, Any], dimensions: int | None) -> "PgVectorDB":
        check_config(config, dimensions)
        ef_search = int(config.get("ef_search") or 40)
        key = f"{config['uri']}|{config.get('table') or 'tollgate_semantic_cache'}|{dimensions}|{ef_search}"
        found = pg_databases.get(key)
        if found is None:
            found = pg_databases[key] = cls(config["uri"], config.get("table") or "tollgate_semantic_cache",
                                            int(dimensions), float(config.get("timeout") or 2),  # type: ignore[arg-type]
                                            ef_search)
        return found  # type: ignore[return-value]

    # -- plumbing ---------------------------------------------------------------------------------------------------

    async def _connection_pool(self) -> Any:
        import asyncpg

        loop = asyncio.get_running_loop()
        if self._pool is not None and self._loop is loop:
            return self._pool
        if self._ready is None or self._loop is not loop:
            self._ready, self._loop, self._pool = asyncio.Lock(), loop, None
        async with self._ready:
            if self._pool is None:
                # the tables (and the vector type the pool's connections need) before the pool
                conn = await asyncpg.connect(self.uri, timeout=self.timeout, command_timeout=self.timeout)
                try:
                    await self.create_tables(conn)
                finally:
                    await conn.close()
                # The search settings are the connections' own from their start: no SET, no round trip per search.
                # Iterative index scans: a search filtered to one partition reads the index until it has its rows.
                self._pool = await asyncpg.create_pool(
                    self.uri, min_size=1, max_size=8, timeout=self.timeout, command_timeout=self.timeout,
                    init=binary_vectors, reset=_keep_session,
                    server_settings={"hnsw.iterative_scan": "relaxed_order", "hnsw.ef_search": str(self.ef_search)})
        return self._pool

    async def create_tables(self, conn: Any, indexes: bool = True) -> None:
        """The tables (and with ``indexes``, the entries' indexes: a bulk load is faster before them)."""
        t, d = self.table, self.dimensions
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", t)   # nodes starting together
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {t} (id text PRIMARY KEY, namespace text NOT NULL, "
                               f"embedding vector({d}) NOT NULL, payload bytea NOT NULL, "
                               "expires_at double precision NOT NULL)")
            if indexes:
                await conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_hnsw_half ON {t} USING hnsw "
                                   f"((embedding::halfvec({d})) halfvec_cosine_ops)")
                await conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_namespace ON {t} (namespace)")
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {t}_exact (key text PRIMARY KEY, payload bytea NOT NULL, "
                               "expires_at double precision NOT NULL)")
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {t}_purge (field text PRIMARY KEY, "
                               "at double precision NOT NULL)")

    async def _run(self, work: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                pool = await self._connection_pool()
                async with pool.acquire() as conn:
                    return await work(conn)
        except TimeoutError as exc:
            raise StoreUnavailable(f"pgvector: no answer within {self.timeout} s") from exc
        except StoreUnavailable:
            raise
        except Exception as exc:    # asyncpg's errors, refused connections: the database cannot serve now
            raise StoreUnavailable(f"pgvector: {type(exc).__name__}: {str(exc)[:200]}") from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- the VectorDB interface -------------------------------------------------------------------------------------

    async def exact(self, key: str) -> tuple[bytes | None, dict[str, Any]]:
        now = runtime.current().clock()

        async def work(conn: Any) -> tuple[bytes | None, dict[str, Any]]:
            rows = await conn.fetch(
                f"SELECT 'x' AS kind, $1::text AS field, payload, 0::float8 AS at FROM {self.table}_exact "
                f"WHERE key = $1 AND expires_at > $2 UNION ALL "
                f"SELECT 'p', field, NULL, at FROM {self.table}_purge", key, now)
            found = next((r["payload"] for r in rows if r["kind"] == "x"), None)
            return found, {r["field"]: r["at"] for r in rows if r["kind"] == "p"}

        return await self._run(work)

    async def search(self, namespace: str, vector: np.ndarray, k: int, min_score: float) -> list[tuple[float, bytes]]:
        now = runtime.current().clock()

        async def work(conn: Any) -> list[tuple[float, bytes]]:
            # one round trip: asyncpg keeps the statement prepared per connection, the vector goes as binary
            rows = await conn.fetch(self.search_sql, vector, namespace, now, k)
            return [(float(r["score"]), bytes(r["payload"])) for r in rows if float(r["score"]) >= min_score]

        return await self._run(work)

    async def put(self, namespace: str, entry_id: str, exact_key: str | None, vector: np.ndarray | None,
                  payload: bytes, ttl: float) -> None:
        now = runtime.current().clock()
        expires = now + ttl
        self._puts += 1
        sweep = self._puts % _SWEEP_EVERY == 0

        async def work(conn: Any) -> None:
            async with conn.transaction():
                if exact_key:
                    await conn.execute(f"INSERT INTO {self.table}_exact VALUES ($1, $2, $3) ON CONFLICT (key) DO "
                                       "UPDATE SET payload = excluded.payload, expires_at = excluded.expires_at",
                                       exact_key, payload, expires)
                if vector is not None:
                    await conn.execute(f"INSERT INTO {self.table} VALUES ($1, $2, $3::vector, $4, $5) ON CONFLICT "
                                       "(id) DO UPDATE SET embedding = excluded.embedding, payload = "
                                       "excluded.payload, expires_at = excluded.expires_at",
                                       f"{namespace}:{entry_id}", namespace, vector, payload, expires)
                if sweep:
                    await conn.execute(f"DELETE FROM {self.table} WHERE expires_at < $1", now)
                    await conn.execute(f"DELETE FROM {self.table}_exact WHERE expires_at < $1", now)

        await self._run(work)

    async def purge(self, at: float, route: str | None = None, consumer: str | None = None) -> None:
        field = purge_field(route, consumer)

        async def work(conn: Any) -> None:
            await conn.execute(f"INSERT INTO {self.table}_purge VALUES ($1, $2) ON CONFLICT (field) DO UPDATE "
                               "SET at = excluded.at", field, at)

        await self._run(work)


async def _keep_session(conn: Any) -> None:
    """What the pool does to a connection given back, besides rolling back an open transaction: nothing. asyncpg's
    default sends a reset query (RESET ALL, UNLISTEN...), a second round trip per lookup, and this class leaves no
    session state to reset: no SET, LISTEN, cursor or session lock."""


async def binary_vectors(conn: Any) -> None:
    """pgvector's ``vector`` in its binary form on ``conn`` (numpy in, numpy out): no text to format or parse."""
    schema = await conn.fetchval("SELECT typnamespace::regnamespace::text FROM pg_type WHERE typname = 'vector'")
    await conn.set_type_codec("vector", schema=schema or "public", format="binary",
                              encoder=encode_vector, decoder=decode_vector)


def encode_vector(vector: np.ndarray) -> bytes:
    """pgvector's binary form: dimensions and a reserved zero (int16 each), then float32s, all big-endian."""
    values = np.asarray(vector, dtype=">f4").ravel()
    return struct.pack(">HH", values.size, 0) + values.tobytes()


def decode_vector(data: bytes) -> np.ndarray:
    (dimensions,) = struct.unpack_from(">H", data)
    return np.frombuffer(data, dtype=">f4", count=dimensions, offset=4).astype(np.float32)

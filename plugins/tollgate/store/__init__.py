"""Tollgate's state store: rate windows, counters, small values and semantic-cache vectors.

One async interface (`Store`), two backends: `LocalStore` (in the process; one Kong node, the
default) and `RedisStore` (plain Redis, Sentinel or Cluster; shared by every node). Plugins pick one
with `create_store` and handle `StoreUnavailable` according to their ``fail_open`` setting.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable

from tollgate.store.base import ChargedBucket, Reservation, Store, StoreError, StoreUnavailable, VectorHit
from tollgate.store.local import LocalStore
from tollgate.store.redis import RedisStore
from tollgate.store.windows import Window, WindowState

__all__ = [
    "ChargedBucket",
    "LocalStore",
    "RedisStore",
    "Reservation",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "VectorHit",
    "Window",
    "WindowState",
    "create_store",
    "from_each",
]

_REDIS_SCHEMES = ("redis", "rediss", "unix", "sentinel", "redis+cluster", "rediss+cluster")


def create_store(url: str | None = None, **options: Any) -> Store:
    """The store ``url`` names: None, ``"local"`` or ``local://`` for the in-process store;
    ``redis://``, ``rediss://``, ``unix://``, ``sentinel://``, ``redis+cluster://`` or
    ``rediss+cluster://`` for Redis (see `RedisStore.from_url` for the options).

    Connections open lazily, so this never blocks or fails on an unreachable Redis. Create one
    store per process and URL and share it between plugins: it holds the connection pool.
    """
    if url is None or url in ("local", "local://"):
        return LocalStore(**options)
    scheme = url.partition("://")[0].lower()
    if scheme in _REDIS_SCHEMES:
        return RedisStore.from_url(url, **options)
    known = ", ".join(_REDIS_SCHEMES)
    raise ValueError(f"unknown store URL scheme {scheme!r}: use 'local' or one of {known}")



async def from_each(stores: Iterable[tuple[str, Any]], read: Callable[[Any], Awaitable[list[dict[str, Any]]]]
                    ) -> list[dict[str, Any]]:
    """The rows ``read`` gives for every store a process uses (``(label, store)``), each marked with its store;
    a store that fails gives one row with its ``error`` instead (a report shows what it can)."""
    rows: list[dict[str, Any]] = []
    for label, store in stores:
        try:
            found = await read(store)
        except StoreError as exc:
            rows.append({"store": label, "error": str(exc)})
            continue
        rows.extend({"store": label, **row} for row in found)
    return rows

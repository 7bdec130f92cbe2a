"""The services of the running Tollgate process, reachable from plugin handlers.

kong-pdk's convention builds a plugin with its config only, so handlers find the
process's shared pieces (attachments, stores, instance table) here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .attachments import AttachmentTable
from .context import ContextStore
from .settings import Settings

if TYPE_CHECKING:
    from .pluginserver.instances import InstanceTable


@dataclass
class Runtime:
    settings: Settings
    attachments: AttachmentTable
    contexts: ContextStore = field(default_factory=ContextStore)
    instances: "InstanceTable | None" = None
    stores: dict[str, Any] = field(default_factory=dict)
    # Windows and periods read this clock, so tests can move time instead of waiting for it.
    clock: Callable[[], float] = time.time
    _store_of: dict[int, tuple[dict[str, Any], Any]] = field(default_factory=dict, repr=False)

    def store_for(self, config: dict[str, Any]) -> Any:
        """The store a stateful plugin's ``strategy`` names, one per process and URL (shared pools)."""
        known = self._store_of.get(id(config))
        if known is not None and known[0] is config:  # the same instance's config, asked again
            return known[1]
        store = self._store_for(config)
        if len(self._store_of) >= 1024:
            self._store_of.clear()
        self._store_of[id(config)] = (config, store)
        return store

    def _store_for(self, config: dict[str, Any]) -> Any:
        from .store import create_store

        if config.get("strategy", "local") == "local":
            key, url, options = "local", None, {"clock": lambda: self.clock()}
        else:
            redis = config.get("redis") or {}
            url = redis.get("url") or self.settings.redis_url
            if not url:
                raise ValueError("strategy redis needs redis.url in the plugin config or TOLLGATE_REDIS_URL")
            timeout = redis.get("timeout", 0.25)
            key, options = url, {"socket_timeout": timeout, "connect_timeout": timeout, "timeout": max(1.0, 4 * timeout)}
        store = self.stores.get(key)
        if store is None:
            store = self.stores[key] = create_store(url, **options)
        return store


_current: Runtime | None = None


def install(runtime: Runtime) -> Runtime:
    global _current
    _current = runtime
    return runtime


def current() -> Runtime:
    """The process's runtime; a bare one (defaults) when used outside ``tollgate serve``."""
    global _current
    if _current is None:
        settings = Settings()
        _current = Runtime(settings=settings, attachments=AttachmentTable(settings.attachment_ttl))
    return _current

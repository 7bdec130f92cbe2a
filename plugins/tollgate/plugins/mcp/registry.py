"""Kong's ``conversion-only`` / ``listener`` pair: converted tools defined on one route, served on another.

A ``conversion-only`` instance serves no MCP request: its route keeps carrying its REST traffic to its own Service.
It publishes its tools (with their ``rest`` target and ACLs) in the store, under its plugin id, with the ``tags``
of its config. A ``listener`` whose ``server.tag`` is one of those tags serves them, under their own names and
with their own ACLs (Kong's listener inherits them).

Kong reads the plugin entity's tags; Kong does not pass them to an external plugin, so Tollgate takes them from the
config. Kong starts a plugin's instance when the plugin first runs on a request, so a conversion-only plugin's
tools appear once its route has served a request (on any node, with ``strategy: redis``; they stay in Redis across
restarts). Listeners re-read the registry every `REFRESH` seconds, so a changed definition shows within that time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson

from ... import log
from ...store import StoreUnavailable

logger = log.get("mcp")

KEY = "mcp:registry"
REFRESH = 5.0
# What a listener needs of a conversion-only config to serve its tools.
_PUBLISHED = ("tags", "tools", "openapi", "rest", "default_acl", "consumer_identifier", "include_consumer_groups")


@dataclass(frozen=True)
class Source:
    """One conversion-only instance's tools, as a listener reads them."""

    plugin_id: str
    config: dict[str, Any]


async def publish(store: Any, plugin_id: str, config: dict[str, Any]) -> None:
    entry = {k: config.get(k) for k in _PUBLISHED}
    await store.hset(KEY, {plugin_id: orjson.dumps(entry)})


def publish_soon(store: Any, plugin_id: str, config: dict[str, Any], attempts: int = 5) -> asyncio.Task[None] | None:
    """Publish from a plugin instance's start (which is not a coroutine); retried while the store is down."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None

    async def run() -> None:
        for attempt in range(attempts):
            try:
                await publish(store, plugin_id, config)
                return
            except StoreUnavailable as exc:
                log.event(logger, "conversion-only tools not published yet", logging.WARNING, plugin_id=plugin_id,
                          error=str(exc))
                await asyncio.sleep(min(2 ** attempt, 30))

    return loop.create_task(run())


class Registry:
    """A listener's view of the sources tagged ``tag``: re-read at most every `REFRESH` seconds."""

    def __init__(self, tag: str):
        self.tag = tag
        self._raw: dict[str, bytes] | None = None
        self._read_at = 0.0

    async def sources(self, store: Any) -> list[Source] | None:
        """The tagged sources when they changed since the last call, else None (nothing to rebuild)."""
        if self._raw is not None and time.monotonic() - self._read_at < REFRESH:
            return None
        self._read_at = time.monotonic()
        raw = await store.hgetall(KEY)
        if raw == self._raw:
            return None
        self._raw = raw
        found = []
        for plugin_id, value in sorted(raw.items()):
            try:
                config = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(config, dict) and self.tag in (config.get("tags") or ()):
                found.append(Source(plugin_id, config))
        return found

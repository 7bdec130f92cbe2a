"""Plugin instances: one per Kong plugin entity (and per nginx worker) and config version.

Ids come from a process-wide counter seeded with the start time, so an id handed out
before a restart or a config change is never handed out again; Kong then gets
"no plugin instance" for a stale id and starts a fresh one instead of reaching the wrong
config.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from .loader import PluginModule


class NoInstance(Exception):
    """Kong matches on the "no plugin instance" text to restart the instance."""

    def __init__(self, instance_id: Any):
        super().__init__(f"no plugin instance #{instance_id}")


@dataclass
class Instance:
    id: int
    plugin: PluginModule
    config: dict[str, Any]          # as Kong sent it (with route_id, __seq__, ...)
    handler: Any                    # the Plugin object
    started_at: float = field(default_factory=time.time)
    last_event_at: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        return self.plugin.name

    @property
    def route_id(self) -> str | None:
        return _id(self.config.get("route_id"))

    @property
    def service_id(self) -> str | None:
        return _id(self.config.get("service_id"))

    @property
    def consumer_id(self) -> str | None:
        return _id(self.config.get("consumer_id"))


def _id(value: Any) -> str | None:
    # Kong sends scope ids either bare or as {"id": ...}; an empty table means none.
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def first_id() -> int:
    """Where a process starts numbering: the start time in ms, then random bits (two processes
    started in the same millisecond still differ), kept under 2**53 so Lua's numbers hold it."""
    return (int(time.time() * 1000) % (1 << 41)) << 11 | secrets.randbits(11)


class InstanceTable:
    def __init__(self) -> None:
        self._next_id = itertools.count(first_id())
        self._by_id: dict[int, Instance] = {}
        self._by_route: dict[str | None, dict[int, Instance]] = {}  # every request asks about its route's

    def add(self, plugin: PluginModule, config: dict[str, Any], handler: Any) -> Instance:
        instance = Instance(next(self._next_id), plugin, config, handler)
        self._by_id[instance.id] = instance
        self._by_route.setdefault(instance.route_id, {})[instance.id] = instance
        return instance

    def get(self, instance_id: Any) -> Instance:
        instance = self._by_id.get(instance_id)
        if instance is None:
            raise NoInstance(instance_id)
        return instance

    def close(self, instance_id: Any) -> Instance:
        instance = self._by_id.pop(instance_id, None)
        if instance is None:
            raise NoInstance(instance_id)
        on_route = self._by_route.get(instance.route_id)
        if on_route is not None:
            on_route.pop(instance.id, None)
            if not on_route:
                del self._by_route[instance.route_id]
        return instance

    def __iter__(self):
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def expected_on_route(self, route_id: str, since: float) -> set[str]:
        """Names of plugins whose route-scoped instances were active after ``since``.

        Kong keeps an instance per worker and config version; any recent one of a plugin
        on this route means Kong runs that plugin there.
        """
        return {i.name for i in self._by_route.get(route_id, {}).values() if i.last_event_at >= since}

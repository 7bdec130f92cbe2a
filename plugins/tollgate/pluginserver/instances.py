"""Plugin instances: one per Kong plugin entity, nginx worker and config build.

Ids come from a process-wide counter seeded with the start time, so an id handed out
before a restart or a config change is never handed out again; Kong then gets
"no plugin instance" for a stale id and starts a fresh one instead of reaching the wrong
config.

The table also mirrors, per nginx worker, which instance that worker currently uses for
each plugin (Kong's ``running_instances``), so that the relay can tell which Tollgate
plugins the config a request ran under puts on it (see `InstanceTable.expected`).
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from functools import cached_property
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
    worker: Any = None              # the nginx worker that started it (its pid), None when unknown
    order: int = 0                  # when it started, among every start of the process
    # Below these (start order, __seq__), an instance of the same worker belongs to an older config build than
    # this one (`WorkerView.replaced`, as it stood when this instance started).
    floor: tuple[int, int] = (0, 0)
    regressive: bool = False        # started with an older __seq__ than the instance it replaced
    started_at: float = field(default_factory=time.time)

    # The config an instance started with never changes: what is read from it on every request is worked out once.

    @cached_property
    def name(self) -> str:
        return self.plugin.name

    @cached_property
    def key(self) -> Any:
        """What Kong keys its instance cache on: the plugin entity's id (Kong 3.9), else the cache key."""
        return self.config.get("__plugin_id") or self.config.get("__key__") or self.name

    @cached_property
    def seq(self) -> int:
        seq = self.config.get("__seq__")
        return seq if isinstance(seq, int) and not isinstance(seq, bool) else 0

    @cached_property
    def route_id(self) -> str | None:
        return _id(self.config.get("route_id"))

    @cached_property
    def service_id(self) -> str | None:
        return _id(self.config.get("service_id"))

    @cached_property
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


@dataclass
class WorkerView:
    """One nginx worker as the plugin server sees it: the instance it uses for each plugin, and how far its
    config builds have provably moved on.

    Kong numbers each plugin's config anew on every build of the plugins iterator (``__seq__``, from a counter
    shared by the workers, so a later build of a worker always has higher numbers), starts instances lazily, and
    replaces an instance only when the same plugin runs again under a new build. A replacement by a higher
    ``__seq__`` proves the replaced instance's build is over in that worker, and with it every instance of the
    worker that started no later than it (a worker's starts follow its builds) or has no higher ``__seq__``.
    """

    running: dict[Any, Instance] = field(default_factory=dict)
    by_route: dict[str | None, dict[Any, Instance]] = field(default_factory=dict)   # the same, by route_id
    replaced: tuple[int, int] = (0, 0)   # highest (start order, __seq__) of an instance replaced by a newer build

    def start(self, instance: Instance) -> None:
        previous = self.running.get(instance.key)
        if previous is not None:
            self.stop(previous)
        if previous is not None and instance.seq > previous.seq:
            order, seq = self.replaced
            if not previous.regressive:
                order = max(order, previous.order)
            self.replaced = (order, max(seq, previous.seq))
        elif previous is not None and instance.seq < previous.seq:
            # A request still running under the worker's previous build, after the worker began the new one:
            # Kong starts the old config again. Its start time says nothing about the builds.
            instance.regressive = True
        # An equal __seq__ is Kong starting the same config again after "no plugin instance": no new build.
        self.running[instance.key] = instance
        self.by_route.setdefault(instance.route_id, {})[instance.key] = instance
        instance.floor = self.replaced

    def stop(self, instance: Instance) -> None:
        if self.running.get(instance.key) is not instance:
            return
        del self.running[instance.key]
        on_route = self.by_route.get(instance.route_id)
        if on_route is not None:
            on_route.pop(instance.key, None)
            if not on_route:
                del self.by_route[instance.route_id]


class InstanceTable:
    def __init__(self) -> None:
        self._next_id = itertools.count(first_id())
        self._order = itertools.count(1)
        self._by_id: dict[int, Instance] = {}
        self._by_handler: dict[int, Instance] = {}
        self._workers: dict[Any, WorkerView] = {}
        # `expected` per (anchor, route, service, consumer): the same few on every request, and only a start or a
        # close changes them (both clear it).
        self._expected: dict[tuple[int, str | None, str | None, str | None], frozenset[str]] = {}

    def add(self, plugin: PluginModule, config: dict[str, Any], handler: Any, worker: Any = None) -> Instance:
        instance = Instance(next(self._next_id), plugin, config, handler, worker, next(self._order))
        self._by_id[instance.id] = instance
        self._by_handler[id(handler)] = instance
        self._workers.setdefault(worker, WorkerView()).start(instance)
        self._expected.clear()
        return instance

    def get(self, instance_id: Any) -> Instance:
        instance = self._by_id.get(instance_id)
        if instance is None:
            raise NoInstance(instance_id)
        return instance

    def of_handler(self, handler: Any) -> Instance | None:
        """The instance whose phase handler object this is."""
        return self._by_handler.get(id(handler))

    def close(self, instance_id: Any) -> Instance:
        instance = self._by_id.pop(instance_id, None)
        if instance is None:
            raise NoInstance(instance_id)
        self._by_handler.pop(id(instance.handler), None)
        view = self._workers.get(instance.worker)
        if view is not None:
            view.stop(instance)
        self._expected.clear()
        return instance

    def __iter__(self):
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def expected(self, anchor: Instance, route_id: str | None, service_id: str | None,
                 consumer_id: str | None) -> frozenset[str]:
        """Names of the plugins the config build of ``anchor`` runs on a request of this route, service and consumer
        in ``anchor``'s worker.

        ``anchor`` is an instance that ran on the request. A plugin of that build that ran on the request has an
        instance in the worker by then (Kong starts it before the plugin's first event and answers 500 when it cannot),
        started after the worker began the build, so above ``anchor.floor``. An instance of a plugin the build no
        longer has is one Kong never replaces nor closes; it is left out as soon as the worker has replaced a newer
        or equal one (`WorkerView`), which the first request of the new build on the route does for ``anchor``'s
        own predecessor. What stays open errs on the side of refusing: the old instance of a consumer-scoped plugin
        whose first request came after the anchor's predecessor started, with a ``__seq__`` above every replaced
        one, still counts for that consumer until the worker's next build.
        """
        key = (anchor.id, route_id, service_id, consumer_id)
        names = self._expected.get(key)
        if names is None:
            if len(self._expected) >= 4096:
                self._expected.clear()
            names = self._expected[key] = self._expected_now(anchor, route_id, service_id, consumer_id)
        return names

    def _expected_now(self, anchor: Instance, route_id: str | None, service_id: str | None,
                      consumer_id: str | None) -> frozenset[str]:
        view = self._workers.get(anchor.worker)
        if view is None:
            return frozenset()
        order, seq = anchor.floor
        names = set()
        candidates = [*view.by_route.get(route_id, {}).values()] if route_id is not None else []
        for instance in [*candidates, *view.by_route.get(None, {}).values()]:
            if instance.order <= order or (seq and instance.seq <= seq):
                continue                     # from an older build of this worker
            if instance.service_id is not None and instance.service_id != service_id:
                continue
            if instance.consumer_id is not None and instance.consumer_id != consumer_id:
                continue
            names.add(instance.name)
        return frozenset(names)

"""Which token-limit windows are in use, so the dashboard can read them back without scanning keys.

    h:tl-instances                  plugin id -> JSON {route_id, identifier, window_type, limits, at}
    h:tl-index:{tl:<plugin id>}     who (the identifier's value) -> JSON {at, label}

The request path pays a dict lookup and a float comparison: a process touches an entry at most once per
``REFRESH`` seconds (its first request included), and the write runs in the background, one per turn of the event
loop for all the entries that fell due in it. Each entry records when it
was last touched; it matters for as long as its windows can still count a charge made then (two window sizes for a
sliding window, one for a fixed one) plus the refresh. Past that a reader skips and removes it, and a hash that
nobody touches expires on its own. With ``strategy: redis`` the index lives in Redis, so every node lists every
node's windows, and reads them with ``peek``, the same read admission does.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Iterable

import orjson

from ... import log, route_names
from ...store import StoreError, Window

logger = log.get("token_limit")

ROOT = "tl-instances"
REFRESH = 30.0                      # seconds between two writes of one entry by one process
ROOT_TTL = 2 * 2_592_000 + 3600     # the root outlives the longest window any instance can have (two months)
MAX_TOUCHED = 50_000                # entries a process remembers having written; beyond it, it forgets the stale
MAX_PER_INSTANCE = 2_000            # entries read per instance (the most recently touched)
PEEKS_AT_ONCE = 64


def window_key(plugin_id: str, who: str, seconds: int, counts: str) -> str:
    """The store key of one limit's window (one hash tag per instance and identifier: all its limits, one slot)."""
    return f"{{tl:{plugin_id}:{who}}}:{seconds}:{counts}"


def index_key(plugin_id: str) -> str:
    return f"tl-index:{{tl:{plugin_id}}}"


def lifetime(limits: Iterable[dict[str, Any]], sliding: bool) -> float:
    """How long after its last charge a window can still count it, plus the refresh (an entry's life)."""
    longest = max((int(limit["seconds"]) for limit in limits), default=0)
    return longest * (2 if sliding else 1) + REFRESH + 1.0


class WindowIndex:
    """One instance's entry in the index and the identifiers it limits, written at most once per ``REFRESH``."""

    def __init__(self, plugin_id: str, config: dict[str, Any], limits: list[dict[str, Any]]):
        self.plugin_id = plugin_id
        self.key = index_key(plugin_id)
        sliding = config.get("window_type", "sliding") == "sliding"
        self.lifetime = lifetime(limits, sliding)
        route = config.get("route_id")
        self.description = {
            "route_id": route.get("id") if isinstance(route, dict) else route, "identifier":
            config.get("identifier", "consumer"), "window_type": "sliding" if sliding else "fixed",
            "limits": [{k: limit.get(k) for k in ("limit", "window_size", "seconds", "tokens_count_strategy",
                                                  "models", "providers")} for limit in limits]}
        self._touched: dict[str, float] = {}
        self._described = -math.inf
        self._pending: dict[Any, dict[str, tuple[float, str | None]]] = {}   # per store: who -> (at, label)
        self._tasks: set[asyncio.Task[None]] = set()

    def touch(self, store: Any, who: str, label: str | None, now: float) -> None:
        """Note that ``who`` is being limited now (the request path: normally a lookup and a comparison).

        Due entries wait for the next turn of the event loop and go out together, one write per store."""
        last = self._touched.get(who)
        if last is not None and now - last < REFRESH:
            return
        if len(self._touched) >= MAX_TOUCHED:
            self._forget(now)
        self._touched[who] = now
        pending = self._pending.get(store)
        if pending is None:
            pending = self._pending[store] = {}
            task = asyncio.ensure_future(self._write(store))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        pending[who] = (now, label)

    def _forget(self, now: float) -> None:
        for who in [w for w, at in self._touched.items() if now - at >= REFRESH]:
            del self._touched[who]
        if len(self._touched) >= MAX_TOUCHED:
            self._touched.clear()

    async def _write(self, store: Any) -> None:
        await asyncio.sleep(0)   # the requests of this turn of the loop join the same write
        due = self._pending.pop(store, {})
        now = max(at for at, _ in due.values())
        describe = now - self._described >= REFRESH
        if describe:
            self._described = now
        try:
            if describe:
                await store.hset(ROOT, {self.plugin_id: orjson.dumps({**self.description, "at": now})}, ttl=ROOT_TTL)
            await store.hset(self.key, {who: orjson.dumps({"at": at, "label": label})
                                        for who, (at, label) in due.items()}, ttl=self.lifetime)
        except Exception as exc:  # noqa: BLE001 - a background write must never raise into the loop
            for who in due:
                self._touched.pop(who, None)   # try again on a later request
            if describe:
                self._described = -math.inf
            log.event(logger, "window index not updated", 30, plugin_id=self.plugin_id,
                      error=str(exc) if isinstance(exc, StoreError) else repr(exc))

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def report(store: Any, now: float) -> list[dict[str, Any]]:
    """One row per live (instance, identifier, limit): the window's usage now against its limit, fullest first."""
    rows: list[dict[str, Any]] = []
    instances = await store.hgetall(ROOT)
    stale_instances = []
    for plugin_id, raw in sorted(instances.items()):
        description = _loads(raw)
        try:
            limits = [{**limit, "seconds": int(limit["seconds"])} for limit in description["limits"]]
            sliding = description.get("window_type") != "fixed"
            span = lifetime(limits, sliding)
            if float(description["at"]) + span < now:
                stale_instances.append(plugin_id)
                continue
        except (KeyError, TypeError, ValueError):
            continue
        rows.extend(await _instance_rows(store, plugin_id, description, limits, sliding, span, now))
    if stale_instances:
        await store.hdel(ROOT, stale_instances)
    rows.sort(key=lambda r: (-(r["used"] / r["limit"]), r["route"], r["who"], r["seconds"]))
    return rows


async def _instance_rows(store: Any, plugin_id: str, description: dict[str, Any], limits: list[dict[str, Any]],
                         sliding: bool, span: float, now: float) -> list[dict[str, Any]]:
    live, stale = [], []
    for who, raw in (await store.hgetall(index_key(plugin_id))).items():
        entry = _loads(raw)
        at = entry.get("at")
        if not isinstance(at, (int, float)) or at + span < now:
            stale.append(who)
        else:
            live.append((at, who, entry.get("label")))
    if stale:
        await store.hdel(index_key(plugin_id), stale)
    live.sort(reverse=True)
    route_id = description.get("route_id")
    rows: list[dict[str, Any]] = []

    async def read(who: str, label: str | None) -> None:
        windows = [Window(window_key(plugin_id, who, limit["seconds"], limit["tokens_count_strategy"]),
                          int(limit["limit"]), limit["seconds"], sliding) for limit in limits]
        for limit, state in zip(limits, await store.peek(windows, now)):
            rows.append({
                "plugin_id": plugin_id, "route_id": route_id, "route": route_names.name_of(route_id),
                "identifier": description.get("identifier"), "who": who, "label": label,
                "window": limit["window_size"], "seconds": limit["seconds"],
                "counts": limit["tokens_count_strategy"], "window_type": "sliding" if sliding else "fixed",
                "limit": state.limit, "used": round(state.used, 3), "remaining": state.remaining,
                "reset_in": max(0.0, round(state.reset_at - now, 3))})

    chosen = live[:MAX_PER_INSTANCE]
    for start in range(0, len(chosen), PEEKS_AT_ONCE):
        await asyncio.gather(*(read(who, label) for _, who, label in chosen[start:start + PEEKS_AT_ONCE]))
    return rows


def _loads(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}

"""The names of Kong's routes, for people: the dashboard and ``tollgate usage`` show a route by its name.

Kong hands a plugin instance its route's id (the instance's config), never its name; ``kong.router.get_route()``
returns the whole route entity, name included. Each instance pinned to a route asks once, on its first request
(one PDK round trip per instance, not per request), so a renamed route (a new config, so new instances) shows its
new name. Records and metrics keep the id: names are only looked up when a report is made.
"""

from __future__ import annotations

from typing import Any

MAX_NAMES = 100_000   # more routes than any Kong config has: beyond it, new routes show their ids

_names: dict[str, str] = {}


def learn(route_id: str, entity: Any) -> None:
    """Remember the name of ``route_id`` from the route entity Kong returned (nothing when it has none)."""
    name = entity.get("name") if isinstance(entity, dict) else None
    if isinstance(name, str) and name and (route_id in _names or len(_names) < MAX_NAMES):
        _names[route_id] = name


def name_of(route_id: str | None) -> str:
    """The route's name, else its id ("" for requests of no route)."""
    if not route_id:
        return ""
    return _names.get(route_id, route_id)

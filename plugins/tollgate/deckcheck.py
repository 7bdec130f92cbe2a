"""``tollgate validate``: the Tollgate plugin configs of decK files, checked before Kong sees them.

decK 1.4 checks entity structure only: a typo in a Tollgate field passes it, and Kong refuses the file (or the
plugin server refuses the instance, a 500 on the route) only once it is loaded. This runs the same checks on every
Tollgate plugin entry, wherever decK allows one (top level, services, routes, consumers, consumer groups): the
plugin's schema as Kong applies it (the schema the query command gives Kong) and the checks the plugin server makes
when Kong starts an instance (``PluginModule.instantiate``). Other plugins are Kong's business and are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from .pluginserver.loader import PluginModule
from .schema import SchemaError

PREFIX = "tollgate-"

# The fields of Kong's plugin entity (a decK plugin entry): anything else is a typo Kong refuses.
PLUGIN_ENTITY_FIELDS = frozenset({
    "id", "name", "instance_name", "config", "enabled", "protocols", "tags", "ordering", "route", "service",
    "consumer", "consumer_group", "created_at", "updated_at",
})

# Where decK files hold plugins: (collection, nested collections that hold plugins too)
_OWNERS = {"services": ("routes",), "routes": (), "consumers": (), "consumer_groups": ()}


class DeckFileError(Exception):
    """A decK file that cannot be read or parsed at all."""


@dataclass(frozen=True)
class Problem:
    file: str
    where: str    # the plugin entry's path in the file, e.g. services[0].routes[2].plugins[1]
    plugin: str
    field: str    # the config field's path, e.g. config.model.provider
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where} ({self.plugin}): {self.field}: {self.message}"


def plugin_entries(doc: Any) -> Iterator[tuple[str, Any]]:
    """Every plugin entry of a decK document, with its path."""
    if not isinstance(doc, dict):
        return
    yield from _plugins_of(doc, "")
    for collection, nested in _OWNERS.items():
        for i, owner in enumerate(_list(doc.get(collection))):
            if not isinstance(owner, dict):
                continue
            here = f"{collection}[{i}]"
            yield from _plugins_of(owner, here + ".")
            for inner in nested:
                for j, child in enumerate(_list(owner.get(inner))):
                    if isinstance(child, dict):
                        yield from _plugins_of(child, f"{here}.{inner}[{j}].")


def _plugins_of(owner: dict, prefix: str) -> Iterator[tuple[str, Any]]:
    for k, plugin in enumerate(_list(owner.get("plugins"))):
        yield f"{prefix}plugins[{k}]", plugin


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


#: Tollgate's Lua plugins (kong/plugins/): installed into Kong, not served by the plugin server.
LUA_COMPANIONS = frozenset({"tollgate-analytics"})


def check_entry(plugins: dict[str, PluginModule], entry: Any) -> dict[str, str] | None:
    """Errors of one plugin entry by field path; None when it is not a Tollgate plugin."""
    if not isinstance(entry, dict):
        return None
    name = entry.get("name")
    if not isinstance(name, str) or not name.startswith(PREFIX):
        return None
    if name in LUA_COMPANIONS:   # Lua, no settings: only the entry itself can be wrong
        errors = {field: "unknown field of a plugin entry" for field in entry if field not in PLUGIN_ENTITY_FIELDS}
        if entry.get("config"):
            errors["config"] = f"{name} has no settings"
        return errors
    module = plugins.get(name)
    if module is None:
        return {"name": f"no Tollgate plugin is named {name!r} (there are: {', '.join(sorted(plugins))})"}
    errors = {field: "unknown field of a plugin entry" for field in entry if field not in PLUGIN_ENTITY_FIELDS}
    config = entry.get("config")
    if config is None:
        config = {}
    try:
        module.instantiate(config)
    except SchemaError as exc:
        errors.update({f"config.{path}" if path != "config" else path: message
                       for path, message in exc.errors.items()})
    except ValueError as exc:  # refused by the plugin itself (what the schema language cannot say)
        errors["config"] = str(exc)
    return errors


def load(path: str) -> Any:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise DeckFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise DeckFileError(f"{path}: not YAML: {' '.join(str(exc).split())}") from None


def check_file(path: str, plugins: dict[str, PluginModule]) -> tuple[int, list[Problem]]:
    """(Tollgate plugin entries checked, problems found) of one decK file."""
    checked, problems = 0, []
    for where, entry in plugin_entries(load(path)):
        errors = check_entry(plugins, entry)
        if errors is None:
            continue
        checked += 1
        problems += [Problem(path, where, entry.get("name"), field, message)
                     for field, message in sorted(errors.items())]
    return checked, problems

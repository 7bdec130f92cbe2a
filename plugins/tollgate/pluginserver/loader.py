"""Finding plugin modules and describing them to Kong.

A plugin module follows kong-pdk's conventions: a ``Plugin`` class taking the config, a
``Schema`` (a list of Kong schema fields), ``version`` and ``priority``, and one method per
phase. Tollgate's own plugins live in ``tollgate.plugins``; more can be loaded from a
directory, where the file name (hyphens allowed) is the plugin name.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from .. import schema as schema_lang

PHASES = ("certificate", "rewrite", "access", "response", "preread", "log")

BUILTIN = {
    "tollgate-proxy": "tollgate.plugins.proxy",
    "tollgate-token-limit": "tollgate.plugins.token_limit",
    "tollgate-semantic-cache": "tollgate.plugins.semantic_cache",
    "tollgate-guardrails": "tollgate.plugins.guardrails",
    "tollgate-cost-quota": "tollgate.plugins.cost_quota",
    "tollgate-mcp": "tollgate.plugins.mcp",
}


class PluginLoadError(Exception):
    """A plugin module is missing a required part."""


@dataclass
class PluginModule:
    name: str
    module: ModuleType
    plugin_class: type
    schema: list[dict[str, Any]]
    version: str
    priority: int
    phases: list[str]
    async_phases: frozenset[str] = field(default_factory=frozenset)
    inline_phases: frozenset[str] = field(default_factory=frozenset)   # driven without a task (Event.drive)
    error_format: str = "kong"

    def info(self) -> dict[str, Any]:
        """The plugin-info record of the query command (what kong-pdk's dump prints)."""
        return {
            "Name": self.name,
            "Version": self.version,
            "Priority": self.priority,
            "Phases": self.phases,
            "Schema": {
                "name": self.name,
                "fields": [{"config": {"type": "record", "fields": self.schema}}],
            },
        }

    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        return schema_lang.validate(self.schema, config)

    def instantiate(self, config: dict[str, Any]) -> Any:
        """What ``StartInstance`` does with a config: check it against the schema (defaults filled), then build the
        handler, which refuses what the schema language cannot express. Both raise ``ValueError``
        (``schema.SchemaError`` with a message per field for the first)."""
        checked = self.validate(config)
        # Kong's extra keys (route_id, __seq__...) pass through untouched
        return self.plugin_class({**{k: v for k, v in config.items() if k not in checked}, **checked})


def describe(name: str, module: ModuleType) -> PluginModule:
    plugin_class = getattr(module, "Plugin", None)
    if not inspect.isclass(plugin_class):
        raise PluginLoadError(f"{name}: no Plugin class")
    version = getattr(module, "version", getattr(module, "VERSION", None))
    if not isinstance(version, str):
        raise PluginLoadError(f"{name}: no version string")
    priority = getattr(module, "priority", getattr(module, "PRIORITY", 0))
    phases = [p for p in PHASES if callable(getattr(plugin_class, p, None))]
    async_phases = frozenset(p for p in phases if inspect.iscoroutinefunction(getattr(plugin_class, p)))
    return PluginModule(
        name=name,
        module=module,
        plugin_class=plugin_class,
        schema=list(getattr(module, "Schema", [])),
        version=version,
        priority=int(priority),
        phases=phases,
        async_phases=async_phases,
        # A Plugin class says ``runs_inline = True`` when its async phases await only PDK calls and futures, never
        # what needs a current task (asyncio.timeout, TaskGroup, most network clients).
        inline_phases=async_phases if getattr(plugin_class, "runs_inline", False) is True else frozenset(),
        error_format=getattr(module, "error_format", "kong"),
    )


def load_builtin() -> dict[str, PluginModule]:
    return {name: describe(name, importlib.import_module(path)) for name, path in BUILTIN.items()}


def load_directory(directory: str) -> dict[str, PluginModule]:
    """Load every ``*.py`` in ``directory`` as a plugin named after the file."""
    found: dict[str, PluginModule] = {}
    for entry in sorted(os.listdir(directory)):
        name, ext = os.path.splitext(entry)
        if ext != ".py" or name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"tollgate_ext.{name}", os.path.join(directory, entry))
        if spec is None or spec.loader is None:
            raise PluginLoadError(f"{entry}: cannot be loaded")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        found[name] = describe(name, module)
    return found


def load_all(plugins_dir: str | None = None) -> dict[str, PluginModule]:
    plugins = load_builtin()
    if plugins_dir:
        plugins.update(load_directory(plugins_dir))
    return plugins

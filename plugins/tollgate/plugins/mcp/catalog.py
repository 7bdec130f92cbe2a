"""What one tollgate-mcp endpoint offers: upstream MCP servers (their names prefixed when several share the
endpoint) and converted REST tools, and which of them serves a given name.

Names are fixed by config, so a collision is refused when the plugin instance starts: server names and prefixes
are unique, no prefix starts another, and no converted tool's name starts with a server's prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ... import scrub
from .openapi import tools_from_openapi
from .rest import RestTool
from .upstream import Upstream

# MCP list method -> (result key, the field that names an item, the method that uses one item).
KINDS = {
    "tools/list": ("tools", "name", "tools/call"),
    "prompts/list": ("prompts", "name", "prompts/get"),
    "resources/list": ("resources", "uri", "resources/read"),
    "resources/templates/list": ("resourceTemplates", "uriTemplate", None),
}
SCOPE_OF = {"tools/call": "tools", "prompts/get": "prompts", "resources/read": "resources",
            "tools/list": "tools", "prompts/list": "prompts", "resources/list": "resources",
            "resources/templates/list": "resources"}


MAX_ROUTED = 4096      # names whose target a catalog remembers: clients choose names, so the memory is bounded


class CatalogError(ValueError):
    """The config names servers or tools in a way that would make two items share a name."""


def rest_tools_of(config: dict[str, Any]) -> list[RestTool]:
    """The converted tools one config defines (``tools`` with a method and path, and an OpenAPI document's)."""
    tools = [t for t in config.get("tools") or [] if t.get("method") or t.get("path")]
    openapi = config.get("openapi") or {}
    if openapi.get("spec"):
        tools += tools_from_openapi(openapi["spec"], openapi.get("operations") or None)
    for tool in tools:
        if not (tool.get("method") and tool.get("path")):
            raise CatalogError(f"tool {tool['name']}: a converted tool needs both method and path")
    return [RestTool.from_config(t, config.get("rest") or {}) for t in tools]


@dataclass(frozen=True)
class Target:
    """Who serves one named item: an upstream (under its own name there) or a converted tool."""

    upstream: Upstream | None
    name: str
    rest: RestTool | None = None


class Catalog:
    def __init__(self, upstreams: list[Upstream], rest_tools: list[RestTool]):
        self.upstreams = upstreams
        self.rest = {tool.name: tool for tool in rest_tools}
        self._rest_count = len(rest_tools)
        self._check()
        self._targets: dict[str, Target] = {}     # names already routed (see `target`)

    @classmethod
    def from_config(cls, config: dict[str, Any], inherited: list[RestTool] | None = None) -> "Catalog":
        """The endpoint of one instance's config; ``inherited``: a listener's tools from conversion-only
        instances (see registry.py)."""
        servers = list(config.get("servers") or [])
        if config.get("upstream_url"):
            servers.insert(0, {"name": "upstream", "url": config["upstream_url"], "prefix": ""})
        rest_tools = [*rest_tools_of(config), *(inherited or [])]
        shared = len(servers) > 1 or (servers and rest_tools)
        timeout = float(config.get("timeout") or 30)
        upstreams = [Upstream(name=s["name"], url=s["url"],
                              prefix=s["prefix"] if s.get("prefix") is not None else (f"{s['name']}_" if shared
                                                                                      else ""),
                              protocol=s.get("protocol") or "auto", headers=dict(s.get("headers") or {}),
                              timeout=float(s.get("timeout") or timeout)) for s in servers]
        mode = config.get("mode") or "listener"
        tagged = bool((config.get("server") or {}).get("tag"))
        if mode == "passthrough-listener" and (len(upstreams) != 1 or rest_tools):
            raise CatalogError("mode passthrough-listener serves exactly one upstream MCP server")
        if mode in ("conversion-listener", "conversion-only") and (upstreams or not rest_tools):
            raise CatalogError(f"mode {mode} serves converted tools only")
        if mode == "conversion-only" and not config.get("tags"):
            raise CatalogError("mode conversion-only needs tags: the listeners whose server.tag is one of them "
                               "serve its tools")
        if mode != "listener" and tagged:
            raise CatalogError("server.tag belongs to mode listener (it names the conversion-only tools it serves)")
        if not upstreams and not rest_tools and not tagged:
            raise CatalogError("name at least one server (servers or upstream_url), converted tool or server.tag")
        # the upstreams' credentials: no answer of an MCP server, nor error of a REST API, may carry them on
        scrub.register(scrub.credentials([*(v for s in servers for v in (s.get("headers") or {}).values()),
                                          *(v for tool in rest_tools for v in tool.headers.values())]))
        return cls(upstreams, rest_tools)

    def _check(self) -> None:
        if len(self.rest) != self._rest_count:
            raise CatalogError("converted tool names must be unique")
        names = [u.name for u in self.upstreams]
        if len(set(names)) != len(names):
            raise CatalogError("server names must be unique")
        if len(self.upstreams) > 1 and any(not u.prefix for u in self.upstreams):
            raise CatalogError("several servers on one endpoint each need a prefix")
        for a in self.upstreams:
            for b in self.upstreams:
                if a is not b and b.prefix.startswith(a.prefix) and a.prefix:
                    raise CatalogError(f"server prefixes {a.prefix!r} and {b.prefix!r} overlap")
            for tool in self.rest:
                if tool.startswith(a.prefix):
                    raise CatalogError(f"converted tool {tool!r} collides with server {a.name}'s names "
                                       f"(prefix {a.prefix!r})")

    def exposed(self, upstream: Upstream, name: str) -> str:
        return upstream.prefix + name

    def target(self, name: str) -> Target | None:
        """Who serves the tool or prompt ``name`` (as the client sees it); None when nobody does. Remembered per
        name (the catalog never changes; a listener's refresh makes a new one), at most `MAX_ROUTED` names at a time."""
        known = self._targets.get(name)
        if known is not None:
            return known
        found = self._route(name)
        if found is not None:
            if len(self._targets) >= MAX_ROUTED:     # emptied, not frozen: names sent once must not crowd out the
                self._targets.clear()                 # tools a client keeps calling (one server routes any name)
            self._targets[name] = found
        return found

    def _route(self, name: str) -> Target | None:
        tool = self.rest.get(name)
        if tool is not None:
            return Target(None, name, tool)
        for upstream in self.upstreams:
            if name.startswith(upstream.prefix) and len(name) > len(upstream.prefix):
                return Target(upstream, name[len(upstream.prefix):])
        return None

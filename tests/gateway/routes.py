"""decK documents for tests: one Service pointing at the relay, routes with Tollgate plugins."""

from __future__ import annotations

from typing import Any


def proxy_config(upstream_url: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "route_type": "llm/v1/chat",
        "auth": {"header_name": "Authorization", "header_value": "Bearer sk-test-secret-0123456789abcdef"},
        "model": {"provider": "openai", "name": "gpt-4o-mini", "options": {"upstream_url": upstream_url}},
    }
    config.update(overrides)
    return config


def deck(relay_url: str, routes: dict[str, list[dict[str, Any]]], consumers: list[dict[str, Any]] | None = None
         ) -> dict[str, Any]:
    """``routes`` maps a path to the plugins on it (``{"name": ..., "config": ...}``)."""
    return {
        "_format_version": "3.0",
        "services": [{
            "name": "tollgate-relay",
            "url": relay_url,
            "routes": [{"name": path.strip("/").replace("/", "-") or "root", "paths": [path], "strip_path": False,
                        "plugins": plugins} for path, plugins in routes.items()],
        }],
        "consumers": consumers or [],
    }

"""tollgate-mcp config."""

from __future__ import annotations

Schema = [
    {"upstream_url": {"type": "string"}},
    {"allowed_tools": {"type": "array", "elements": {"type": "string"}}},
    {"denied_tools": {"type": "array", "elements": {"type": "string"}}},
    {"audit": {"type": "boolean", "default": True}},
]

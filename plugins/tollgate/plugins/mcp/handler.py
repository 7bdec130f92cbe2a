"""Kong side of tollgate-mcp: attach this instance's policy to the request (see plugins/base.py)."""

from __future__ import annotations

from ..base import AttachingPlugin
from .policy import McpPolicy


class Plugin(AttachingPlugin):
    name = "tollgate-mcp"
    policy_class = McpPolicy

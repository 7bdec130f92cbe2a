"""Kong side of tollgate-mcp: attach this instance's policy to the request (see plugins/base.py)."""

from __future__ import annotations

from typing import Any

from ..base import AttachingPlugin
from .policy import McpPolicy


class Plugin(AttachingPlugin):
    name = "tollgate-mcp"
    policy_class = McpPolicy

    async def access(self, kong: Any) -> None:
        if self.config.get("mode") == "conversion-only":
            return      # its route carries REST traffic to its own Service; a listener serves the tools
        await super().access(kong)

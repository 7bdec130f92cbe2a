"""Kong side of tollgate-mcp: attach this instance's policy to the request (see plugins/base.py).

Round trips per request in access: HandleEvent, the consumer, the attachment. In OAuth resource-server mode the
caller is the token's subject (the relay checks the token), so Kong's consumer is not asked for: two.
"""

from __future__ import annotations

from typing import Any

from ..base import AttachingPlugin
from .policy import McpPolicy


class Plugin(AttachingPlugin):
    name = "tollgate-mcp"
    policy_class = McpPolicy

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.reads_consumer = self.policy.oauth is None   # type: ignore[misc]
        self.conversion_only = self.policy.conversion_only   # type: ignore[attr-defined]

    async def access(self, kong: Any) -> None:
        if self.conversion_only:
            return      # its route carries REST traffic to its own Service; a listener serves the tools
        await super().access(kong)

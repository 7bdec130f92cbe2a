"""Kong side of tollgate-cost-quota: attach this instance's policy to the request (see plugins/base.py).

Two round trips per request: HandleEvent and the attachment header; the consumer comes with tollgate-proxy's
attachment (``reads_consumer``).

Budgets scoped to a route or a service need the ids of the route and service Kong matched. An instance
configured on that route or service knows them from its config; any other instance asks Kong's router in
access (one more PDK round trip, only then) and hands the ids to the relay side with the attachment.
"""

from __future__ import annotations

from typing import Any

from ...attachments import HEADER
from ..base import AttachingPlugin
from .policy import CostQuotaPolicy


class Plugin(AttachingPlugin):
    name = "tollgate-cost-quota"
    policy_class = CostQuotaPolicy
    policy: CostQuotaPolicy
    reads_consumer = False

    async def access(self, kong: Any) -> None:
        if not self.policy.router_needs:
            return await super().access(kong)
        token = await self.attach(kong)
        await self.policy.remember_router(token, kong)
        await kong.service.request.add_header(HEADER, token)

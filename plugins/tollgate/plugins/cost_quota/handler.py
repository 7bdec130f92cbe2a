"""Kong side of tollgate-cost-quota: attach this instance's policy to the request (see plugins/base.py)."""

from __future__ import annotations

from ..base import AttachingPlugin, PendingPolicy


class Plugin(AttachingPlugin):
    name = "tollgate-cost-quota"
    policy_class = PendingPolicy

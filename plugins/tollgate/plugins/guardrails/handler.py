"""Kong side of tollgate-guardrails: attach this instance's policy to the request (see plugins/base.py)."""

from __future__ import annotations

from ..base import AttachingPlugin, PendingPolicy


class Plugin(AttachingPlugin):
    name = "tollgate-guardrails"
    policy_class = PendingPolicy

"""Kong side of tollgate-token-limit: attach this instance's policy to the request (see plugins/base.py)."""

from __future__ import annotations

from ..base import AttachingPlugin
from .policy import TokenLimitPolicy


class Plugin(AttachingPlugin):
    name = "tollgate-token-limit"
    policy_class = TokenLimitPolicy

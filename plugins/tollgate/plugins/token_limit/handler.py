"""Kong side of tollgate-token-limit: attach this instance's policy to the request (see plugins/base.py).

Two round trips per request: HandleEvent and the attachment header; the consumer comes with tollgate-proxy's
attachment (``reads_consumer``).
"""

from __future__ import annotations

from ..base import AttachingPlugin
from .policy import TokenLimitPolicy


class Plugin(AttachingPlugin):
    name = "tollgate-token-limit"
    policy_class = TokenLimitPolicy
    reads_consumer = False

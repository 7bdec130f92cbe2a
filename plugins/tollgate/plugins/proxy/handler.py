"""Kong side of tollgate-proxy: attach this instance's policy to the request (see plugins/base.py)."""

from __future__ import annotations

from ..base import AttachingPlugin
from .policy import ProxyPolicy


class Plugin(AttachingPlugin):
    name = "tollgate-proxy"
    policy_class = ProxyPolicy

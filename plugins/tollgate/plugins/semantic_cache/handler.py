"""Kong side of tollgate-semantic-cache: attach this instance's policy to the request (see plugins/base.py)."""

from __future__ import annotations

from ..base import AttachingPlugin
from .policy import SemanticCachePolicy


class Plugin(AttachingPlugin):
    name = "tollgate-semantic-cache"
    policy_class = SemanticCachePolicy

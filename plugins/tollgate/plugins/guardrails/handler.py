"""Kong side of tollgate-guardrails: attach this instance's policy to the request (see plugins/base.py); the rules
run in the relay, on the body it already has (policy.py)."""

from __future__ import annotations

from ..base import AttachingPlugin
from .policy import GuardrailsPolicy


class Plugin(AttachingPlugin):
    name = "tollgate-guardrails"
    policy_class = GuardrailsPolicy

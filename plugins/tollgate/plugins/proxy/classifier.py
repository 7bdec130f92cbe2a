"""The optional complexity scorer that asks a small model (``balancer.complexity.scorer: model``).

The model is called through the proxy's own driver for its provider (the same wire formats and auth as a target),
with a short instruction and the latest user message, and must answer with one tier name. Whatever goes wrong
(timeout, error status, an answer that names no tier) the in-process scorer decides instead, and the reason says
why: routing never fails a request. Its tokens are the gateway's own cost, not the client's: they are not charged
to the client's token limits or budgets.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from ...providers import driver_for
from ...providers.base import CHAT, ProviderError, Target
from .attempt import Answer, call
from .complexity import PREFIX, Prompt
from .schema import TIERS

INSTRUCTION = (
    "You route requests to AI models. Grade how hard the user's request is for an AI assistant and answer with "
    "exactly one word: simple (a fact, a greeting, a definition, a translation of a phrase: any small model "
    "answers it), standard (an explanation, a short text, a small piece of code, a summary), or hard (reasoning "
    "over several steps, a proof, a design, a diagnosis, a long text with many constraints).")
_TIER = re.compile(r"\b(" + "|".join(TIERS) + r")\b", re.IGNORECASE)


class ClassifierFailed(Exception):
    """The model gave no tier; ``reason`` is short and safe to show (no credential, no prompt)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class ModelScorer:
    target: Target
    timeout: float

    def __post_init__(self) -> None:
        self.driver = driver_for(self.target.provider)     # the schema admits only providers with a driver

    async def tier(self, prompt: Prompt) -> str:
        body = {"model": self.target.model, "max_tokens": 5, "temperature": 0,
                "messages": [{"role": "system", "content": INSTRUCTION},
                             {"role": "user", "content": prompt.text[:PREFIX]}]}
        try:
            request = self.driver.build_request(CHAT, body, self.target, False)
        except ProviderError as exc:
            raise ClassifierFailed(f"request not built ({exc.code or exc.status})") from None
        outcome = await call(self.driver, CHAT, self.target, request, stream=False,
                             connect_timeout=self.timeout, read_timeout=self.timeout,
                             deadline=time.monotonic() + self.timeout)
        if not isinstance(outcome, Answer):
            raise ClassifierFailed(outcome.criterion)
        found = _TIER.search(_content(outcome.data))
        if found is None:
            raise ClassifierFailed("no tier in the answer")
        return found.group(1).lower()


def _content(data: dict[str, Any]) -> str:
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""


def from_config(complexity: dict[str, Any]) -> ModelScorer:
    model = complexity.get("model") or {}
    if not model.get("provider") or not model.get("name"):
        raise ValueError("balancer.complexity.scorer model needs balancer.complexity.model (provider and name)")
    auth = {k: v for k, v in (complexity.get("auth") or {}).items() if v not in (None, False)}
    options = {k: v for k, v in (model.get("options") or {}).items() if v is not None}
    return ModelScorer(Target(provider=model["provider"], model=model["name"], options=options, auth=auth),
                       float(complexity.get("timeout") or 1.0))

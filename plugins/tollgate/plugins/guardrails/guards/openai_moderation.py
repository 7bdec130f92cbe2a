"""OpenAI moderation (``POST /v1/moderations``).

Request ``{"model", "input": text}`` with ``Authorization: Bearer <api_key>``. The answer's first result blocks on a
category when its ``category_scores`` value reaches that category's ``thresholds`` entry; a category without a
threshold blocks when OpenAI itself marks it (``categories[name]`` true, which is what sets ``flagged``). Moderation
never rewrites text, so this guard blocks or passes.
"""

from __future__ import annotations

from typing import Any

from .base import GuardConfigError, Phase, Verdict
from .service import ServiceGuard

URL = "https://api.openai.com/v1/moderations"


class OpenAIModerationGuard(ServiceGuard):
    type = "openai_moderation"
    fields = [
        {"url": {"type": "string", "default": URL}},
        {"api_key": {"type": "string", "referenceable": True, "encrypted": True}},
        {"model": {"type": "string", "default": "omni-moderation-latest", "len_min": 1}},
        {"thresholds": {"type": "map", "keys": {"type": "string", "len_min": 1},
                        "values": {"type": "number", "between": [0, 1]}}},
    ]

    def configure(self, settings: dict[str, Any]) -> None:
        if not settings.get("api_key") and settings.get("url", URL) == URL:
            raise GuardConfigError(f"guard {self.name}: openai_moderation.api_key is required for OpenAI's own URL")
        self.url = settings.get("url") or URL
        self.model = settings.get("model") or "omni-moderation-latest"
        self.thresholds: dict[str, float] = dict(settings.get("thresholds") or {})
        self.headers = {"Authorization": f"Bearer {settings['api_key']}"} if settings.get("api_key") else {}

    async def _check(self, text: str, phase: Phase) -> Verdict:
        answer = await self.post_json(self.url, {"model": self.model, "input": text}, self.headers)
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or not results or not isinstance(results[0], dict):
            self.unreadable("no results")
        result = results[0]
        marked, scores = result.get("categories"), result.get("category_scores")
        if not isinstance(marked, dict) or not isinstance(scores, dict):
            self.unreadable("no categories or category_scores")
        hits = []
        for category in sorted(set(marked) | set(scores)):
            threshold = self.thresholds.get(category)
            score = scores.get(category)
            if threshold is not None:
                if isinstance(score, (int, float)) and score >= threshold:
                    hits.append(category)
            elif marked.get(category) is True:
                hits.append(category)
        return Verdict(blocked=True, categories=tuple(hits)) if hits else Verdict(blocked=False)

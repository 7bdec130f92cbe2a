"""Azure AI Content Safety (``POST {endpoint}/contentsafety/text:analyze?api-version=...``).

Kong's ai-azure-content-safety names: ``content_safety_url`` is the full ``text:analyze`` URL,
``content_safety_key`` goes in ``Ocp-Apim-Subscription-Key``, ``categories`` pairs each category Azure analyses
with its ``rejection_level`` (the severity that blocks), ``blocklist_names`` / ``halt_on_blocklist_hit`` /
``output_type`` / ``azure_api_version`` are sent as ``blocklistNames`` / ``haltOnBlocklistHit`` / ``outputType`` /
``api-version``. Any ``blocklistsMatch`` blocks (category ``Blocklist:<name>``); a category blocks when its
``severity`` reaches its ``rejection_level``. Managed identities (Kong's ``azure_use_managed_identity``) need a token
service: not supported, the key is. Azure analyses at most 10,000 characters per call: a longer text is judged in
10,000-character parts, side by side, that overlap by 500 characters (so a phrase cut by one part's end is whole in
the next), and blocks when any part does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .base import GuardConfigError, Phase, Verdict
from .service import ServiceGuard

CATEGORIES = ["Hate", "SelfHarm", "Sexual", "Violence"]
OUTPUT_TYPES = ["FourSeverityLevels", "EightSeverityLevels"]
MAX_TEXT = 10000          # characters per text:analyze call
OVERLAP = 500             # characters each part repeats of the one before


class AzureContentSafetyGuard(ServiceGuard):
    type = "azure_content_safety"
    fields = [
        {"content_safety_url": {"type": "string"}},
        {"content_safety_key": {"type": "string", "referenceable": True, "encrypted": True}},
        {"azure_api_version": {"type": "string", "default": "2023-10-01", "len_min": 1}},
        {"categories": {"type": "array", "elements": {"type": "record", "fields": [
            {"name": {"type": "string", "required": True, "one_of": CATEGORIES}},
            {"rejection_level": {"type": "integer", "required": True, "between": [0, 7]}},
        ]}}},
        {"blocklist_names": {"type": "array", "elements": {"type": "string", "len_min": 1}}},
        {"halt_on_blocklist_hit": {"type": "boolean", "default": False}},
        {"output_type": {"type": "string", "default": "FourSeverityLevels", "one_of": OUTPUT_TYPES}},
    ]

    def configure(self, settings: dict[str, Any]) -> None:
        if not settings.get("content_safety_url"):
            raise GuardConfigError(f"guard {self.name}: azure_content_safety.content_safety_url is required")
        self.levels = {c["name"]: c["rejection_level"] for c in settings.get("categories") or ()}
        self.blocklists = list(settings.get("blocklist_names") or ())
        if not self.levels and not self.blocklists:
            raise GuardConfigError(f"guard {self.name}: azure_content_safety needs categories or blocklist_names")
        self.url = settings["content_safety_url"]
        self.params = {"api-version": settings.get("azure_api_version") or "2023-10-01"}
        self.headers = {"Ocp-Apim-Subscription-Key": settings["content_safety_key"]} \
            if settings.get("content_safety_key") else {}
        self.request: dict[str, Any] = {"categories": list(self.levels),
                                        "outputType": settings.get("output_type") or OUTPUT_TYPES[0]}
        if self.blocklists:
            self.request["blocklistNames"] = self.blocklists
            self.request["haltOnBlocklistHit"] = bool(settings.get("halt_on_blocklist_hit"))

    async def _check(self, text: str, phase: Phase) -> Verdict:
        step = MAX_TEXT - OVERLAP
        parts = [text[i:i + MAX_TEXT] for i in range(0, max(len(text) - OVERLAP, 1), step)]
        hits: list[str] = []
        for part_hits in await asyncio.gather(*(self._analyze(part) for part in parts)):
            hits.extend(h for h in part_hits if h not in hits)
        return Verdict(blocked=True, categories=tuple(hits)) if hits else Verdict(blocked=False)

    async def _analyze(self, text: str) -> list[str]:
        answer = await self.post_json(self.url, {"text": text, **self.request}, self.headers, self.params)
        if not isinstance(answer, dict) or not isinstance(answer.get("categoriesAnalysis", []), list):
            self.unreadable("no categoriesAnalysis")
        hits: list[str] = []
        for match in answer.get("blocklistsMatch") or ():
            name = match.get("blocklistName") if isinstance(match, dict) else None
            label = f"Blocklist:{name}" if isinstance(name, str) else "Blocklist"
            if label not in hits:
                hits.append(label)
        for analysis in answer.get("categoriesAnalysis") or ():
            if not isinstance(analysis, dict):
                continue
            level = self.levels.get(analysis.get("category"))
            severity = analysis.get("severity")
            if level is not None and isinstance(severity, int) and severity >= level:
                hits.append(analysis["category"])
        return hits

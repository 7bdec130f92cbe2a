"""Lakera Guard v2 (``POST /v2/guard``).

Request ``{"messages": [{"role", "content"}], "project_id", "breakdown": true}`` with ``Authorization: Bearer
<api_key>``: the text goes as a ``user`` message on input and as an ``assistant`` message on output (Lakera judges
them differently). ``flagged`` decides; the categories are the ``detector_type`` of each ``breakdown`` entry that
``detected`` (``flagged`` alone when the breakdown names none). The project's policy, set in Lakera, chooses the
detectors and their thresholds.
"""

from __future__ import annotations

from typing import Any

from .base import GuardConfigError, Phase, Verdict
from .service import ServiceGuard

URL = "https://api.lakera.ai/v2/guard"


class LakeraGuard(ServiceGuard):
    type = "lakera"
    fields = [
        {"api_key": {"type": "string", "referenceable": True, "encrypted": True}},
        {"lakera_service_url": {"type": "string", "default": URL}},
        {"project_id": {"type": "string", "referenceable": True}},
    ]

    def configure(self, settings: dict[str, Any]) -> None:
        self.url = settings.get("lakera_service_url") or URL
        if not settings.get("api_key") and self.url == URL:
            raise GuardConfigError(f"guard {self.name}: lakera.api_key is required for Lakera's own URL")
        self.headers = {"Authorization": f"Bearer {settings['api_key']}"} if settings.get("api_key") else {}
        self.project_id = settings.get("project_id")

    async def _check(self, text: str, phase: Phase) -> Verdict:
        payload: dict[str, Any] = {"messages": [{"role": "user" if phase == "input" else "assistant",
                                                 "content": text}], "breakdown": True}
        if self.project_id:
            payload["project_id"] = self.project_id
        answer = await self.post_json(self.url, payload, self.headers)
        if not isinstance(answer, dict) or not isinstance(answer.get("flagged"), bool):
            self.unreadable("no flagged")
        if not answer["flagged"]:
            return Verdict(blocked=False)
        found: list[str] = []
        for entry in answer.get("breakdown") or ():
            kind = entry.get("detector_type") if isinstance(entry, dict) else None
            if isinstance(kind, str) and entry.get("detected") is True and kind not in found:
                found.append(kind)
        return Verdict(blocked=True, categories=tuple(found) or ("flagged",))

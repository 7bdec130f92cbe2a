"""AWS Bedrock Guardrails (``ApplyGuardrail``:
``POST https://bedrock-runtime.{region}.amazonaws.com/guardrail/{id}/version/{version}/apply``).

Request ``{"source": "INPUT" | "OUTPUT", "content": [{"text": {"text": ...}}]}``, signed with SigV4 (service
``bedrock``, botocore's signer, as the Bedrock provider driver signs), with Kong's ai-aws-guardrails names:
``guardrails_id``, ``guardrails_version``, ``aws_region``, ``aws_access_key_id`` / ``aws_secret_access_key`` (else
the ``AWS_*`` environment, as the driver reads it). ``endpoint_url`` (Tollgate's) replaces the regional endpoint
(a VPC endpoint, a mock).

``action`` ``NONE`` passes. ``GUARDRAIL_INTERVENED`` blocks when any assessed item's ``action`` is ``BLOCKED``
(the categories name the policy and the item's type or name, e.g. ``contentPolicy:VIOLENCE``; never its ``match``,
which is the text); when the guardrail only anonymised (``ANONYMIZED``), ``outputs`` is the masked text.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Callable
from urllib.parse import quote

import orjson
from botocore.awsrequest import AWSRequest

from ....providers.base import ProviderError
from ....providers.bedrock import ClockedSigV4, aws_credentials
from .base import GuardConfigError, Phase, Verdict
from .service import JSON_HEADERS, ServiceGuard

#: assessment policy -> (list key inside it, the key naming an item)
POLICIES = {
    "topicPolicy": [("topics", "name")],
    "contentPolicy": [("filters", "type")],
    "wordPolicy": [("customWords", None), ("managedWordLists", "type")],
    "sensitiveInformationPolicy": [("piiEntities", "type"), ("regexes", "name")],
    "contextualGroundingPolicy": [("filters", "type")],
}


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class BedrockGuard(ServiceGuard):
    type = "bedrock"
    fields = [
        {"guardrails_id": {"type": "string"}},
        {"guardrails_version": {"type": "string", "default": "DRAFT"}},
        {"aws_region": {"type": "string"}},
        {"aws_access_key_id": {"type": "string", "referenceable": True, "encrypted": True}},
        {"aws_secret_access_key": {"type": "string", "referenceable": True, "encrypted": True}},
        {"endpoint_url": {"type": "string"}},
    ]

    clock: Callable[[], datetime.datetime] = staticmethod(_utcnow)
    environ: Any = os.environ

    def configure(self, settings: dict[str, Any]) -> None:
        if not settings.get("guardrails_id"):
            raise GuardConfigError(f"guard {self.name}: bedrock.guardrails_id is required")
        self.region = settings.get("aws_region") or self.environ.get("AWS_REGION") \
            or self.environ.get("AWS_DEFAULT_REGION")
        if not self.region:
            raise GuardConfigError(f"guard {self.name}: bedrock.aws_region is required (or AWS_REGION)")
        base = (settings.get("endpoint_url") or f"https://bedrock-runtime.{self.region}.amazonaws.com").rstrip("/")
        self.url = (f"{base}/guardrail/{quote(settings['guardrails_id'], safe=':')}"
                    f"/version/{quote(settings.get('guardrails_version') or 'DRAFT', safe='')}/apply")
        try:
            self.credentials = aws_credentials(settings, self.environ)
        except ProviderError as exc:
            raise GuardConfigError(f"guard {self.name}: {exc.message}") from None
        if self.credentials is None and not settings.get("endpoint_url"):
            raise GuardConfigError(f"guard {self.name}: bedrock needs aws_access_key_id/aws_secret_access_key "
                                   "or AWS_* environment credentials")

    def signed(self, data: bytes) -> dict[str, str]:
        """The request's headers, with the credentials (SigV4, or a Bedrock API key as a bearer token)."""
        headers = dict(JSON_HEADERS)
        if isinstance(self.credentials, str):
            headers["Authorization"] = f"Bearer {self.credentials}"
        elif self.credentials is not None:
            request = AWSRequest(method="POST", url=self.url, headers=headers, data=data)
            ClockedSigV4(self.credentials, self.region, self.clock()).add_auth(request)
            headers = dict(request.headers.items())
        return headers

    async def _check(self, text: str, phase: Phase) -> Verdict:
        data = orjson.dumps({"source": phase.upper(), "content": [{"text": {"text": text}}]})
        answer = await self.post_json(self.url, None, self.signed(data), data=data)
        if not isinstance(answer, dict) or answer.get("action") not in ("NONE", "GUARDRAIL_INTERVENED"):
            self.unreadable("no action")
        if answer["action"] == "NONE":
            return Verdict(blocked=False)
        blocked = _blocked_items(answer.get("assessments"))
        if blocked:
            return Verdict(blocked=True, categories=tuple(blocked))
        outputs = answer.get("outputs")
        texts = [o["text"] for o in outputs if isinstance(o, dict) and isinstance(o.get("text"), str)] \
            if isinstance(outputs, list) else []
        if not texts:      # intervened, blocked nothing, masked nothing readable: not passed on unjudged
            return Verdict(blocked=True, categories=("GUARDRAIL_INTERVENED",))
        return Verdict(blocked=False, masked="".join(texts))


def _blocked_items(assessments: Any) -> list[str]:
    """``policy:item`` for each assessed item whose action is BLOCKED (never its ``match``)."""
    out: list[str] = []
    for assessment in assessments if isinstance(assessments, list) else ():
        if not isinstance(assessment, dict):
            continue
        for policy, lists in POLICIES.items():
            found = assessment.get(policy)
            if not isinstance(found, dict):
                continue
            for key, label in lists:
                for item in found.get(key) or ():
                    if isinstance(item, dict) and item.get("action") == "BLOCKED":
                        name = item.get(label) if label else key
                        tag = f"{policy}:{name}" if isinstance(name, str) else policy
                        if tag not in out:
                            out.append(tag)
    return out

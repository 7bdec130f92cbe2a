"""AWS Bedrock's ``ApplyGuardrail``: ``POST /guardrail/{guardrailIdentifier}/version/{guardrailVersion}/apply``
with ``{"source": "INPUT" | "OUTPUT", "content": [{"text": {"text"}}]}`` -> ``{"action", "actionReason"?,
"outputs", "assessments", "usage"}``.

The mock checks the SigV4 signature itself (``verify``: the documented algorithm with hmac and hashlib, not
botocore), for the one key pair it knows and the one guardrail it has (``GUARDRAIL_ID``, version ``1``). Violent
text is blocked by the content policy; a card number is anonymised by the sensitive-information policy.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any
from urllib.parse import quote

from aiohttp import web

from . import CARD, masked, violent

ACCESS_KEY = "AKIDGUARDRAILTEST01"
SECRET_KEY = "guardrail/test/secret+key0123456789ABCD"
REGION = "us-east-1"
GUARDRAIL_ID = "gr0abc123xyz"
BLOCKED_MESSAGE = "Sorry, the guardrail blocked this."
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                   r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def verify(method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> str | None:
    """Why the request's SigV4 signature is wrong, or None when it is right (service ``bedrock``)."""
    match = _AUTH.match(headers.get("Authorization", ""))
    if match is None:
        return "no SigV4 Authorization header"
    key, day, region, service, signed, signature = match.groups()
    if key != ACCESS_KEY or region != REGION or service != "bedrock":
        return "wrong credential scope"
    lower = {k.lower(): v for k, v in headers.items()}
    stamp = lower.get("x-amz-date", "")
    if not stamp.startswith(day):
        return "X-Amz-Date does not match the scope"
    names = signed.split(";")
    if "host" not in names:
        return "host is not signed"
    canonical = "\n".join([
        method, quote(path, safe="/~"), query,
        "".join(f"{n}:{' '.join(lower.get(n, '').split())}\n" for n in names),
        signed, hashlib.sha256(body).hexdigest()])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signing = _hmac(_hmac(_hmac(_hmac(f"AWS4{SECRET_KEY}".encode(), day), region), service), "aws4_request")
    expected = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(expected, signature) else "signature mismatch"


def error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status, headers={"x-amzn-ErrorType": kind})


async def apply(request: web.Request, data: Any) -> web.Response:
    body = await request.read()
    problem = verify(request.method, request.raw_path.split("?", 1)[0], request.query_string, dict(request.headers),
                     body)
    if problem is not None:
        return error(403, "InvalidSignatureException", problem)
    if request.match_info["id"] != GUARDRAIL_ID or request.match_info["version"] not in ("1", "DRAFT"):
        return error(404, "ResourceNotFoundException", "The guardrail was not found")
    if not isinstance(data, dict) or data.get("source") not in ("INPUT", "OUTPUT") \
            or not isinstance(data.get("content"), list):
        return error(400, "ValidationException", "source and content are required")
    text = "".join(block["text"]["text"] for block in data["content"]
                   if isinstance(block, dict) and isinstance(block.get("text"), dict))
    usage = {"topicPolicyUnits": 1, "contentPolicyUnits": 1, "wordPolicyUnits": 1,
             "sensitiveInformationPolicyUnits": 1, "sensitiveInformationPolicyFreeUnits": 0,
             "contextualGroundingPolicyUnits": 0}
    if violent(text):
        return web.json_response({
            "action": "GUARDRAIL_INTERVENED", "actionReason": "Guardrail blocked.", "usage": usage,
            "outputs": [{"text": BLOCKED_MESSAGE}],
            "assessments": [{"contentPolicy": {"filters": [
                {"type": "VIOLENCE", "confidence": "HIGH", "filterStrength": "HIGH", "action": "BLOCKED",
                 "detected": True}]}}]})
    if CARD in text:
        return web.json_response({
            "action": "GUARDRAIL_INTERVENED", "actionReason": "Guardrail masked.", "usage": usage,
            "outputs": [{"text": masked(text)}],
            "assessments": [{"sensitiveInformationPolicy": {"piiEntities": [
                {"type": "CREDIT_DEBIT_CARD_NUMBER", "match": CARD, "action": "ANONYMIZED", "detected": True}]}}]})
    return web.json_response({"action": "NONE", "outputs": [], "assessments": [{}], "usage": usage})


ROUTES = [("POST", "/guardrail/{id}/version/{version}/apply", apply)]

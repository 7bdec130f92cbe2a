"""What a request must be before any provider is called; each refusal is an OpenAI-style 4xx that says why.

The model check is where a pinned model holds: the body's ``model`` may only name a model this route serves (a
pinned target model or a ``match.models`` name). It never chooses anything by itself: a target calls its own model,
and only a target without a model name (or with a template) leaves the choice to the client. Nothing else a client
sends (``X-Kong-LLM-Model`` or other headers, query parameters, other body fields) selects a model or a target
unless a rule or a template in the config says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...context import BodyError, RequestContext
from ...providers.base import CHAT, COMPLETIONS, EMBEDDINGS, PRESERVE
from .targets import TargetSpec


class Rejected(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


@dataclass(frozen=True)
class ModelRule:
    allowed: frozenset[str]      # names the body's model may carry
    open: bool                   # some target lets the client choose (no model name, or a template)
    required: bool               # every target needs the client to name the model

    @classmethod
    def of(cls, specs: list[TargetSpec]) -> "ModelRule":
        allowed: set[str] = set()
        open_ = required = False
        client_chooses = []
        for spec in specs:
            if spec.pinned_model:
                allowed.add(spec.pinned_model)
            if spec.match is not None:
                allowed |= spec.match.models
            chooses = spec.model is None and not spec.deployment_pinned
            client_chooses.append(chooses)
            open_ = open_ or chooses or spec.templated
        required = all(client_chooses)
        return cls(frozenset(allowed), open_, required)


_NATIVE_STREAM_PATH = re.compile(r"(:streamGenerateContent|/converse-stream|/invoke-with-response-stream)$")

_REQUIRED_FIELD = {CHAT: ("messages", list), COMPLETIONS: ("prompt", (str, list)),
                   EMBEDDINGS: ("input", (str, list))}

ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def _check_messages(messages: list[Any]) -> None:
    """Each chat message as OpenAI requires it: an object with a known role, and content unless an assistant
    message carries tool calls instead (anything else would reach a provider as an empty or broken prompt)."""
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise Rejected(400, f"'{where}' must be an object with a role and content", "invalid_request", where)
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise Rejected(400, f"'{where}.role' must be one of: {', '.join(ROLES)}", "invalid_request",
                           f"{where}.role")
        content = message.get("content")
        if content is None:
            if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
                continue
            raise Rejected(400, f"'{where}.content' is required", "invalid_request", f"{where}.content")
        if not isinstance(content, (str, list)):
            raise Rejected(400, f"'{where}.content' must be a string or an array of content parts",
                           "invalid_request", f"{where}.content")


def check(ctx: RequestContext, config: dict[str, Any], route_type: str, models: ModelRule) -> dict[str, Any]:
    """The parsed request and what the proxy needs to know of it; Rejected when it cannot be served."""
    if ctx.method != "POST":
        raise Rejected(405, f"{ctx.method} is not supported here; send a POST with a JSON body", "method_not_allowed")
    limit = config.get("max_request_body_size") or 1048576
    if len(ctx.body) > limit:
        raise Rejected(413, f"request body is {len(ctx.body)} bytes, over the limit of {limit}", "request_too_large")
    content_type = ctx.headers.get("content-type", "")
    if route_type != PRESERVE and "json" not in content_type.lower():
        raise Rejected(415, f"expected an application/json body, got {content_type or 'no content type'}",
                       "unsupported_media_type")
    try:
        body = ctx.json()
    except BodyError as exc:
        raise Rejected(400, str(exc), "invalid_json") from None
    if not isinstance(body, dict):
        raise Rejected(400, "request body must be a JSON object", "invalid_json")
    required = _REQUIRED_FIELD.get(route_type)
    if required is not None:
        name, kinds = required
        if not isinstance(body.get(name), kinds) or not body.get(name):
            raise Rejected(400, f"'{name}' is required and must be a non-empty "
                                f"{'array' if kinds is list else 'string or array'}", "invalid_request", name)
    if route_type == CHAT:
        _check_messages(body["messages"])
    requested = body.get("model")
    if requested is not None and not isinstance(requested, str):
        raise Rejected(400, "'model' must be a string", "invalid_request", "model")
    requested = requested or None
    if requested is not None and not models.open and requested not in models.allowed:
        served = ", ".join(f"'{m}'" for m in sorted(models.allowed)) or "its configured models"
        raise Rejected(400, f"model '{requested}' is not available on this route; it serves {served}",
                       "model_not_allowed", "model")
    if requested is None and models.required and route_type != PRESERVE:
        # (a native request may name its model in the path: Gemini, Bedrock)
        raise Rejected(400, "the request must name a model", "model_required", "model")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise Rejected(400, "'stream' must be true or false", "invalid_request", "stream")
    if route_type == PRESERVE and _NATIVE_STREAM_PATH.search(ctx.path):
        stream = True       # Gemini's :streamGenerateContent, Bedrock's /converse-stream
    policy = config.get("response_streaming") or "allow"
    if stream and policy == "deny":
        raise Rejected(400, "streaming is not allowed on this route", "streaming_denied", "stream")
    streaming = bool(stream) or (policy == "always" and route_type in (CHAT, COMPLETIONS))
    return {"body": body, "stream": streaming, "requested_model": requested,
            "client_wants_usage": bool((body.get("stream_options") or {}).get("include_usage"))
            if isinstance(body.get("stream_options"), dict) else False}

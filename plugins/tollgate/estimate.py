"""Token estimates for when a number is needed before (or without) the provider's report.

Admission control counts the prompt before the call; a provider that reports no usage,
or a stream the client cut short, is charged from what was actually sent and generated.
Every estimate is marked as such.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from . import tokens
from .context import RequestContext
from .providers.base import CHAT, COMPLETIONS, EMBEDDINGS, ChunkWriter, Usage

_COUNTERS = {CHAT: tokens.count_chat_prompt, COMPLETIONS: tokens.count_completion_prompt,
             EMBEDDINGS: tokens.count_embedding_input}


def prompt_tokens(ctx: RequestContext, route_type: str, model: str | None) -> int:
    """The prompt's tokens as it will be sent upstream, counted once per request."""
    cached = ctx.meta.get("prompt_estimate")
    if cached is None:
        counter = _COUNTERS.get(route_type)
        body = ctx.json() if counter else None
        cached = counter(body, model) if counter and isinstance(body, dict) else 0
        ctx.meta["prompt_estimate"] = cached
    return cached


def usage_from_text(ctx: RequestContext, route_type: str, model: str | None, generated: str) -> Usage:
    prompt = prompt_tokens(ctx, route_type, model)
    completion = tokens.count_text(generated, model) if generated else 0
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 estimated=True)


def usage_field(route_type: str, usage: Usage) -> dict[str, Any]:
    """``usage`` as the ``usage`` field of an answer of ``route_type`` (embeddings count only the input)."""
    if route_type == EMBEDDINGS:
        field: dict[str, Any] = {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens}
        return {**field, "estimated": True} if usage.estimated else field
    return usage.as_openai()


def usage_chunk(sent: list[dict[str, Any]], route_type: str, model: str | None, usage: Usage) -> dict[str, Any]:
    """The closing usage chunk of a stream whose provider reported none: the id, creation time and model of the
    chunks already sent (with OpenAI's types even if none were sent)."""
    first = sent[0] if sent else {}
    id_ = first.get("id") if isinstance(first.get("id"), str) else "chatcmpl-" + uuid.uuid4().hex
    created = first.get("created") if isinstance(first.get("created"), int) else int(time.time())
    name = first.get("model") if isinstance(first.get("model"), str) else model or ""
    return ChunkWriter(route_type, name, created, id_).usage(usage)


def generated_text(chunk_or_body: dict[str, Any]) -> str:
    """The text a chat/completions answer or stream chunk carries (content and tool arguments)."""
    parts: list[str] = []
    for choice in chunk_or_body.get("choices") or ():
        message = choice.get("delta") or choice.get("message") or {}
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(choice.get("text"), str):
            parts.append(choice["text"])
        for call in (message.get("tool_calls") or ()) if isinstance(message, dict) else ():
            arguments = (call.get("function") or {}).get("arguments")
            if isinstance(arguments, str):
                parts.append(arguments)
    return "".join(parts)

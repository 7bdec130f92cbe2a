"""What a request's cache entry is filed under.

Two prompts may share an answer only if everything outside the embedded text is the same, so every entry sits in a
**partition** named by a hash of: the scope (consumer and route, route, or nothing), the route type, the models the
route may call, the system prompt, the conversation before the embedded messages, and every body parameter that
changes the answer (tools, ``response_format``, ``n``, ``stop``, seeds...), with ``temperature`` and
``max_tokens`` in bands. The **exact key** adds the whole prompt. Only the last ``message_countback`` messages are
embedded; ``stream`` and ``stream_options`` are not part of anything (a hit replays in the client's mode).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import orjson

from ...providers.base import CHAT, COMPLETIONS

# Body fields that say how to deliver or who asks, not what to answer.
_DELIVERY = {"messages", "prompt", "stream", "stream_options", "user", "metadata", "store", "model",
             "temperature", "max_tokens", "max_completion_tokens", "max_output_tokens"}
_SYSTEM_ROLES = {"system", "developer"}
_TOOL_ROLES = {"tool", "function"}


class NotCacheable(Exception):
    """This request has nothing the cache can key on (no text prompt); it goes to the provider as it is."""


@dataclass(frozen=True)
class Described:
    partition: str        # hex: what must be equal for any hit
    exact: str            # hex: the partition and the whole prompt
    text: str             # what is embedded


def temperature_band(value: Any) -> str:
    """Answers at nearby temperatures are interchangeable; greedy (0) and very hot ones are not."""
    if value is None:
        return "default"
    t = float(value)
    if t == 0:
        return "0"
    for limit, name in ((0.3, "low"), (0.7, "mid"), (1.0, "high")):
        if t <= limit:
            return name
    return "hot"


def max_tokens_band(value: Any) -> str:
    """Caps in the same power of two: a complete answer under one fits the other."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return "default"
    return str(math.ceil(math.log2(value)))


def describe(body: dict[str, Any], route_type: str, config: dict[str, Any], scope: str,
             models: list[tuple[str | None, str | None]]) -> Described:
    """The partition, exact key and embedded text of one request (see the module doc)."""
    if route_type == CHAT:
        kept, context, text = _chat(body, config)
    elif route_type == COMPLETIONS:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
            prompt = "\n".join(prompt)
        if not isinstance(prompt, str) or not prompt.strip():
            raise NotCacheable("the prompt is not text")
        kept, context, text = prompt, [], prompt
    else:
        raise NotCacheable(f"route type {route_type} is not cached")
    params = {k: v for k, v in body.items() if k not in _DELIVERY}
    params["temperature"] = temperature_band(body.get("temperature"))
    params["max_tokens"] = max_tokens_band(body.get("max_completion_tokens") or body.get("max_tokens"))
    partition = _hash([scope, route_type, sorted([p or "", m or ""] for p, m in models), params, context])
    return Described(partition, _hash([partition, kept]), text)


def _chat(body: dict[str, Any], config: dict[str, Any]) -> tuple[Any, list[Any], str]:
    """(the whole prompt for the exact key, what must match exactly for a semantic hit, the embedded text)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise NotCacheable("no messages")
    ignored = set()
    if config.get("ignore_assistant_prompts"):
        ignored.add("assistant")
    if config.get("ignore_tool_prompts"):
        ignored |= _TOOL_ROLES
    system: list[Any] = []
    conversation: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            raise NotCacheable("malformed message")
        role = message.get("role")
        if role in _SYSTEM_ROLES:
            if not config.get("ignore_system_prompts"):
                system.append(message)
        elif role not in ignored:
            conversation.append(message)
    window = conversation[-int(config.get("message_countback") or 1):]
    earlier = conversation[:len(conversation) - len(window)]
    texts = []
    for message in window:
        text = _text_of(message.get("content"))
        if text is None or message.get("tool_calls"):
            # images, audio, tool calls: no text to compare by meaning; the message must match exactly instead
            earlier.append(message)
        else:
            texts.append(text)
    if not texts:
        raise NotCacheable("no text to embed in the last messages")
    return messages, [system, earlier, [m.get("role") for m in window]], "\n".join(texts)


def _text_of(content: Any) -> str | None:
    if isinstance(content, str):
        return content if content.strip() else None
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                return None
            parts.append(part["text"])
        joined = "\n".join(parts)
        return joined if joined.strip() else None
    return None


def _hash(value: Any) -> str:
    return hashlib.blake2b(orjson.dumps(value, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()

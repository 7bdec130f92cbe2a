"""Cached answers: assembled from what the provider sent (one body, or a stream's chunks), replayed in the mode the
client asks for (JSON, or SSE chunks with or without a usage chunk), in OpenAI's chat or completions format."""

from __future__ import annotations

import secrets
from typing import Any

Chunk = dict[str, Any]


class Assembler:
    """Rebuilds the whole answer a stream's chunks make (what OpenAI would have sent without ``stream``)."""

    def __init__(self) -> None:
        self.head: Chunk | None = None
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None

    def feed(self, chunk: Chunk) -> None:
        if self.head is None:
            self.head = chunk
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for part in chunk.get("choices") or ():
            index = int(part.get("index") or 0)
            choice = self.choices.setdefault(index, {"text": [], "role": None, "tools": {}, "finish": None,
                                                     "refusal": []})
            if part.get("finish_reason"):
                choice["finish"] = part["finish_reason"]
            if "text" in part:                                 # completions
                choice["text"].append(part.get("text") or "")
                continue
            delta = part.get("delta") or {}
            choice["role"] = delta.get("role") or choice["role"]
            if delta.get("content"):
                choice["text"].append(delta["content"])
            if delta.get("refusal"):
                choice["refusal"].append(delta["refusal"])
            for call in delta.get("tool_calls") or ():
                slot = choice["tools"].setdefault(int(call.get("index") or 0),
                                                  {"id": None, "type": "function", "function": {"name": "",
                                                                                                "arguments": ""}})
                if call.get("id"):
                    slot["id"] = call["id"]
                function = call.get("function") or {}
                slot["function"]["name"] += function.get("name") or ""
                slot["function"]["arguments"] += function.get("arguments") or ""

    def body(self) -> Chunk | None:
        """The whole answer, or None when the stream carried no choice at all."""
        head = self.head
        if head is None or not self.choices:
            return None
        completions = head.get("object") == "text_completion"
        choices = []
        for index in sorted(self.choices):
            c = self.choices[index]
            if completions:
                choices.append({"index": index, "text": "".join(c["text"]), "logprobs": None,
                                "finish_reason": c["finish"]})
                continue
            message: dict[str, Any] = {"role": c["role"] or "assistant", "content": "".join(c["text"]) or None}
            if c["refusal"]:
                message["refusal"] = "".join(c["refusal"])
            if c["tools"]:
                message["tool_calls"] = [c["tools"][i] for i in sorted(c["tools"])]
            choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": c["finish"]})
        body = {"id": head.get("id"), "object": "text_completion" if completions else "chat.completion",
                "created": head.get("created"), "model": head.get("model"), "choices": choices}
        if self.usage:
            body["usage"] = self.usage
        return body


def cacheable(body: Chunk, finish_reasons: list[str], tool_calls: bool) -> str | None:
    """None when ``body`` may be cached, else why not."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return "no choices"
    for choice in choices:
        if not isinstance(choice, dict):
            return "malformed choice"
        if choice.get("finish_reason") not in finish_reasons:
            return f"finish_reason {choice.get('finish_reason')}"
        message = choice.get("message")
        if isinstance(message, dict):
            if message.get("tool_calls") and not tool_calls:
                return "tool calls"
            if message.get("refusal"):
                return "refusal"
            if not message.get("content") and not message.get("tool_calls"):
                return "empty answer"
        elif not isinstance(choice.get("text"), str):
            return "malformed choice"
    return None


def replay_body(stored: Chunk, now: int) -> Chunk:
    """A stored answer as a fresh whole answer (its own id and creation time)."""
    return {**stored, "id": _fresh_id(stored), "created": now}


def replay_chunks(stored: Chunk, now: int, include_usage: bool) -> list[Chunk]:
    """A stored answer as the chunks of a stream, ending with a usage chunk when the client asked for one."""
    completions = stored.get("object") == "text_completion"
    head = {"id": _fresh_id(stored), "object": "text_completion" if completions else "chat.completion.chunk",
            "created": now, "model": stored.get("model")}
    chunks: list[Chunk] = []
    for choice in stored.get("choices") or ():
        index = choice.get("index", 0)
        if completions:
            chunks.append({**head, "choices": [{"index": index, "text": choice.get("text") or "", "logprobs": None,
                                                "finish_reason": None}]})
            chunks.append({**head, "choices": [{"index": index, "text": "", "logprobs": None,
                                                "finish_reason": choice.get("finish_reason")}]})
            continue
        message = choice.get("message") or {}
        delta: dict[str, Any] = {"role": message.get("role") or "assistant", "content": message.get("content") or ""}
        chunks.append({**head, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                            "finish_reason": None}]})
        if message.get("tool_calls"):
            calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
            chunks.append({**head, "choices": [{"index": index, "delta": {"tool_calls": calls}, "logprobs": None,
                                                "finish_reason": None}]})
        chunks.append({**head, "choices": [{"index": index, "delta": {}, "logprobs": None,
                                            "finish_reason": choice.get("finish_reason")}]})
    if include_usage and stored.get("usage"):
        chunks.append({**head, "choices": [], "usage": stored["usage"]})
    return chunks


def _fresh_id(stored: Chunk) -> str:
    prefix = "cmpl" if stored.get("object") == "text_completion" else "chatcmpl"
    return f"{prefix}-{secrets.token_hex(12)}"

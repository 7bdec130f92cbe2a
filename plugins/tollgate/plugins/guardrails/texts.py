"""Where text lives in OpenAI-format requests, so every rule reads (and PII redaction rewrites) the same places.

Chat messages carry text as a string or as content parts (``{"type": "text", "text": ...}``), and also in tool
calls (``tool_calls[].function.arguments``, the legacy ``function_call``) and tool results (a ``tool`` message's
content); a completions request in ``prompt``; an embeddings request in ``input`` (strings, or lists of them;
token-id arrays carry no text).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

Rewrite = Callable[[str], str]

#: what joins the texts of a request (or an answer) that a guard judges as one
SEPARATOR = "\n\n"


def message_text(message: dict[str, Any]) -> str | None:
    """A chat message's own text (its content, parts joined), or None when it has none."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "\n".join(parts) if parts else None
    return None


def guarded_texts(body: dict[str, Any], *, all_roles: bool, latest_only: bool) -> list[str]:
    """What ai-prompt-guard checks: the users' messages (every role's with ``all_roles``), newest first, only the
    newest with ``latest_only``; or the completions prompt, or the embeddings input."""
    messages = body.get("messages")
    if isinstance(messages, list):
        out = []
        for message in reversed(messages):
            if not isinstance(message, dict) or not (all_roles or message.get("role") == "user"):
                continue
            text = message_text(message)
            if text is None:
                continue
            out.append(text)
            if latest_only:
                break
        return out
    return list(_strings(body.get("prompt"))) + list(_strings(body.get("input")))


def source_texts(body: dict[str, Any], source: str) -> list[str]:
    """The texts a guard's ``text_source`` chooses, in conversation order: ``concatenate_all_content`` every
    message's, ``concatenate_user_content`` the users', ``last_message`` the newest message's (a completions prompt
    or an embeddings input whatever the source)."""
    texts = guarded_texts(body, all_roles=source != "concatenate_user_content", latest_only=source == "last_message")
    return texts[::-1] if isinstance(body.get("messages"), list) else texts     # messages come newest first


def split_like(pieces: list[str], joined: str) -> list[str] | None:
    """``joined`` (a rewrite of ``SEPARATOR.join(pieces)``, e.g. a masked text) cut back into one text per piece,
    or None when the rewrite no longer has the separators the pieces had."""
    parts = joined.split(SEPARATOR)
    counts = [piece.count(SEPARATOR) + 1 for piece in pieces]
    if len(parts) != sum(counts):
        return None
    out, start = [], 0
    for count in counts:
        out.append(SEPARATOR.join(parts[start:start + count]))
        start += count
    return out


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                yield item


def rewrite_request(body: dict[str, Any], rewrite: Rewrite) -> dict[str, Any]:
    """A copy of ``body`` with every text passed through ``rewrite`` (the original is left as it was)."""
    out = dict(body)
    messages = body.get("messages")
    if isinstance(messages, list):
        out["messages"] = [_rewrite_message(m, rewrite) if isinstance(m, dict) else m for m in messages]
    for key in ("prompt", "input"):
        value = body.get(key)
        if isinstance(value, str):
            out[key] = rewrite(value)
        elif isinstance(value, list) and any(isinstance(v, str) for v in value):
            out[key] = [rewrite(v) if isinstance(v, str) else v for v in value]
    return out


def _rewrite_message(message: dict[str, Any], rewrite: Rewrite) -> dict[str, Any]:
    out = dict(message)
    content = message.get("content")
    if isinstance(content, str):
        out["content"] = rewrite(content)
    elif isinstance(content, list):
        out["content"] = [{**p, "text": rewrite(p["text"])}
                          if isinstance(p, dict) and isinstance(p.get("text"), str) else p for p in content]
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        out["tool_calls"] = [_rewrite_call(c, rewrite) if isinstance(c, dict) else c for c in calls]
    if isinstance(message.get("function_call"), dict):
        out["function_call"] = _rewrite_function(message["function_call"], rewrite)
    return out


def _rewrite_call(call: dict[str, Any], rewrite: Rewrite) -> dict[str, Any]:
    function = call.get("function")
    return {**call, "function": _rewrite_function(function, rewrite)} if isinstance(function, dict) else call


def _rewrite_function(function: dict[str, Any], rewrite: Rewrite) -> dict[str, Any]:
    arguments = function.get("arguments")
    return {**function, "arguments": rewrite(arguments)} if isinstance(arguments, str) else function


def answer_texts(choice: dict[str, Any], part: str) -> list[tuple[tuple[str, int], str]]:
    """An answer choice's non-empty texts with where they sit: ("text"|"content", 0) or ("tool", call index).

    ``part`` is "message" for a whole answer (a tool call sits at its position) or "delta" for a stream's chunk
    (a tool call names its own ``index``)."""
    if isinstance(choice.get("text"), str):
        return [(("text", 0), choice["text"])]
    body = choice.get(part)
    if not isinstance(body, dict):
        return []
    out: list[tuple[tuple[str, int], str]] = []
    if isinstance(body.get("content"), str) and body["content"]:
        out.append((("content", 0), body["content"]))
    for k, call in enumerate(body.get("tool_calls") or ()):
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str) and function["arguments"]:
            out.append((("tool", call.get("index", k) if part == "delta" else k), function["arguments"]))
    return out

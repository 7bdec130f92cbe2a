"""The guard services on the prompt and on whole answers: which text each guard judges, and what its judgement does
to the request.

Prompt. Each guard judges the texts its ``text_source`` chooses, joined by a blank line; guards with the same
source judge the same text, and all of them run at once. A block is a 400 ``content_blocked`` (the categories in
the message only from guards with ``reveal_failure_reason``); a guard that cannot judge and does not fail open is a
500 ``guardrail_failed``, one that fails open lets the request on with ``X-Tollgate-Guardrails: failed-open``. A
masked text is cut back into the messages it came from (``texts.split_like``) and replaces them; a mask that no
longer lines up with them, or two guards of different sources masking one message differently, cannot be placed
and is refused like a block, rather than sent unmasked.

Whole answers. The output guards judge each choice's text (its content, or completion text, and its tool calls'
arguments, joined the same way) side by side. A block replaces the answer with a 400 ``content_filter`` error; a
mask replaces the texts; a guard that cannot judge follows ``fail_open`` (500 ``guardrail_failed`` when closed).
Streams are judged over a sliding window as they arrive (window.py).

Audit: ``guards`` in the request's ``ai.guardrails`` log entry lists each guard's outcome (guards/run.py), and
``blocked_by`` names the guards that blocked.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Sequence

from ...relay import web

from ... import log
from ...relay.errors import openai_error
from ...relay.pipeline import AnswerFilter, AnswerRefused, Chunk
from .guards.base import Guard
from .guards.run import Judgement, check_output, judge
from .texts import SEPARATOR, answer_texts, rewrite_request, source_texts, split_like


logger = log.get("guardrails")


class Unplaceable(Exception):
    """A guard masked the text, but the masked text cannot be put back where the text came from."""


@dataclass
class Screened:
    """The prompt after the input guards: the body to send (maybe masked), or the refusal to answer instead."""

    body: dict[str, Any]
    refusal: web.Response | None = None
    failed_open: bool = False


def record(audit: dict[str, Any], judgements: Sequence[Judgement]) -> None:
    """The judgements in the request's audit; a guard that could not judge is also logged, with the fault."""
    audit.setdefault("guards", []).extend(e for j in judgements for e in j.audit())
    for judgement in judgements:
        for outcome in judgement.outcomes:
            if outcome.verdict is None:
                log.event(logger, "guard unavailable", logging.WARNING, guard=outcome.guard.name,
                          phase=judgement.phase, error=outcome.error, fail_open=outcome.guard.fail_open)
    blocked = [o.guard.name for j in judgements for o in j.blocked]
    if blocked:
        audit.update(blocked_by=blocked, action="block")


def _reason(what: str, judgements: Sequence[Judgement]) -> str:
    revealed: list[str] = []
    for judgement in judgements:
        revealed.extend(c for c in judgement.revealed() if c not in revealed)
    return f"{what} was blocked by a content guard" + (f": {', '.join(revealed)}" if revealed else "")


async def screen_input(guards: Sequence[Guard], body: dict[str, Any], audit: dict[str, Any]) -> Screened:
    """Run the input guards on the prompt (all at once); record them in ``audit``."""
    by_source: dict[str, list[Guard]] = {}
    for guard in guards:
        if guard.guards("input"):
            by_source.setdefault(guard.text_source, []).append(guard)
    pieces = {source: source_texts(body, source) for source in by_source}
    judged = [(source, pieces[source]) for source in by_source if pieces[source]]
    judgements = list(await asyncio.gather(*(judge(by_source[source], SEPARATOR.join(texts), "input")
                                             for source, texts in judged)))
    record(audit, judgements)
    if any(j.blocked for j in judgements):
        return Screened(body, openai_error(400, _reason("the prompt", judgements), code="content_blocked"))
    if any(j.failed for j in judgements):
        return Screened(body, openai_error(500, "a content guard could not check the prompt; the request was not "
                                           "sent", "server_error", "guardrail_failed"))
    failed_open = any(j.failed_open for j in judgements)
    try:
        replace = _placed([(texts, j.masked) for (_, texts), j in zip(judged, judgements) if j.masked is not None])
    except Unplaceable:
        audit.update(action="block", masking="unplaceable")
        return Screened(body, openai_error(400, "the prompt was blocked by a content guard: its masked text could "
                                           "not be applied", code="content_blocked"))
    if replace:
        audit["masked"] = True
        body = rewrite_request(body, lambda t: replace.get(t, t))
    return Screened(body, None, failed_open)


def _placed(masks: list[tuple[list[str], str]]) -> dict[str, str]:
    """Original text -> masked text, from each (pieces, masked joined text)."""
    replace: dict[str, str] = {}
    for pieces, masked in masks:
        parts = split_like(pieces, masked)
        if parts is None:
            raise Unplaceable
        for piece, part in zip(pieces, parts):
            if part == piece:
                continue
            if replace.get(piece, part) != part:
                raise Unplaceable
            replace[piece] = part
    return replace


# -- answers ------------------------------------------------------------------------------------------------------

def _with_texts(choice: dict[str, Any], texts: dict[tuple[str, int], str]) -> dict[str, Any]:
    if ("text", 0) in texts:
        return {**choice, "text": texts[("text", 0)]}
    message = dict(choice["message"])
    if ("content", 0) in texts:
        message["content"] = texts[("content", 0)]
    if any(slot[0] == "tool" for slot in texts):
        calls = []
        for k, call in enumerate(message.get("tool_calls") or ()):
            if ("tool", k) in texts:
                call = {**call, "function": {**call["function"], "arguments": texts[("tool", k)]}}
            calls.append(call)
        message["tool_calls"] = calls
    return {**choice, "message": message}


def refusal(judgements: Sequence[Judgement]) -> AnswerRefused | None:
    """What the output guards' judgements mean for the answer: a refusal, or None when it may go out."""
    if any(j.blocked for j in judgements):
        return AnswerRefused(400, _reason("the answer", judgements), "content_filter")
    if any(j.failed for j in judgements):
        return AnswerRefused(500, "a content guard could not check the answer; it was not sent", "guardrail_failed",
                             "server_error")
    return None


class GuardsFilter(AnswerFilter):
    """The output guards on one request's whole answer (streams: window.py)."""

    def __init__(self, guards: Sequence[Guard], audit: dict[str, Any]):
        self.guards = [g for g in guards if g.guards("output")]
        self.audit = audit

    async def answer(self, body: Chunk) -> Chunk:
        choices = body.get("choices")
        if not isinstance(choices, list):
            return body
        slots = [answer_texts(c, "message") if isinstance(c, dict) else [] for c in choices]
        judgements = await asyncio.gather(*(check_output(self.guards, SEPARATOR.join(t for _, t in s))
                                            for s in slots if s))
        record(self.audit, judgements)
        refused = refusal(judgements)
        if refused is not None:
            raise refused
        out, masks = [], iter(judgements)
        for choice, texts in zip(choices, slots):
            judgement = next(masks) if texts else None
            if judgement is None or judgement.masked is None:
                out.append(choice)
                continue
            parts = split_like([t for _, t in texts], judgement.masked)
            if parts is None:
                self.audit.update(action="block", masking="unplaceable")
                raise AnswerRefused(400, "the answer was blocked by a content guard: its masked text could not be "
                                    "applied", "content_filter")
            self.audit["masked"] = True
            out.append(_with_texts(choice, {slot: part for (slot, _), part in zip(texts, parts)}))
        return {**body, "choices": out}

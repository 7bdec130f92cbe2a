"""Running guards on one text: side by side, each with its own timeout and ``fail_open``, into one ``Judgement``.

All guards of the phase start at once (``asyncio.gather``), so the wait is the slowest guard's, not the sum. A
guard that blocks blocks the text; a guard that cannot judge (``GuardUnavailable``) is skipped when its
``fail_open`` is set and fails the text when it is not. When one guard masks, its text is the one sent on; when
several mask, each later one judges the masked text of the ones before (one at a time: only then can their masks
add up), and may still block it.

``audit`` is what the request's log line says of each guard: its name, the phase, the outcome, the categories and
the time it took; never the text, a masked text, or a service's message.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from .base import Guard, GuardUnavailable, Phase, Verdict


@dataclass
class Outcome:
    """One guard's part in a judgement."""

    guard: Guard
    verdict: Verdict | None            # None: the guard could not judge
    ms: float
    error: str | None = None           # why it could not (names the guard and the fault, never the text)

    @property
    def result(self) -> str:
        if self.verdict is None:
            return "unavailable"
        if self.verdict.blocked:
            return "block"
        return "mask" if self.verdict.masked is not None else "pass"


@dataclass
class Judgement:
    """What the guards of one phase decided about one text."""

    phase: Phase
    outcomes: list[Outcome] = field(default_factory=list)
    masked: str | None = None          # the text to send on instead, when a guard masked and none blocked

    @property
    def blocked(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.verdict is not None and o.verdict.blocked]

    @property
    def failed(self) -> list[Outcome]:
        """Guards that could not judge and do not fail open: the text cannot go on."""
        return [o for o in self.outcomes if o.verdict is None and not o.guard.fail_open]

    @property
    def failed_open(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.verdict is None and o.guard.fail_open]

    @property
    def categories(self) -> list[str]:
        """The blocking guards' categories, in guard order, each once."""
        out: list[str] = []
        for outcome in self.blocked:
            out.extend(c for c in outcome.verdict.categories if c not in out)     # type: ignore[union-attr]
        return out

    def revealed(self) -> list[str]:
        """The categories the client may see: those of blocking guards with ``reveal_failure_reason``."""
        out: list[str] = []
        for outcome in self.blocked:
            if outcome.guard.reveal:
                out.extend(c for c in outcome.verdict.categories if c not in out)  # type: ignore[union-attr]
        return out

    def audit(self) -> list[dict[str, Any]]:
        entries = []
        for o in self.outcomes:
            entry: dict[str, Any] = {"name": o.guard.name, "phase": self.phase, "result": o.result,
                                     "latency_ms": round(o.ms, 1)}
            if o.verdict is not None and o.verdict.categories:
                entry["categories"] = list(o.verdict.categories)
            if o.verdict is None and o.guard.fail_open:
                entry["fail_open"] = True
            entries.append(entry)
        return entries


async def _one(guard: Guard, text: str, phase: Phase) -> Outcome:
    start = time.perf_counter()
    try:
        verdict = await guard.check(text, phase)
    except GuardUnavailable as exc:
        return Outcome(guard, None, (time.perf_counter() - start) * 1000, str(exc))
    return Outcome(guard, verdict, (time.perf_counter() - start) * 1000)


async def judge(guards: Sequence[Guard], text: str, phase: Phase) -> Judgement:
    """The guards of ``phase`` among ``guards``, run side by side on ``text``."""
    chosen = [g for g in guards if g.guards(phase)]
    judgement = Judgement(phase)
    if not chosen:
        return judgement
    judgement.outcomes = list(await asyncio.gather(*(_one(g, text, phase) for g in chosen)))
    if judgement.blocked or judgement.failed:
        return judgement
    maskers = [o for o in judgement.outcomes if o.result == "mask"]
    if not maskers:
        return judgement
    masked = maskers[0].verdict.masked                                           # type: ignore[union-attr]
    for outcome in maskers[1:]:                       # several masks: each later guard judges the text so far
        again = await _one(outcome.guard, masked, phase)  # type: ignore[arg-type]
        judgement.outcomes[judgement.outcomes.index(outcome)] = again
        if again.verdict is None and again.guard.fail_open:
            continue
        if again.verdict is None or again.verdict.blocked:
            return judgement
        if again.verdict.masked is not None:
            masked = again.verdict.masked
    judgement.masked = masked
    return judgement


async def check_output(guards: Sequence[Guard], text: str) -> Judgement:
    """The output guards' judgement of an answer's text (whole, or a stream's window so far)."""
    return await judge(guards, text, "output")

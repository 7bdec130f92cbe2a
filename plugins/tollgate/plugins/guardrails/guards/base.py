"""What every content guard is: a name, the phases it guards, and one ``check`` of one text.

A guard answers with a ``Verdict``. It raises ``GuardUnavailable`` when it cannot judge (the service is down,
times out, or answers something unreadable); the caller then follows the guard's ``fail_open``. It never raises
anything else for a service's fault, and never puts the text, a key or an Authorization header in a message.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Phase = Literal["input", "output"]
MODES = ["INPUT", "OUTPUT", "BOTH"]
TEXT_SOURCES = ["concatenate_all_content", "concatenate_user_content", "last_message"]


class GuardUnavailable(Exception):
    """The guard could not judge the text; ``fail_open`` decides what happens to the request."""


class GuardConfigError(ValueError):
    """A guard's settings cannot work (what the schema language cannot say); the instance is refused at start."""


@dataclass(frozen=True)
class Verdict:
    """A guard's judgement of one text.

    ``categories`` name why it blocked (shown to the client only with ``reveal_failure_reason``; always audited).
    ``masked``, when set and not blocked, is the text the guard wants sent on instead (a service that anonymises).
    """

    blocked: bool
    categories: tuple[str, ...] = ()
    masked: str | None = None


ALLOW = Verdict(blocked=False)


@dataclass
class Guard:
    """One configured guard. Subclasses implement ``_check``; ``check`` adds the timeout.

    ``type`` is the value of the config's ``type`` that selects the class, and also the name of the sub-record
    holding the service's own settings (``fields``, in Kong's schema language; ``settings`` at run time).
    """

    type: ClassVar[str]
    fields: ClassVar[list[dict[str, Any]]] = []

    name: str
    config: dict[str, Any] = field(repr=False)

    def __post_init__(self) -> None:
        self.configure(self.settings)

    def configure(self, settings: dict[str, Any]) -> None:
        """Check and keep the service's settings; raise ``GuardConfigError`` for what cannot work."""

    @property
    def settings(self) -> dict[str, Any]:
        return self.config.get(self.type) or {}

    @property
    def text_source(self) -> str:
        return self.config.get("text_source") or TEXT_SOURCES[0]

    @property
    def reveal(self) -> bool:
        return bool(self.config.get("reveal_failure_reason"))

    @property
    def mode(self) -> str:
        return self.config.get("guarding_mode") or "INPUT"

    @property
    def fail_open(self) -> bool:
        return bool(self.config.get("fail_open"))

    @property
    def timeout(self) -> float:
        return float(self.config.get("timeout") or 10000) / 1000      # Kong's ``timeout`` is in milliseconds

    def guards(self, phase: Phase) -> bool:
        return self.mode == "BOTH" or self.mode == phase.upper()

    async def check(self, text: str, phase: Phase) -> Verdict:
        try:
            return await asyncio.wait_for(self._check(text, phase), self.timeout)
        except asyncio.TimeoutError as exc:
            raise GuardUnavailable(f"{self.name} did not answer within {self.timeout:g} s") from exc

    async def _check(self, text: str, phase: Phase) -> Verdict:
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the guard holds (HTTP sessions); called when the plugin instance goes."""

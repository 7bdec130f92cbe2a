"""One phase handler run, as Kong drives it: HandleEvent, then a Step per PDK call.

The handler and Kong take turns. ``_to_kong`` holds what Kong gets next (a PDK call or
"ret"); ``_from_kong`` holds Kong's answer to the pending PDK call. A handler error or a
handler that stalls becomes a ``kong.response.exit`` with a JSON error, so the client
gets an answer instead of a hung request.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from .pdk import TERMINAL_METHODS

RET = "ret"

# Phases in which a handler may still answer the client.
RESPONDING_PHASES = frozenset({"rewrite", "access", "response"})


class EventEnded(BaseException):
    """Raised inside a handler whose event is over (it called exit, or Kong gave up on it).

    A BaseException so that a plugin's ``except Exception`` cannot swallow it and carry on
    talking to an event that no longer exists.
    """


class HandlerStalled(Exception):
    """The handler produced no next step within the handler timeout."""


class Event:
    __slots__ = (
        "id", "instance_id", "phase", "touched", "_loop", "_to_kong", "_from_kong",
        "_task", "_ended", "_on_error",
    )

    def __init__(self, event_id: int, instance_id: int, phase: str,
                 on_error: Callable[["Event", BaseException], Any]):
        self.id = event_id
        self.instance_id = instance_id
        self.phase = phase
        self.touched = time.monotonic()
        self._loop = asyncio.get_running_loop()
        self._to_kong: asyncio.Future = self._loop.create_future()
        self._from_kong: asyncio.Future | None = None
        self._task: asyncio.Future | None = None
        self._ended = False
        self._on_error = on_error

    @property
    def ended(self) -> bool:
        return self._ended

    def start(self, runner: asyncio.Future) -> None:
        self._task = runner
        runner.add_done_callback(self._finished)

    async def call(self, method: str, args: tuple[Any, ...]) -> Any:
        """A PDK call from the handler: hand it to Kong and wait for Kong's answer."""
        if self._ended:
            raise EventEnded(method)
        self._from_kong = answer = self._loop.create_future()
        self._send({"Method": method, "Args": list(args)})
        if method in TERMINAL_METHODS:
            self._ended = True
            raise EventEnded(method)
        return await answer

    async def next_step(self, timeout: float) -> Any:
        """What Kong gets as the answer to HandleEvent or Step."""
        self.touched = time.monotonic()
        try:
            return await asyncio.wait_for(asyncio.shield(self._to_kong), timeout)
        except asyncio.TimeoutError:
            self._fail(HandlerStalled(f"no step within {timeout:g} s"))
            return self._to_kong.result()

    def answer(self, data: Any) -> None:
        """Kong's answer to the pending PDK call."""
        self.touched = time.monotonic()
        pending = self._from_kong
        if pending is None or pending.done():
            raise RuntimeError(f"event {self.id} is not waiting for a step")
        self._to_kong = self._loop.create_future()
        self._from_kong = None
        pending.set_result(data)

    def abandon(self) -> None:
        """Kong will never answer (it dropped the event); stop the handler."""
        self._ended = True
        if self._from_kong is not None and not self._from_kong.done():
            self._from_kong.set_exception(EventEnded("abandoned"))
        if self._task is not None and not self._task.done() and isinstance(self._task, asyncio.Task):
            self._task.cancel()

    def _send(self, data: Any) -> None:
        if not self._to_kong.done():
            self._to_kong.set_result(data)

    def _fail(self, exc: BaseException) -> None:
        if self._ended:
            return
        self._ended = True
        self._send(self._on_error(self, exc))
        self.abandon()

    def _finished(self, task: asyncio.Future) -> None:
        if task.cancelled():
            self._fail(asyncio.CancelledError())
            return
        exc = task.exception()
        if exc is None:
            if not self._ended:
                self._ended = True
                self._send(RET)
        elif not isinstance(exc, EventEnded):
            self._fail(exc)

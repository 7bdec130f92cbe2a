"""One phase handler run, as Kong drives it: HandleEvent, then a Step per PDK call.

The handler and Kong take turns. ``_to_kong`` holds what Kong gets next (a PDK call or
"ret"); ``_from_kong`` holds Kong's answer to the pending PDK call. A handler error or a
handler that stalls becomes a ``kong.response.exit`` with a JSON error, so the client
gets an answer instead of a hung request.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Any, Callable, Coroutine

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


_NOTHING = object()


class Event:
    """Kong and the handler take turns: Kong waits for the next step (``next_step``), the handler
    for Kong's answer to its PDK call (``call``). A step is handed to Kong's waiting request by a
    callback, as soon as the handler produces it: no task or timer per message (one watchdog in the
    server ends the waits that outlast the handler timeout)."""

    __slots__ = (
        "id", "instance_id", "phase", "touched", "_loop", "_step", "_waiter", "_out",
        "_from_kong", "_task", "_ended", "_on_error", "_coro", "_context", "_blocked", "_cancelling",
    )

    def __init__(self, event_id: int, instance_id: int, phase: str,
                 on_error: Callable[["Event", BaseException], Any], loop: asyncio.AbstractEventLoop | None = None):
        self.id = event_id
        self.instance_id = instance_id
        self.phase = phase
        self.touched = time.monotonic()
        self._loop = loop or asyncio.get_running_loop()
        self._step: Any = _NOTHING                          # produced, not yet taken by Kong
        self._waiter: Callable[[Any], None] | None = None   # Kong's request waiting for the next step
        self._out = False                                   # a step went to Kong; its answer is pending
        self._from_kong: asyncio.Future | None = None
        self._task: asyncio.Future | None = None
        self._ended = False
        self._on_error = on_error
        self._coro: Coroutine[Any, Any, Any] | None = None   # a handler driven inline (`drive`)
        self._context: contextvars.Context | None = None
        self._blocked: asyncio.Future | None = None          # what an inline handler awaits besides Kong
        self._cancelling = False

    @property
    def ended(self) -> bool:
        return self._ended

    def start(self, runner: asyncio.Future) -> None:
        self._task = runner
        runner.add_done_callback(self._finished)

    def drive(self, coro: Coroutine[Any, Any, Any], context: contextvars.Context) -> None:
        """Run the handler ``coro`` inline instead of in a task: up to its first PDK call now, and on from each of
        Kong's answers in the callback that brings it, so its next step is ready when Kong asks, with no task and
        no trip through the loop per step. Other awaits (a sleep, a future) are waited for as a task would.

        Only for handlers that need no current task (no ``asyncio.timeout``, no TaskGroup): `asyncio.current_task`
        is not theirs here."""
        self._coro = coro
        self._context = context
        self._resume(None)

    def _resume(self, value: Any, error: BaseException | None = None) -> None:
        coro = self._coro
        if coro is None:
            return
        if self._cancelling:   # `abandon`: the handler gets one CancelledError, as a cancelled task does
            self._cancelling = False
            error = error or asyncio.CancelledError()
        try:
            if error is None:
                awaited = self._context.run(coro.send, value)  # type: ignore[union-attr]
            else:
                awaited = self._context.run(coro.throw, error)  # type: ignore[union-attr]
        except StopIteration:
            self._coro = None
            self._finish(None)
            return
        except BaseException as exc:  # what a task would keep as its outcome, judged by _finish
            self._coro = None
            self._finish(exc)
            return
        if getattr(awaited, "_asyncio_future_blocking", None):
            awaited._asyncio_future_blocking = False
            if awaited is self._from_kong:   # Kong's answer resumes the handler (`answer`)
                return
        else:   # a bare yield (asyncio.sleep(0)) goes on at the loop's next turn; anything else is an error there
            later = self._loop.create_future()
            self._loop.call_soon(_settle, later, None if awaited is None else
                                 RuntimeError(f"a phase handler yielded {awaited!r}, not a future"))
            awaited = later
        self._blocked = awaited
        awaited.add_done_callback(self._wake)

    def _wake(self, future: asyncio.Future) -> None:
        self._blocked = None
        if future.cancelled():
            self._resume(None, asyncio.CancelledError())
        else:
            error = future.exception()
            self._resume(None if error is not None else future.result(), error)

    async def call(self, method: str, args: tuple[Any, ...]) -> Any:
        """A PDK call from the handler: hand it to Kong and wait for Kong's answer."""
        if self._ended:
            raise EventEnded(method)
        self._from_kong = answer = self._loop.create_future()
        if method in TERMINAL_METHODS:
            self._ended = True          # Kong sends nothing more for this event
            self._send({"Method": method, "Args": list(args)})
            raise EventEnded(method)
        self._send({"Method": method, "Args": list(args)})
        return await answer

    def next_step(self, deliver: Callable[[Any], None]) -> None:
        """Call ``deliver`` with what Kong gets as the answer to HandleEvent or Step: at once if the
        handler has produced it, else when it does (or an error exit once the handler is `stalled`)."""
        self.touched = time.monotonic()
        step = self._step
        if step is not _NOTHING:
            self._step = _NOTHING
            self._out = True
            deliver(step)
            return
        self._waiter = deliver   # the server's watchdog ends the wait after the handler timeout (see stalled)

    def answer(self, data: Any) -> None:
        """Kong's answer to the pending PDK call."""
        self.touched = time.monotonic()
        pending = self._from_kong
        if pending is None or pending.done():
            raise RuntimeError(f"event {self.id} is not waiting for a step")
        self._out = False
        self._from_kong = None
        pending.set_result(data)
        if self._coro is not None:
            self._resume(None)   # the handler reads ``data`` from the future it awaits

    @property
    def waiting(self) -> bool:
        """Kong is waiting for this event's next step (since ``touched``)."""
        return self._waiter is not None

    def abandon(self) -> None:
        """Kong will never answer (it dropped the event); stop the handler."""
        self._ended = True
        if self._from_kong is not None and not self._from_kong.done():
            if self._coro is None:
                self._from_kong.set_exception(EventEnded("abandoned"))
            else:   # no answer will come: the handler is cancelled below
                self._from_kong = None
        if self._coro is not None and not self._cancelling:   # as a task's cancel: the handler's await ends
            self._cancelling = True
            if self._blocked is not None:
                self._blocked.cancel()
            else:   # awaiting Kong's answer, which will not come
                self._loop.call_soon(self._resume, None)
        if self._task is not None and not self._task.done() and isinstance(self._task, asyncio.Task):
            self._task.cancel()

    def _send(self, data: Any) -> None:
        """The handler's next step: to Kong's waiting request, or kept until Kong asks."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            self._out = True
            waiter(data)
        elif self._step is _NOTHING and not self._out:
            self._step = data

    def stalled(self, timeout: float) -> None:
        """The handler produced no next step within ``timeout`` seconds: Kong gets an error exit."""
        exc = HandlerStalled(f"no step within {timeout:g} s")
        self._fail(exc)
        if self._waiter is not None:   # already ended some other way: Kong must still get an answer
            self._send(self._on_error(self, exc))

    def _fail(self, exc: BaseException) -> None:
        if self._ended:
            return
        self._ended = True
        self._send(self._on_error(self, exc))
        self.abandon()

    def _finished(self, task: asyncio.Future) -> None:
        self._finish(asyncio.CancelledError() if task.cancelled() else task.exception())

    def _finish(self, exc: BaseException | None) -> None:
        """The handler returned (``exc`` None) or raised ``exc``."""
        if exc is None:
            if not self._ended:
                self._ended = True
                self._send(RET)
        elif not isinstance(exc, EventEnded):
            self._fail(exc)


def _settle(future: asyncio.Future, error: BaseException | None) -> None:
    if not future.done():
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

"""The ``kong`` object handed to phase handlers.

Every attribute path is a PDK method name (``kong.request.get_path``); calling it sends
that name and the arguments to Kong and returns Kong's answer as a plain value (never a
``(value, err)`` pair). Async handlers ``await`` the call; sync, kong-pdk style handlers
call it directly from their worker thread.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Awaitable, Callable

import orjson

Call = Callable[[str, tuple[Any, ...]], Any]

# These PDK calls end the event on Kong's side: Kong answers them with no further Step.
TERMINAL_METHODS = frozenset({"kong.response.exit", "kong.response.error"})


class Namespace:
    """One level of the PDK tree; attribute access extends the dotted method name.

    A tree bound to a ``call`` serves one event. The shared tree (`KONG`, unbound) finds its event's ``call`` in
    the context of the task running the handler (`bound`), so an event costs no tree of its own.
    """

    __slots__ = ("_path", "_call", "__dict__")

    def __init__(self, path: str, call: Call | None):
        self._path = path
        self._call = call

    def __getattr__(self, name: str) -> "Namespace":
        if name.startswith("__"):
            raise AttributeError(name)
        child = Namespace(f"{self._path}.{name}", self._call)
        self.__dict__[name] = child  # cached: the next lookup skips __getattr__
        return child

    def __call__(self, *args: Any) -> Any:
        call = self._call
        if call is None:
            try:
                call = _event_call.get()
            except LookupError:
                raise RuntimeError(f"{self._path}() called outside a phase handler") from None
        return call(self._path, _prepare_args(self._path, args))

    def __repr__(self) -> str:
        return f"<pdk {self._path}>"


_event_call: contextvars.ContextVar[Call] = contextvars.ContextVar("tollgate_pdk_call")

KONG = Namespace("kong", None)
"""The ``kong`` every async handler gets; its calls go to the event of the task they are made from."""


def bound(call: Call) -> contextvars.Context:
    """A context for the task of one event's handler: `KONG`'s calls in it go to ``call``."""
    context = contextvars.copy_context()
    context.run(_event_call.set, call)
    return context


def _prepare_args(method: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    # A dict sent to Kong becomes a Lua table, and cjson writes an empty one as "{}" even when
    # it meant "[]" (FACTS.md), so response bodies always travel as JSON bytes.
    if method in TERMINAL_METHODS and len(args) >= 2 and isinstance(args[1], (dict, list)):
        args = (args[0], orjson.dumps(args[1]), *args[2:])
    elif method in TERMINAL_METHODS and len(args) >= 2 and isinstance(args[1], str):
        args = (args[0], args[1].encode(), *args[2:])
    return args


def sync_kong(call: Callable[[str, tuple[Any, ...]], Awaitable[Any]], loop: asyncio.AbstractEventLoop) -> Namespace:
    """A ``kong`` for handlers running in a worker thread: each call blocks that thread only."""

    def blocking(method: str, args: tuple[Any, ...]) -> Any:
        return asyncio.run_coroutine_threadsafe(call(method, args), loop).result()

    return Namespace("kong", blocking)

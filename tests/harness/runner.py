"""Run a :class:`KongDouble` on its own event loop in a thread, for synchronous tests."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any, Callable, TypeVar

from .kong import KongDouble

T = TypeVar("T")


class KongDoubleThread:
    """``with KongDoubleThread(entries, config, ...) as kong:`` then ``kong.url``.

    Takes the same arguments as :class:`KongDouble`. ``double`` is the KongDouble (read
    ``stats``, ``logs``, ``messages``; set ``faults``); ``call(fn)`` runs
    ``fn(double)`` (sync or async) on the double's loop and returns its result."""

    def __init__(self, *args: Any, **kwargs: Any):
        self._args = args
        self._kwargs = kwargs
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="kong-double", daemon=True)
        self.double: KongDouble | None = None

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self, timeout: float = 120.0) -> "KongDoubleThread":
        self._thread.start()

        async def make() -> KongDouble:
            d = KongDouble(*self._args, **self._kwargs)
            await d.start()
            return d

        self.double = asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self.double is not None:
            try:
                asyncio.run_coroutine_threadsafe(self.double.stop(), self.loop).result(timeout)
            finally:
                self.double = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        self.loop.close()

    def __enter__(self) -> "KongDoubleThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def call(self, fn: Callable[[KongDouble], Any], timeout: float = 60.0) -> Any:
        assert self.double is not None

        async def run() -> Any:
            r = fn(self.double)  # type: ignore[arg-type]
            if inspect.isawaitable(r):
                r = await r
            return r

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def settle(self, timeout: float = 10.0) -> None:
        self.call(lambda d: d.settle(timeout), timeout + 5)

    def load_config(self, doc: dict) -> None:
        self.call(lambda d: d.load_config(doc))

    @property
    def url(self) -> str:
        assert self.double is not None
        return self.double.url

    @property
    def stats(self) -> Any:
        assert self.double is not None
        return self.double.stats

    @property
    def faults(self) -> Any:
        assert self.double is not None
        return self.double.faults

    @property
    def logs(self) -> Any:
        assert self.double is not None
        return self.double.logs

    @property
    def messages(self) -> Any:
        assert self.double is not None
        return self.double.messages

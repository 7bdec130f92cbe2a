"""The completion a request is expected to cost, reserved at admission so that a burst cannot overshoot a limit.

A burst is admitted before any of its answers is known: counting only prompts, every request in flight passes and
the window ends far over its limit. So each admitted request also reserves an expected completion, settled to the
provider's exact usage afterwards:

* with ``reserve_max_tokens``: the output cap (the request's ``max_tokens``, else the proxy's ``model.options``),
  which no answer exceeds: the limit then holds exactly;
* else (the default): the 95th percentile of the completions recently answered on the route and model, or the cap
  when that is lower; before the first answer, ``default_completion_tokens`` (or the cap when lower);
* never more than the window could hold with the prompt, so a request the window can take is never refused for
  its reservation alone.

The bound: a window ends over its limit only by what admitted answers exceed their reservation, so at most by
(requests admitted in flight) x (answer - expected completion); with answers no longer than the recent 95th
percentile, not at all. The samples are kept in the store (``SAMPLES`` slots per route and model, shared by every
node on Redis, each answer overwriting a random slot) and mirrored in memory, so admission costs no store call. A
node writes its answers at most every ``WRITE_SECONDS`` per route and model, those since its last write in one call
(and before it reads the others'), so a busy route costs the store a write now and then, not one per request.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from typing import Any

from ... import log
from ...store import StoreUnavailable

logger = log.get("token-limit")

QUANTILE = 0.95
SAMPLES = 64
REFRESH_SECONDS = 2.0      # how often a node reads the samples other nodes wrote
WRITE_SECONDS = 0.5        # how often, at most, it writes its own
TTL_SECONDS = 86400.0      # samples of a route and model nobody asks about go away


class _Samples:
    __slots__ = ("values", "refreshed_at", "refreshing", "_quantile", "unwritten", "written_at")

    def __init__(self) -> None:
        self.values: deque[int] = deque(maxlen=SAMPLES)
        self.refreshed_at = 0.0
        self.refreshing: asyncio.Future | None = None
        self._quantile: int | None = None
        self.unwritten: dict[str, bytes] = {}   # this node's answers since its last write, by the slot each takes
        self.written_at = -WRITE_SECONDS

    def add(self, value: int) -> None:
        self.values.append(value)
        self._quantile = None

    def replace(self, values: list[int]) -> None:
        self.values = deque(values[-SAMPLES:], maxlen=SAMPLES)
        self._quantile = None

    def quantile(self) -> int | None:
        """Nearest-rank 95th percentile (the largest value while there are fewer than 20)."""
        if self._quantile is None and self.values:
            ordered = sorted(self.values)
            self._quantile = ordered[max(0, math.ceil(QUANTILE * len(ordered)) - 1)]
        return self._quantile


class CompletionEstimates:
    """Recent completion sizes per route and model: read from memory, written through to the store."""

    def __init__(self) -> None:
        self._samples: dict[str, _Samples] = {}

    def expected(self, key: str, store: Any) -> int | None:
        """The learnt expected completion for ``key``, None before any answer; refreshes from the store in the
        background now and then (admission never waits for it)."""
        samples = self._samples.get(key)
        if samples is None:
            if len(self._samples) >= 10_000:
                self._samples.clear()
            samples = self._samples[key] = _Samples()
        moment = time.monotonic()
        if samples.refreshing is None and moment - samples.refreshed_at >= REFRESH_SECONDS:
            samples.refreshed_at = moment
            samples.refreshing = asyncio.ensure_future(self._refresh(key, store, samples))
        return samples.quantile()

    async def record(self, key: str, store: Any, completion: int) -> None:
        """One answer's completion tokens: into memory at once, into a random slot of the store's ring with the
        others of the last ``WRITE_SECONDS`` (StoreUnavailable: they are lost, which only delays learning)."""
        samples = self._samples.get(key)
        if samples is None:   # (not setdefault: that builds a _Samples on every answer)
            samples = self._samples[key] = _Samples()
        samples.add(completion)
        samples.unwritten[str(random.randrange(SAMPLES))] = str(completion).encode()
        if time.monotonic() - samples.written_at >= WRITE_SECONDS:
            await self._write(key, store, samples)

    async def _write(self, key: str, store: Any, samples: _Samples) -> None:
        unwritten, samples.unwritten = samples.unwritten, {}
        samples.written_at = time.monotonic()
        if unwritten:
            await store.hset(key, unwritten, ttl=TTL_SECONDS)

    async def _refresh(self, key: str, store: Any, samples: _Samples) -> None:
        try:
            await self._write(key, store, samples)   # the store then holds what this node learnt
            stored = await store.hgetall(key)
        except StoreUnavailable as exc:
            log.event(logger, "completion samples unavailable", 20, key=key, error=str(exc))
            return
        finally:
            samples.refreshing = None
        values = [int(v) for v in stored.values() if v.isdigit()]
        if len(values) >= len(samples.values):   # the store has at least what this node learnt
            samples.replace(values)


ESTIMATES = CompletionEstimates()
"""One per process: every instance of the plugin (each config build starts new ones) shares what was learnt."""


def reservation(*, cap: int | None, learnt: int | None, default: int, exact: bool, room: int) -> int:
    """The completion tokens to reserve (see the module's rule); ``room`` is what the smallest window leaves for
    the completion once the prompt is in it."""
    if exact and cap:
        wanted = cap
    else:
        wanted = learnt if learnt is not None else default
        if cap:
            wanted = min(wanted, cap)
    return max(0, min(wanted, room))

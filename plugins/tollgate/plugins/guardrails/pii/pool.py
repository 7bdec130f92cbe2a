"""Building the analyzer and running it without stalling the event loop.

Engines are built in the pool, once per distinct ``pii`` config: loading Presidio takes seconds of CPU, which
must not freeze the plugin server while Kong waits on it.

Small texts (a stream's look-behind window, a short prompt) are analysed in place: a thread hop would cost more
than the work. Larger ones, and all of an engine that runs the spaCy model, go to a small thread pool, so one long
prompt does not hold up every other request's tokens. Any failure inside the analyzer becomes `AnalyzerFailed`,
which the policy turns into a fail-closed error (or lets pass, with ``fail_open``).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .entities import Finding

if TYPE_CHECKING:
    from .engine import PiiEngine

INLINE_CHARS = 1024
_pool: ThreadPoolExecutor | None = None


class AnalyzerFailed(Exception):
    """The PII analyzer raised; the text was not checked."""


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tollgate-pii")
    return _pool


_engines: dict[tuple[Any, ...], Future[PiiEngine]] = {}
_engines_lock = threading.Lock()


def _build(pii: dict[str, Any]) -> PiiEngine:
    from .engine import PiiEngine
    return PiiEngine(pii)


def engine_future(pii: dict[str, Any]) -> Future[PiiEngine]:
    """The engine of a ``pii`` config (checked by `entities.check`), building or built, shared by equal configs."""
    custom = tuple((c["name"], c["regex"], c.get("score")) for c in pii.get("custom_patterns") or [])
    key = (tuple(pii.get("entities") or []), pii.get("score_threshold"), custom,
           tuple(pii.get("phone_regions") or []))
    with _engines_lock:
        future = _engines.get(key)
        if future is None:
            future = _engines[key] = _executor().submit(_build, pii)
    return future


def _run(engine: PiiEngine, texts: list[str]) -> list[list[Finding]]:
    try:
        return [engine.analyze(t) for t in texts]
    except Exception as exc:          # any analyzer bug or resource error: the text is unchecked
        raise AnalyzerFailed(type(exc).__name__) from exc


async def analyze_all(engine: PiiEngine, texts: list[str]) -> list[list[Finding]]:
    """The findings of each of ``texts`` (same order); texts the pre-scan clears cost nothing more."""
    todo = [i for i, t in enumerate(texts) if engine.needed(t)]
    found: list[list[Finding]] = [[] for _ in texts]
    if not todo:
        return found
    chosen = [texts[i] for i in todo]
    if not engine.heavy and sum(map(len, chosen)) <= INLINE_CHARS:
        results = _run(engine, chosen)
    else:
        results = await asyncio.get_running_loop().run_in_executor(_executor(), _run, engine, chosen)
    for i, result in zip(todo, results):
        found[i] = result
    return found

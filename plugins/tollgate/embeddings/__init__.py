"""Text to vectors for the semantic cache and semantic routing: the embedded model (``local``) or a provider's
embeddings API.

`embedder_for` gives one `Embedder` per distinct model config, shared by every plugin instance of the process, so
the local model loads once; `from_config` reads a plugin's ``embeddings`` record (``schema.EMBEDDINGS``).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

from ..providers import UnknownProvider, driver_for
from ..providers.base import EMBEDDINGS, ProviderError, Target

LOCAL = "local"
PROVIDERS = ("local", "openai", "azure", "mistral", "gemini", "bedrock", "cohere", "openai-compatible")


class EmbeddingError(Exception):
    """No vector could be had for a text (the provider failed, the model is missing...)."""


@dataclass
class Embedding:
    vector: np.ndarray
    tokens: int
    latency_ms: float


class Embedder(Protocol):
    provider: str
    model: str

    async def embed(self, text: str) -> Embedding: ...


class RecentTexts:
    """The embeddings of the last texts asked for, finished or in flight. On a route with semantic routing, the
    semantic cache and a semantic guard, each plugin embeds the same prompt; this runs the model (or pays the
    provider) once. A failure is not remembered; a caller that gives up does not stop the others' embedding.
    The vectors are shared, so they are made read-only."""

    def __init__(self, size: int = 256, max_chars: int = 32_768):
        self.size, self.max_chars = size, max_chars
        self._recent: OrderedDict[str, asyncio.Task[Embedding]] = OrderedDict()

    async def get(self, text: str, compute: Callable[[str], Awaitable[Embedding]]) -> Embedding:
        if len(text) > self.max_chars:
            return await compute(text)
        started = time.perf_counter()
        task = self._recent.get(text)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = asyncio.ensure_future(self._frozen(compute(text)))
            task.add_done_callback(lambda done: self._forget_failed(text, done))
            self._recent[text] = task
            if len(self._recent) > self.size:
                self._recent.popitem(last=False)
            return await asyncio.shield(task)
        self._recent.move_to_end(text)
        found = await asyncio.shield(task)
        # the tokens were paid for by the first caller
        return Embedding(found.vector, 0, (time.perf_counter() - started) * 1000)

    @staticmethod
    async def _frozen(work: Awaitable[Embedding]) -> Embedding:
        embedding = await work
        embedding.vector.flags.writeable = False
        return embedding

    def _forget_failed(self, text: str, task: asyncio.Task[Embedding]) -> None:
        if (task.cancelled() or task.exception() is not None) and self._recent.get(text) is task:
            del self._recent[text]


# One thread runs the local model: numpy releases the GIL in its matrix products, so the event loop keeps serving
# while a prompt is embedded; a second thread would only compete for the same cores.
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tollgate-embed")


@dataclass
class LocalEmbedder:
    """all-MiniLM-L6-v2 in this process (see minilm.py)."""

    provider: str = LOCAL
    model: str = "all-MiniLM-L6-v2"
    recent: RecentTexts = field(default_factory=RecentTexts, repr=False, compare=False)

    async def embed(self, text: str) -> Embedding:
        return await self.recent.get(text, self._embed)

    async def _embed(self, text: str) -> Embedding:
        from . import minilm

        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            vector, tokens = await loop.run_in_executor(_executor, _run_local, text)
        except minilm.ModelMissing as exc:
            raise EmbeddingError(str(exc)) from None
        return Embedding(vector, tokens, (time.perf_counter() - started) * 1000)


def _run_local(text: str) -> tuple[np.ndarray, int]:
    from . import minilm

    return minilm.shared().embed(text)


@dataclass
class ProviderEmbedder:
    """A provider's embeddings API through the proxy's own driver for it (the same wire formats and auth)."""

    provider: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    auth: dict[str, Any] = field(default_factory=dict)
    timeout: float = 10.0
    recent: RecentTexts = field(default_factory=RecentTexts, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            self.driver = driver_for(self.provider)
        except UnknownProvider as exc:
            raise ValueError(f"embeddings provider {exc} is not known") from None
        self.target = Target(provider=self.provider, model=self.model, options=self.options, auth=self.auth)

    async def embed(self, text: str) -> Embedding:
        return await self.recent.get(text, self._embed)

    async def _embed(self, text: str) -> Embedding:
        from ..plugins.proxy.attempt import Answer, call

        started = time.perf_counter()
        try:
            request = self.driver.build_request(EMBEDDINGS, {"model": self.model, "input": text}, self.target, False)
        except ProviderError as exc:
            raise EmbeddingError(f"embeddings request cannot be built: {exc.message}") from None
        outcome = await call(self.driver, EMBEDDINGS, self.target, request, stream=False,
                             connect_timeout=min(5.0, self.timeout), read_timeout=self.timeout,
                             deadline=time.monotonic() + self.timeout)
        if not isinstance(outcome, Answer):
            raise EmbeddingError(f"embeddings provider {self.provider} failed: {outcome.status} "
                                 f"{outcome.message[:200]}")
        try:
            vector = np.asarray(outcome.data["data"][0]["embedding"], dtype=np.float32)
        except (KeyError, IndexError, TypeError, ValueError):
            raise EmbeddingError(f"embeddings provider {self.provider} answered without an embedding") from None
        tokens = outcome.usage.prompt_tokens if outcome.usage is not None else 0
        return Embedding(vector, tokens, (time.perf_counter() - started) * 1000)


_embedders: dict[bytes, Embedder] = {}


def from_config(embeddings: dict[str, Any] | None) -> Embedder:
    """The embedder a plugin's ``embeddings`` record names (unset fields, as Kong sends them, are nulls)."""
    embeddings = embeddings or {}
    model = {k: v for k, v in (embeddings.get("model") or {}).items() if v is not None}
    auth = {k: v for k, v in (embeddings.get("auth") or {}).items() if v not in (None, False)}
    return embedder_for(model, auth, float(embeddings.get("timeout") or 10))


def embedder_for(model: dict[str, Any], auth: dict[str, Any] | None = None, timeout: float = 10.0) -> Embedder:
    """The process's embedder for an ``embeddings.model`` config (``provider``, ``name``, ``options``); ``timeout``
    (seconds) bounds a provider's call."""
    provider = model.get("provider") or LOCAL
    if provider == LOCAL:
        name = model.get("name") or "all-MiniLM-L6-v2"
        if name != "all-MiniLM-L6-v2":
            raise ValueError(f"the local embeddings model is all-MiniLM-L6-v2, not {name!r}")
        # the local model ignores auth, options and timeout: one embedder, so one memo of recent texts, for every
        # plugin that names it
        key = LOCAL.encode()
    else:
        key = orjson.dumps([model, auth or {}, timeout], option=orjson.OPT_SORT_KEYS)
    found = _embedders.get(key)
    if found is not None:
        return found
    if provider == LOCAL:
        made: Embedder = LocalEmbedder()
    else:
        if not model.get("name"):
            raise ValueError(f"embeddings.model.name is required for provider {provider}")
        made = ProviderEmbedder(provider, model["name"], dict(model.get("options") or {}), dict(auth or {}), timeout)
    _embedders[key] = made
    return made

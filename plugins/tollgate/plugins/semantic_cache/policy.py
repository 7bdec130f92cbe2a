"""The relay side of tollgate-semantic-cache: answer from the cache before the provider is called, fill it after.

Request stage (`before`, priority 771: after limits and guards, before the proxy):
1. ``Cache-Control: no-store`` is a Bypass, ``no-cache`` a Refresh (look nothing up, fill); ``max-age`` bounds the
   age of a hit when ``cache_control`` is on.
2. The **exact tier**: the entry filed under the request's exact key (one store read, no embedding).
3. The **semantic tier**: embed the last ``message_countback`` messages, search the request's partition (see
   keys.py: scope, models, system prompt, history and parameters must all match), and serve the best candidate that
   also passes the agreement guard (agreement.py: numbers, negations, opposites, quotes, names, language).
A hit is a `Reply` in the client's mode (JSON, or SSE chunks with a usage chunk when asked); it passes the answer
filters of the stages before this one, charges nothing (no usage is reported to limits and budgets) and says what it
saved in the analytics. Anything else is a Miss and goes on to the provider.

Fill (`answer_filter` assembles, `after` writes): only a complete 2xx answer whose every choice finished with an
accepted reason, that no later filter refused and whose client stayed to the end. Errors never reach the filter
(the proxy answers them itself), and a stream that broke off never reaches its flush, so neither is ever cached.

Store or embeddings failure: ``stop_on_failure`` decides between a 503 and a Bypass (logged); lookups are bounded
in time, so the cache never hangs a request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from prometheus_client import Counter, Histogram

from ... import log, metrics, runtime
from ...context import RequestContext
from ...embeddings import EmbeddingError, Embedder
from ...embeddings import from_config as embeddings_from_config
from ...providers.base import CHAT, PRESERVE, Usage
from ...relay.errors import openai_error
from ...relay.pipeline import AnswerFilter, Chunk, Reply
from ...store import StoreError
from ..base import Policy
from ..limits import candidate_targets, proxy_of
from ..proxy import costs
from .agreement import Features, agree
from .answers import Assembler, cacheable, replay_body, replay_chunks
from .keys import Described, NotCacheable, describe
from .vectordb import StoreVectorDB, VectorDB, latest_purge

logger = log.get("semantic-cache")

STATUS_HEADER = "X-Cache-Status"
CANDIDATES = 4                # semantic candidates read per lookup: the guard may turn down the best one
LOCAL_DIMENSIONS = 384

lookups_total = Counter("tollgate_ai_llm_cache_lookups_total", "Semantic cache lookups by outcome",
                                ("cache_status", "tier", "vector_db", "embeddings_provider", "embeddings_model"),
                                registry=metrics.REGISTRY)
saved_tokens_total = Counter("tollgate_ai_llm_cache_saved_tokens_total",
                                     "Tokens not sent to a provider because the cache answered", ("token_type",),
                                     registry=metrics.REGISTRY)
fetch_latency_ms = Histogram("tollgate_ai_llm_cache_fetch_latency", "Cache lookup time in ms", ("vector_db",),
                                     buckets=(0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000), registry=metrics.REGISTRY)
embeddings_latency_ms = Histogram("tollgate_ai_llm_cache_embeddings_latency", "Embedding time in ms",
                                          ("embeddings_provider",), buckets=(1, 2, 5, 10, 15, 25, 50, 100, 250, 1000),
                                          registry=metrics.REGISTRY)


@dataclass
class Lookup:
    """One request's cache state, from the lookup to the fill."""

    described: Described
    namespace: str
    started: float
    features: Features | None = None
    vector: np.ndarray | None = None
    filler: "Filler | None" = None
    fill: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


class Filler(AnswerFilter):
    """Sees the provider's answer as it goes to the client (nearest the provider: before any PII restore) and keeps
    the whole of it; it changes and holds back nothing."""

    def __init__(self) -> None:
        self.assembler: Assembler | None = None
        self.result: Chunk | None = None

    async def feed(self, chunk: Chunk) -> list[Chunk]:
        if self.assembler is None:
            self.assembler = Assembler()
        self.assembler.feed(chunk)
        return [chunk]

    async def flush(self) -> list[Chunk]:
        if self.assembler is not None:
            self.result = self.assembler.body()       # only a complete stream gets here
        return []

    async def answer(self, body: Chunk) -> Chunk:
        self.result = body
        return body


class SemanticCachePolicy(Policy):
    def __init__(self, config: dict[str, Any], plugin: str):
        super().__init__(config, plugin)
        self.embedder: Embedder = embeddings_from_config(config.get("embeddings"))
        vectordb = config.get("vectordb") or {}
        self.strategy = vectordb.get("strategy") or "local"
        self.threshold = float(vectordb.get("threshold", 0.8))
        dimensions = vectordb.get("dimensions")
        if self.embedder.provider == "local" and dimensions not in (None, LOCAL_DIMENSIONS):
            raise ValueError(f"vectordb.dimensions is {dimensions}, but the local model's vectors have "
                             f"{LOCAL_DIMENSIONS}")
        self.dimensions = dimensions or (LOCAL_DIMENSIONS if self.embedder.provider == "local" else None)
        if self.strategy == "redis" and not ((vectordb.get("redis") or {}).get("url")
                                             or runtime.current().settings.redis_url):
            raise ValueError("vectordb.strategy redis needs vectordb.redis.url (or the process's --redis-url)")
        if self.strategy == "pgvector":
            from .pgvector import check_config

            check_config(vectordb.get("pgvector") or {}, self.dimensions)
        self.ttl = float(config.get("cache_ttl") or 300)
        self.timeout = max(1.0, float((vectordb.get("redis") or {}).get("timeout") or 0.25) * 4)
        self._db: VectorDB | None = None

    # -- the vector database ----------------------------------------------------------------------------------------

    @property
    def db(self) -> VectorDB:
        if self._db is None:
            vectordb = self.config.get("vectordb") or {}
            if self.strategy == "pgvector":
                from .pgvector import PgVectorDB

                self._db = PgVectorDB.shared(vectordb.get("pgvector") or {}, self.dimensions)
            else:
                self._db = StoreVectorDB(runtime.current().store_for(vectordb), self.strategy)
        return self._db

    # -- the request stage ------------------------------------------------------------------------------------------

    async def before(self, ctx: RequestContext) -> Any:
        proxy = proxy_of(ctx)
        route_type = proxy.route_type if proxy is not None else CHAT
        if route_type == PRESERVE:
            return openai_error(500, f"{self.plugin} cannot work on a route_type preserve route (it must see answers "
                                "in OpenAI's format); remove it from this route", "server_error", "misconfigured")
        if proxy is not None:
            refused = await proxy.before(ctx)        # a request the proxy refuses must not be answered from cache
            if refused is not None:
                return refused
        control = _cache_control(ctx.headers.get("cache-control", ""))
        if "no-store" in control:
            return self._bypass(ctx, "Cache-Control: no-store")
        body = ctx.json_object()
        if body is None:
            return None
        scope = self._scope(ctx)
        try:
            described = describe(body, route_type, self.config, scope,
                                 [(provider, model) for provider, model, _ in candidate_targets(ctx)])
        except NotCacheable as exc:
            return self._bypass(ctx, str(exc))
        lookup = Lookup(described, f"sc:{self.embedder.provider}:{self.embedder.model}:{described.partition}",
                        time.perf_counter())
        ctx.meta[self.plugin] = lookup
        refresh = "no-cache" in control
        max_age = control.get("max-age") if self.config.get("cache_control") else None
        try:
            async with asyncio.timeout(self.timeout + (self._embed_timeout() if not refresh else 0)):
                if refresh:
                    lookup.vector = await self._embed(ctx, lookup)
                else:
                    hit = await self._find(ctx, lookup, max_age)
                    if hit is not None:
                        return hit
        except (StoreError, EmbeddingError, TimeoutError, OSError) as exc:
            return self._failure(ctx, lookup, exc)
        lookup.fill = True
        self._status(ctx, lookup, "Refresh" if refresh else "Miss", "none")
        ctx.response_headers["X-Cache-Key"] = described.exact
        return None

    async def _find(self, ctx: RequestContext, lookup: Lookup, max_age: float | None) -> Reply | None:
        described = lookup.described
        exact_key = described.exact if self.config.get("exact_caching", True) else ""
        found, purges = await self.db.exact(exact_key)
        now = runtime.current().clock()
        if found is not None:
            entry = _decode(found)
            if entry is not None and self._usable(entry, now, purges, max_age):
                return self._hit(ctx, lookup, entry, now, None)
        vector = await self._embed(ctx, lookup)
        lookup.vector = vector
        lookup.features = Features.of(described.text)
        candidates = await self.db.search(lookup.namespace, vector, CANDIDATES, self.threshold)
        for score, payload in candidates:
            entry = _decode(payload)
            if entry is None or not self._usable(entry, now, purges, max_age):
                continue
            disagreement = agree(lookup.features, Features.from_json(entry["features"]))
            if disagreement is None:
                return self._hit(ctx, lookup, entry, now, score)
            lookup.meta.setdefault("rejected", []).append({"similarity": round(score, 4), "reason": disagreement})
        return None

    async def _embed(self, ctx: RequestContext, lookup: Lookup) -> np.ndarray:
        embedding = await self.embedder.embed(lookup.described.text)
        if self.dimensions is not None and embedding.vector.shape[0] != self.dimensions:
            raise EmbeddingError(f"the embeddings model returned {embedding.vector.shape[0]} dimensions, "
                                 f"vectordb.dimensions is {self.dimensions}")
        lookup.meta["embeddings_tokens"] = embedding.tokens
        embeddings_latency_ms.labels(self.embedder.provider).observe(embedding.latency_ms)
        return embedding.vector

    def _embed_timeout(self) -> float:
        return float(getattr(self.embedder, "timeout", 5.0))

    def _usable(self, entry: dict[str, Any], now: float, purges: dict[str, Any], max_age: float | None) -> bool:
        created = float(entry.get("created") or 0)
        age = now - created
        if age >= self.ttl or (max_age is not None and age > max_age):
            return False
        return not purges or created > latest_purge(purges, entry.get("route"), entry.get("consumers") or [])

    def _scope(self, ctx: RequestContext) -> str:
        scope = self.config.get("scope") or "consumer"
        if scope == "global":
            return "global"
        route = f"route:{ctx.route_id or ''}"
        consumer = ctx.identity.get("id")
        if scope == "consumer" and consumer:
            return f"{route}|consumer:{consumer}"
        return route

    # -- outcomes ---------------------------------------------------------------------------------------------------

    def _hit(self, ctx: RequestContext, lookup: Lookup, entry: dict[str, Any], now: float,
             similarity: float | None) -> Reply:
        age = max(0.0, now - float(entry["created"]))
        headers = {STATUS_HEADER: "Hit", "X-Cache-Key": lookup.described.exact,
                   "X-Cache-Ttl": str(max(0, math.floor(self.ttl - age))), "Age": str(math.floor(age))}
        if similarity is not None:
            headers["X-Cache-Similarity"] = f"{similarity:.4f}"
        tier = "exact" if similarity is None else "semantic"
        self._status(ctx, lookup, "Hit", tier)
        ctx.meta["provider"], ctx.meta["model"] = entry.get("provider"), entry.get("model")
        usage = entry.get("usage") or {}
        saved = {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
                 "completion_tokens": int(usage.get("completion_tokens") or 0)}
        for kind, count in saved.items():
            if count:
                saved_tokens_total.labels(kind).inc(count)
        cost = entry.get("cost")
        ctx.meta["cache"].update({"tier": tier, "similarity": round(similarity, 4) if similarity is not None else None,
                                  "age": math.floor(age), "saved": {**saved, "cost": cost}})
        answer = entry["answer"]
        checked = ctx.meta.get("request") or {}
        stream = checked.get("stream")
        if stream is None:
            body = ctx.json()
            stream = bool(body.get("stream"))
        if stream:
            return Reply(chunks=replay_chunks(answer, int(now), bool(checked.get("client_wants_usage"))),
                         headers=headers)
        return Reply(body=replay_body(answer, int(now)), headers=headers)

    def _bypass(self, ctx: RequestContext, reason: str) -> None:
        ctx.response_headers[STATUS_HEADER] = "Bypass"
        ctx.meta["cache_status"] = "Bypass"
        ctx.meta["cache"] = {"cache_status": "Bypass", "reason": reason, "vector_db": self.strategy}
        lookups_total.labels("Bypass", "none", self.strategy, self.embedder.provider, self.embedder.model).inc()
        return None

    def _failure(self, ctx: RequestContext, lookup: Lookup, exc: BaseException) -> Any:
        what = "embeddings" if isinstance(exc, EmbeddingError) else "vector database"
        reason = str(exc) or type(exc).__name__
        log.event(logger, "cache unavailable", logging.WARNING, plugin=self.plugin, route_id=ctx.route_id,
                  part=what, stop_on_failure=bool(self.config.get("stop_on_failure")), error=reason[:300])
        ctx.meta.pop(self.plugin, None)
        if self.config.get("stop_on_failure"):
            ctx.meta["cache_status"] = "Failed"
            ctx.meta["cache"] = {"cache_status": "Failed", "reason": f"{what} unavailable", "vector_db": self.strategy}
            return openai_error(503, f"{self.plugin}: the cache's {what} is unavailable and the route is configured "
                                "to stop on cache failures", "api_error", "cache_unavailable")
        return self._bypass(ctx, f"{what} unavailable: {reason[:200]}")

    def _status(self, ctx: RequestContext, lookup: Lookup, status: str, tier: str) -> None:
        ctx.response_headers[STATUS_HEADER] = status
        ctx.meta["cache_status"] = status
        fetch_ms = (time.perf_counter() - lookup.started) * 1000
        fetch_latency_ms.labels(self.strategy).observe(fetch_ms)
        lookups_total.labels(status, tier, self.strategy, self.embedder.provider, self.embedder.model).inc()
        ctx.meta["cache"] = {"cache_status": status, "vector_db": self.strategy, "cache_key": lookup.described.exact,
                             "embeddings_provider": self.embedder.provider, "embeddings_model": self.embedder.model,
                             "embeddings_tokens": lookup.meta.get("embeddings_tokens"),
                             **({"rejected": lookup.meta["rejected"]} if lookup.meta.get("rejected") else {})}

    # -- the answer and the fill ------------------------------------------------------------------------------------

    def answer_filter(self, ctx: RequestContext) -> AnswerFilter | None:
        lookup: Lookup | None = ctx.meta.get(self.plugin)
        if lookup is None or not lookup.fill:
            return None
        lookup.filler = Filler()
        return lookup.filler

    async def after(self, ctx: RequestContext) -> None:
        lookup: Lookup | None = ctx.meta.get(self.plugin)
        if lookup is None or not lookup.fill or lookup.filler is None:
            return
        answer = lookup.filler.result
        reason = None
        if answer is None:
            reason = "incomplete answer"
        elif ctx.status != 200 or ctx.meta.get("refused_by_filter") or ctx.meta.get("client_disconnected"):
            reason = "answer not delivered whole"
        else:
            reason = cacheable(answer, list(self.config.get("cache_finish_reasons") or ["stop"]),
                               bool(self.config.get("cache_tool_calls")))
        if reason is not None:
            ctx.meta.setdefault("cache", {})["not_stored"] = reason
            return
        assert answer is not None
        usage: Usage | None = ctx.usage
        if usage is not None:
            answer = {**answer, "usage": usage.as_openai()}
        features = lookup.features or Features.of(lookup.described.text)
        target = ctx.meta.get("chosen_target")
        cost = ctx.meta.get("cost")
        if cost is None and target is not None and usage is not None:
            cost = costs.of_usage(costs.prices(target.provider, target.model, target.options or {}), usage)
        entry = {"v": 1, "created": runtime.current().clock(), "route": ctx.route_id,
                 "consumers": [str(ctx.identity[k]) for k in ("id", "username", "custom_id") if ctx.identity.get(k)], "answer": answer, "usage": answer.get("usage"),
                 "provider": ctx.meta.get("provider"), "model": ctx.meta.get("model"), "cost": cost,
                 "features": features.as_json()}
        exact = lookup.described.exact if self.config.get("exact_caching", True) else None
        try:
            async with asyncio.timeout(self.timeout):
                await self.db.put(lookup.namespace, lookup.described.exact, exact, lookup.vector,
                                  orjson.dumps(entry), self.ttl)
        except (StoreError, TimeoutError, OSError, ValueError) as exc:
            log.event(logger, "cache fill failed", logging.WARNING, plugin=self.plugin, route_id=ctx.route_id,
                      error=str(exc)[:300])
            ctx.meta.setdefault("cache", {})["not_stored"] = "vector database unavailable"
            return
        ctx.meta.setdefault("cache", {})["stored"] = True


def _decode(payload: bytes) -> dict[str, Any] | None:
    try:
        entry = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("answer"), dict) else None


def _cache_control(header: str) -> dict[str, float | bool]:
    """The request's Cache-Control directives (RFC 9111): names lower-cased, max-age as seconds."""
    directives: dict[str, float | bool] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        name = name.strip().lower()
        if not name:
            continue
        if name == "max-age":
            try:
                directives[name] = max(0.0, float(value.strip().strip('"')))
            except ValueError:
                continue
        else:
            directives[name] = True
    return directives

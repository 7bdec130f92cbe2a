"""What each request through the relay leaves behind: Kong-named metrics and one JSON log line.

The log line uses Kong's analytics layout (``ai.proxy.meta``, ``ai.proxy.usage``) so log
pipelines built for Kong's AI plugins read it unchanged. Payloads appear only when the
route's ``logging.log_payloads`` is on.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from . import log, metrics
from .context import RequestContext

logger = log.get("analytics")


class _Series(NamedTuple):
    """The labelled metrics of one provider, model and cache status (looked up once, then reused)."""

    requests: Any
    prompt_tokens: Any
    completion_tokens: Any
    total_tokens: Any
    cost: Any
    latency: Any
    ttft: Any


_series: dict[tuple[str, ...], _Series] = {}
_MAX_SERIES = 10_000   # beyond this many label sets, look them up each time rather than hold more


def _labels(ctx: RequestContext) -> dict[str, str]:
    cache = ctx.meta.get("cache") or {}
    return {"ai_provider": str(ctx.meta.get("provider") or ""), "ai_model": str(ctx.meta.get("model") or ""),
            "cache_status": str(ctx.meta.get("cache_status") or ""), "vector_db": str(cache.get("vector_db") or ""),
            "embeddings_provider": str(cache.get("embeddings_provider") or ""),
            "embeddings_model": str(cache.get("embeddings_model") or ""), "workspace": "default"}


def _series_of(ctx: RequestContext) -> _Series:
    meta = ctx.meta
    cache = meta.get("cache") or {}
    key = (str(meta.get("provider") or ""), str(meta.get("model") or ""), str(meta.get("cache_status") or ""),
           str(cache.get("vector_db") or ""), str(cache.get("embeddings_provider") or ""),
           str(cache.get("embeddings_model") or ""))
    series = _series.get(key)
    if series is None:
        labels = _labels(ctx)
        tokens = metrics.tokens_total
        series = _Series(metrics.requests_total.labels(**labels),
                         tokens.labels(**labels, token_type="prompt_tokens"),
                         tokens.labels(**labels, token_type="completion_tokens"),
                         tokens.labels(**labels, token_type="total_tokens"),
                         metrics.cost_total.labels(**labels), metrics.provider_latency_ms.labels(**labels),
                         metrics.ttft_ms.labels(**labels))
        if len(_series) < _MAX_SERIES:
            _series[key] = series
    return series


def record(ctx: RequestContext, logging_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export ``ctx``'s outcome; returns the log entry (what was written)."""
    usage = ctx.usage
    meta = ctx.meta
    if meta.get("provider"):
        series = _series_of(ctx)
        series.requests.inc()
        if usage is not None:
            series.prompt_tokens.inc(usage.prompt_tokens)
            series.completion_tokens.inc(usage.completion_tokens)
            series.total_tokens.inc(usage.total_tokens)
        if meta.get("cost") is not None:
            series.cost.inc(float(meta["cost"]))
        if meta.get("latency_ms") is not None:
            series.latency.observe(meta["latency_ms"])
        if meta.get("ttft_ms") is not None:
            series.ttft.observe(meta["ttft_ms"])
    entry = _entry(ctx, logging_config or {})
    log.event(logger, "ai request", logging.INFO, **entry)
    return entry


def _entry(ctx: RequestContext, logging_config: dict[str, Any]) -> dict[str, Any]:
    usage = ctx.usage
    proxy: dict[str, Any] = {
        "meta": {"provider_name": ctx.meta.get("provider"), "request_model": ctx.meta.get("request_model"),
                 "response_model": ctx.meta.get("model"), "plugin_id": ctx.meta.get("plugin_id"),
                 "llm_latency": round(ctx.meta["latency_ms"]) if ctx.meta.get("latency_ms") is not None else None,
                 "time_to_first_token": round(ctx.meta["ttft_ms"]) if ctx.meta.get("ttft_ms") is not None else None,
                 "target": ctx.meta.get("target")},
    }
    if usage is not None:
        proxy["usage"] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                          "total_tokens": usage.total_tokens, "cached_tokens": usage.cached_tokens,
                          "reasoning_tokens": usage.reasoning_tokens, "estimated": usage.estimated,
                          "cost": ctx.meta.get("cost")}
    if ctx.meta.get("cache"):
        proxy["cache"] = ctx.meta["cache"]     # Kong's ai.proxy.cache.*: status, embeddings, what a hit saved
    if logging_config.get("log_payloads"):
        proxy["payload"] = {"request": ctx.body.decode("utf-8", "replace"), "response": ctx.meta.get("response_text")}
    return {"request_id": ctx.id, "route_id": ctx.route_id, "consumer": ctx.identity.get("id"),
            "status": ctx.status, "ai": {"proxy": proxy}}

"""What each request through the relay leaves behind: Kong-named metrics and one JSON log line.

The log line uses Kong's analytics layout (``ai.proxy.meta``, ``ai.proxy.usage``) so log
pipelines built for Kong's AI plugins read it unchanged. Payloads appear only when the
route's ``logging.log_payloads`` is on.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from . import log, metrics, usage as usage_record
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
    _count(ctx)
    entry = _entry(ctx, logging_config or {})
    log.event(logger, "ai request", logging.INFO, **entry)
    return entry


def _count(ctx: RequestContext) -> None:
    """Add the request to its minute's row of the usage record (the dashboard's and ``tollgate usage``'s source)."""
    meta, usage, identity = ctx.meta, ctx.usage, ctx.identity
    cache_status = meta.get("cache_status") or ""
    key = (ctx.route_id or "", identity.get("username") or identity.get("id") or "",
           meta.get("provider") or meta.get("failed_provider") or "",
           meta.get("model") or meta.get("request_model") or "", cache_status,
           usage_record.outcome_of(ctx.status, meta))
    row = usage_record.RECORD.row(ctx.started_at, key)
    row.requests += 1
    saved = meta["cache"].get("saved") if cache_status == "Hit" and meta.get("cache") else None
    if saved:   # a cache hit: what the provider would have been paid for is saved, not spent
        row.saved_prompt_tokens += int(saved.get("prompt_tokens") or 0)
        row.saved_completion_tokens += int(saved.get("completion_tokens") or 0)
        row.saved_cost += float(saved.get("cost") or 0.0)
    else:
        if usage is not None:
            row.prompt_tokens += usage.prompt_tokens
            row.completion_tokens += usage.completion_tokens
        cost = meta.get("cost")
        if cost is not None:
            row.cost += float(cost)
    latency = meta.get("latency_ms")
    if latency is not None:
        row.latency = usage_record.observe(row.latency, latency)
        ttft = meta.get("ttft_ms")
        if ttft is not None:
            row.ttft = usage_record.observe(row.ttft, ttft)


def proxy_entry(ctx: RequestContext) -> dict[str, Any]:
    """``ai.proxy`` in Kong's layout (kong/llm/plugin/shared-filters/serialize-analytics.lua): ``meta`` and
    ``usage`` with Kong's keys, plus what Tollgate knows beyond them (target, time to first token, token details,
    whether the usage is an estimate)."""
    meta, usage = ctx.meta, ctx.usage
    latency = round(meta["latency_ms"]) if meta.get("latency_ms") is not None else None
    proxy: dict[str, Any] = {
        "meta": {"provider_name": meta.get("provider"), "request_model": meta.get("request_model"),
                 "response_model": meta.get("model"), "plugin_id": meta.get("plugin_id"), "llm_latency": latency,
                 "time_to_first_token": round(meta["ttft_ms"]) if meta.get("ttft_ms") is not None else None,
                 "target": meta.get("target")},
    }
    if usage is not None:
        proxy["usage"] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                          "total_tokens": usage.total_tokens, "cached_tokens": usage.cached_tokens,
                          "reasoning_tokens": usage.reasoning_tokens, "estimated": usage.estimated,
                          "cost": meta.get("cost"),
                          "time_per_token": (latency / usage.completion_tokens
                                             if latency is not None and usage.completion_tokens else None),
                          "time_to_first_token": proxy["meta"]["time_to_first_token"]}
    if meta.get("cache"):
        proxy["cache"] = meta["cache"]
    return proxy


def _entry(ctx: RequestContext, logging_config: dict[str, Any]) -> dict[str, Any]:
    proxy = proxy_entry(ctx)
    if logging_config.get("log_payloads") and not ctx.meta.get("hide_payload"):   # a PII guard may forbid it
        proxy["payload"] = {"request": ctx.body.decode("utf-8", "replace"), "response": ctx.meta.get("response_text")}
    # kong_request_id: Kong 3.x sends its request id upstream (headers_upstream = x-kong-request-id, the default) and
    # to the client and its log plugins: the key that ties this line to Kong's own logs and to the client's answer.
    # Other plugins' sections (``ai.guardrails``...) come from ``ctx.meta["ai_log"]``: audit facts, never payloads.
    return {"request_id": ctx.id, "kong_request_id": ctx.headers.get("X-Kong-Request-Id"), "route_id": ctx.route_id,
            "consumer": ctx.identity.get("id"), "status": ctx.status,
            "ai": {**(ctx.meta.get("ai_log") or {}), "proxy": proxy}}

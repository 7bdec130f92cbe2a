"""What each request through the relay leaves behind: Kong-named metrics and one JSON log line.

The log line uses Kong's analytics layout (``ai.proxy.meta``, ``ai.proxy.usage``) so log
pipelines built for Kong's AI plugins read it unchanged. Payloads appear only when the
route's ``logging.log_payloads`` is on.
"""

from __future__ import annotations

import logging
from typing import Any

from . import log, metrics
from .context import RequestContext

logger = log.get("analytics")


def _labels(ctx: RequestContext) -> dict[str, str]:
    return {"ai_provider": str(ctx.meta.get("provider") or ""), "ai_model": str(ctx.meta.get("model") or ""),
            "cache_status": str(ctx.meta.get("cache_status") or ""), "vector_db": "", "embeddings_provider": "",
            "embeddings_model": "", "workspace": "default"}


def record(ctx: RequestContext, logging_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export ``ctx``'s outcome; returns the log entry (what was written)."""
    usage = ctx.usage
    labels = _labels(ctx)
    if ctx.meta.get("provider"):
        metrics.requests_total.labels(**labels).inc()
        if usage is not None:
            metrics.tokens_total.labels(**labels, token_type="prompt_tokens").inc(usage.prompt_tokens)
            metrics.tokens_total.labels(**labels, token_type="completion_tokens").inc(usage.completion_tokens)
            metrics.tokens_total.labels(**labels, token_type="total_tokens").inc(usage.total_tokens)
        if ctx.meta.get("cost") is not None:
            metrics.cost_total.labels(**labels).inc(float(ctx.meta["cost"]))
        if ctx.meta.get("latency_ms") is not None:
            metrics.provider_latency_ms.labels(**labels).observe(ctx.meta["latency_ms"])
        if ctx.meta.get("ttft_ms") is not None:
            metrics.ttft_ms.labels(**labels).observe(ctx.meta["ttft_ms"])
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
    if logging_config.get("log_payloads"):
        proxy["payload"] = {"request": ctx.body.decode("utf-8", "replace"), "response": ctx.meta.get("response_text")}
    return {"request_id": ctx.id, "route_id": ctx.route_id, "consumer": ctx.identity.get("id"),
            "status": ctx.status, "ai": {"proxy": proxy}}

"""Prometheus metrics with the labels of Kong's AI metrics and names of their own.

Kong's prometheus plugin (``ai_metrics: true``) exports ``kong_ai_llm_*`` for Tollgate traffic too, from the
``ai.proxy.*`` log keys the tollgate-analytics companion plugin fills (relay/kong_log.py). Tollgate's series are
``tollgate_ai_llm_*`` with the same labels, so a query over both scrape targets can never add the same request
twice. The registry is the process's own, served on the status listener (not on the relay, which clients reach
through Kong routes).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

_AI_LABELS = ("ai_provider", "ai_model", "cache_status", "vector_db", "embeddings_provider", "embeddings_model",
              "workspace")

requests_total = Counter("tollgate_ai_llm_requests_total", "AI requests by provider and model", _AI_LABELS,
                         registry=REGISTRY)
tokens_total = Counter("tollgate_ai_llm_tokens_total", "AI tokens by provider, model and token type",
                       (*_AI_LABELS, "token_type"), registry=REGISTRY)
cost_total = Counter("tollgate_ai_llm_cost_total", "AI cost by provider and model (USD)", _AI_LABELS,
                     registry=REGISTRY)
provider_latency_ms = Histogram("tollgate_ai_llm_provider_latency_ms", "Provider end-to-end latency in ms", _AI_LABELS,
                                buckets=(25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000),
                                registry=REGISTRY)
ttft_ms = Histogram("tollgate_ai_llm_time_to_first_token_ms", "Time to the first streamed token in ms", _AI_LABELS,
                    buckets=(10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000), registry=REGISTRY)
refusals_total = Counter("tollgate_refusals_total", "Requests refused by a Tollgate plugin",
                         ("plugin", "reason", "route", "consumer"), registry=REGISTRY)


def exposition() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

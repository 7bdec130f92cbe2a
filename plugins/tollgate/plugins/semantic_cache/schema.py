"""tollgate-semantic-cache config, with Kong's ai-semantic-cache field names where the feature is the same.

``vectordb.threshold`` is a **cosine similarity** in [0, 1] (higher is stricter), whatever ``distance_metric`` says:
on unit vectors euclidean distance and cosine order candidates the same way (d^2 = 2 - 2 cos), so the metric only
names how the vector database is indexed. The default (0.8) was chosen on the paraphrase and near-miss sets in
tests/semantic_cache/pairs.py with the local model: the agreement guard, not the threshold, is what keeps near misses
out, so the threshold can sit low enough to catch paraphrases (see bench/cache.py for the numbers).
"""

from __future__ import annotations

from ..common_schema import REDIS
from ..proxy.schema import EMBEDDINGS

SCOPES = ["consumer", "route", "global"]
FINISH_REASONS = ["stop", "length"]

Schema = [
    {"embeddings": EMBEDDINGS},
    {"vectordb": {"type": "record", "fields": [
        {"strategy": {"type": "string", "default": "local", "one_of": ["local", "redis", "pgvector"]}},
        {"distance_metric": {"type": "string", "default": "cosine", "one_of": ["cosine", "euclidean"]}},
        {"threshold": {"type": "number", "default": 0.8, "between": [0, 1]}},
        {"dimensions": {"type": "integer", "gt": 0}},
        REDIS,
        {"pgvector": {"type": "record", "fields": [
            {"uri": {"type": "string", "referenceable": True, "encrypted": True}},  # a libpq URI
            {"table": {"type": "string", "default": "tollgate_semantic_cache"}},
            {"timeout": {"type": "number", "default": 2, "gt": 0}},
            # HNSW candidates kept per search (pgvector's hnsw.ef_search): fewer is faster, more finds more of the
            # true nearest entries; set per connection, never per query (bench/cache.py measures both)
            {"ef_search": {"type": "integer", "default": 40, "between": [1, 1000]}},
        ]}},
    ]}},
    {"cache_ttl": {"type": "integer", "default": 300, "gt": 0}},
    {"cache_control": {"type": "boolean", "default": False}},
    # Tollgate's default differs from Kong's (false): identical repeats are the cheapest hits and need no embedding.
    {"exact_caching": {"type": "boolean", "default": True}},
    {"message_countback": {"type": "integer", "default": 1, "between": [1, 1000]}},
    {"ignore_system_prompts": {"type": "boolean", "default": False}},
    {"ignore_assistant_prompts": {"type": "boolean", "default": False}},
    {"ignore_tool_prompts": {"type": "boolean", "default": False}},
    {"stop_on_failure": {"type": "boolean", "default": False}},
    # Whose entries a request may hit: per consumer when Kong identified one (else per route), per route, or shared.
    {"scope": {"type": "string", "default": "consumer", "one_of": SCOPES}},
    {"cache_finish_reasons": {"type": "array", "default": ["stop"], "len_min": 1,
                              "elements": {"type": "string", "one_of": FINISH_REASONS}}},
    {"cache_tool_calls": {"type": "boolean", "default": False}},
]

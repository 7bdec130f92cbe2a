"""tollgate-proxy config, in Kong's schema language.

Field names follow Kong's ai-proxy (``route_type``, ``auth``, ``model``, ``logging``, ``response_streaming``,
``max_request_body_size``, ``model_name_header``) and ai-proxy-advanced (``targets[]``, ``balancer``), so a Kong user
reads a config at a glance. A config names either one ``model`` (with ``auth``: one implicit target) or ``targets``.

Units: ``balancer.connect_timeout``/``read_timeout``/``write_timeout`` are milliseconds, as in Kong; Tollgate's own
additions (``timeout``, ``retry_backoff``, ``circuit_breaker.cooldown``, ``usage_window``) are seconds.
The semantics of every field are in ``README.md`` next to this file.
"""

from __future__ import annotations

from ...embeddings import PROVIDERS as EMBEDDINGS_PROVIDERS
from ..common_schema import REDIS, STRATEGY

PROVIDERS = ["openai", "azure", "anthropic", "cohere", "mistral", "gemini", "bedrock", "openai-compatible"]
ROUTE_TYPES = ["llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings", "preserve"]
ALGORITHMS = ["round-robin", "lowest-latency", "lowest-usage", "least-busy", "consistent-hashing", "priority", "cost",
              "semantic", "complexity"]
TIERS = ["simple", "standard", "hard"]     # complexity tiers, easiest first
FAILOVER_CRITERIA = ["error", "timeout", "invalid_header", "non_idempotent", "http_403", "http_404", "http_429",
                     "http_500", "http_502", "http_503", "http_504", "http_529"]
SEMANTIC_THRESHOLD = 0.35     # picked on example prompts with the local model (README)
# Kong's default is [error, timeout]; an AI gateway also moves on when a provider is rate limited or failing.
DEFAULT_FAILOVER = ["error", "timeout", "invalid_header", "http_429", "http_500", "http_502", "http_503",
                    "http_504", "http_529"]

AUTH = {"type": "record", "fields": [
    {"header_name": {"type": "string"}},
    {"header_value": {"type": "string", "referenceable": True, "encrypted": True}},
    {"param_name": {"type": "string"}},
    {"param_value": {"type": "string", "referenceable": True, "encrypted": True}},
    {"param_location": {"type": "string", "one_of": ["query", "body"]}},
    {"allow_override": {"type": "boolean", "default": False}},
    {"azure_use_managed_identity": {"type": "boolean", "default": False}},
    {"azure_client_id": {"type": "string"}},
    {"azure_client_secret": {"type": "string", "referenceable": True, "encrypted": True}},
    {"azure_tenant_id": {"type": "string"}},
    {"gcp_use_service_account": {"type": "boolean", "default": False}},
    {"gcp_service_account_json": {"type": "string", "referenceable": True, "encrypted": True}},
    {"aws_access_key_id": {"type": "string", "referenceable": True, "encrypted": True}},
    {"aws_secret_access_key": {"type": "string", "referenceable": True, "encrypted": True}},
]}

OPTIONS = {"type": "record", "fields": [
    {"max_tokens": {"type": "integer"}},
    {"temperature": {"type": "number", "between": [0, 5]}},
    {"top_p": {"type": "number", "between": [0, 1]}},
    {"top_k": {"type": "integer", "between": [0, 500]}},
    {"input_cost": {"type": "number"}},     # per million prompt tokens
    {"output_cost": {"type": "number"}},    # per million completion tokens
    {"upstream_url": {"type": "string"}},
    {"upstream_path": {"type": "string"}},
    {"anthropic_version": {"type": "string"}},
    {"azure_instance": {"type": "string"}},
    {"azure_api_version": {"type": "string", "default": "2023-05-15"}},
    {"azure_deployment_id": {"type": "string"}},
    {"gemini": {"type": "record", "fields": [
        {"api_endpoint": {"type": "string"}},
        {"project_id": {"type": "string"}},
        {"location_id": {"type": "string"}},
    ]}},
    {"cohere": {"type": "record", "fields": [
        {"api_version": {"type": "string", "one_of": ["v1", "v2"]}},
    ]}},
    {"bedrock": {"type": "record", "fields": [
        {"aws_region": {"type": "string"}},
        {"aws_assume_role_arn": {"type": "string"}},
        {"aws_role_session_name": {"type": "string"}},
    ]}},
]}

# The single-model form: provider is checked by the plugin (an absent ``model`` reaches us as a record of nulls).
MODEL = {"type": "record", "fields": [
    {"provider": {"type": "string", "one_of": PROVIDERS}},
    {"name": {"type": "string"}},
    {"options": OPTIONS},
]}

TARGET_MODEL = {"type": "record", "required": True, "fields": [
    {"provider": {"type": "string", "required": True, "one_of": PROVIDERS}},
    {"name": {"type": "string"}},
    {"options": OPTIONS},
]}

MATCH = {"type": "record", "fields": [
    # header name -> accepted values (an empty list: the header only has to be present)
    {"headers": {"type": "map", "keys": {"type": "string"},
                 "values": {"type": "array", "elements": {"type": "string"}}}},
    {"consumers": {"type": "array", "elements": {"type": "string"}}},   # consumer id, username or custom_id
    {"models": {"type": "array", "elements": {"type": "string"}}},      # model names a client may request
    {"min_prompt_tokens": {"type": "integer", "between": [0, 100000000]}},
    {"max_prompt_tokens": {"type": "integer", "between": [0, 100000000]}},
]}

TARGET = {"type": "record", "fields": [
    {"model": TARGET_MODEL},
    {"auth": AUTH},
    {"weight": {"type": "integer", "default": 100, "between": [1, 65535]}},
    {"description": {"type": "string"}},
    # (Tollgate) algorithm semantic: prompts this target should get (embedded instead of the description)
    {"examples": {"type": "array", "elements": {"type": "string", "len_min": 1}}},
    {"tier": {"type": "string", "one_of": TIERS}},          # (Tollgate) algorithm complexity: the tier it serves
    {"priority": {"type": "integer", "default": 1, "between": [0, 1000]}},   # lower is tried first
    {"match": MATCH},
]}

BALANCER = {"type": "record", "fields": [
    {"algorithm": {"type": "string", "default": "round-robin", "one_of": ALGORITHMS}},
    {"latency_strategy": {"type": "string", "default": "ttft", "one_of": ["ttft", "tpot", "e2e"]}},
    {"tokens_count_strategy": {"type": "string", "default": "total-tokens",
                               "one_of": ["total-tokens", "prompt-tokens", "completion-tokens", "cost"]}},
    {"usage_window": {"type": "integer", "default": 60, "between": [1, 86400]}},
    {"hash_on_header": {"type": "string"}},
    {"retries": {"type": "integer", "between": [0, 32]}},   # unset: each eligible target once
    {"failover_criteria": {"type": "array", "default": DEFAULT_FAILOVER,
                           "elements": {"type": "string", "one_of": FAILOVER_CRITERIA}}},
    {"connect_timeout": {"type": "integer", "default": 5000, "between": [1, 2147483646]}},
    {"read_timeout": {"type": "integer", "default": 60000, "between": [1, 2147483646]}},
    {"write_timeout": {"type": "integer", "default": 60000, "between": [1, 2147483646]}},
    {"retry_backoff": {"type": "record", "fields": [
        {"base": {"type": "number", "default": 0.1, "between": [0, 60]}},
        {"max": {"type": "number", "default": 2.0, "between": [0, 600]}},
        {"honour_retry_after": {"type": "boolean", "default": True}},
    ]}},
    {"circuit_breaker": {"type": "record", "fields": [
        {"failure_threshold": {"type": "integer", "default": 5, "between": [0, 1000]}},   # 0: off
        {"cooldown": {"type": "number", "default": 30, "between": [0.001, 86400]}},
    ]}},
    {"semantic": {"type": "record", "fields": [
        # cosine similarity below which a prompt is near no target and goes to the default targets
        {"threshold": {"type": "number", "default": SEMANTIC_THRESHOLD, "between": [-1, 1]}},
    ]}},
    {"complexity": {"type": "record", "fields": [
        {"scorer": {"type": "string", "default": "local", "one_of": ["local", "model"]}},
        # labelled prompts replacing the ones shipped with Tollgate (complexity_examples.json)
        {"examples": {"type": "array", "elements": {"type": "record", "fields": [
            {"prompt": {"type": "string", "required": True, "len_min": 1}},
            {"tier": {"type": "string", "required": True, "one_of": TIERS}},
        ]}}},
        {"model": MODEL},                                   # scorer model: a small model that names the tier
        {"auth": AUTH},
        {"timeout": {"type": "number", "default": 1.0, "gt": 0}},   # seconds; then the local scorer decides
    ]}},
]}

# What the semantic cache and semantic routing embed with (Kong's ai-semantic-cache / ai-proxy-advanced field).
EMBEDDINGS = {"type": "record", "fields": [
    {"model": {"type": "record", "fields": [
        {"provider": {"type": "string", "default": "local", "one_of": list(EMBEDDINGS_PROVIDERS)}},
        {"name": {"type": "string"}},
        {"options": OPTIONS},
    ]}},
    {"auth": AUTH},
    {"timeout": {"type": "number", "default": 10, "gt": 0}},   # seconds, for a provider's embeddings call
]}

Schema = [
    {"route_type": {"type": "string", "required": True, "one_of": ROUTE_TYPES}},
    {"auth": AUTH},
    {"model": MODEL},
    {"targets": {"type": "array", "elements": TARGET}},
    {"balancer": BALANCER},
    {"embeddings": EMBEDDINGS},                              # algorithm semantic
    {"logging": {"type": "record", "fields": [
        {"log_statistics": {"type": "boolean", "default": False}},
        {"log_payloads": {"type": "boolean", "default": False}},
    ]}},
    {"response_streaming": {"type": "string", "default": "allow", "one_of": ["allow", "deny", "always"]}},
    {"max_request_body_size": {"type": "integer", "default": 1048576, "gt": 0}},
    {"model_name_header": {"type": "boolean", "default": True}},
    # Seconds a request may spend on providers in all, retries and failover included.
    {"timeout": {"type": "number", "default": 60, "gt": 0}},
    # Where balancer state (latency, usage, circuit breakers) lives: local (this node) or redis (every node).
    STRATEGY,
    REDIS,
]

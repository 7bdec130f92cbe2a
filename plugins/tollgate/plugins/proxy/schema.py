"""tollgate-proxy config, in Kong's schema language; field names follow Kong's ai-proxy."""

from __future__ import annotations

PROVIDERS = ["openai", "azure", "anthropic", "cohere", "mistral", "gemini", "bedrock", "openai-compatible"]
ROUTE_TYPES = ["llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings", "preserve"]

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
    {"input_cost": {"type": "number"}},
    {"output_cost": {"type": "number"}},
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
    {"bedrock": {"type": "record", "fields": [
        {"aws_region": {"type": "string"}},
        {"aws_assume_role_arn": {"type": "string"}},
        {"aws_role_session_name": {"type": "string"}},
    ]}},
]}

MODEL = {"type": "record", "required": True, "fields": [
    {"provider": {"type": "string", "required": True, "one_of": PROVIDERS}},
    {"name": {"type": "string"}},
    {"options": OPTIONS},
]}

Schema = [
    {"route_type": {"type": "string", "required": True, "one_of": ROUTE_TYPES}},
    {"auth": AUTH},
    {"model": MODEL},
    {"logging": {"type": "record", "fields": [
        {"log_statistics": {"type": "boolean", "default": False}},
        {"log_payloads": {"type": "boolean", "default": False}},
    ]}},
    {"response_streaming": {"type": "string", "default": "allow", "one_of": ["allow", "deny", "always"]}},
    {"max_request_body_size": {"type": "integer", "default": 1048576, "gt": 0}},
    {"model_name_header": {"type": "boolean", "default": True}},
    {"timeout": {"type": "number", "default": 60, "gt": 0}},
]

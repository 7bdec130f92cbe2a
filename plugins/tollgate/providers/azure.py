"""Azure OpenAI: OpenAI's wire format under Azure's deployment URLs, so the OpenAI driver does the translation.

URL: ``https://{azure_instance}.openai.azure.com/openai/deployments/{deployment}/{chat/completions|completions|
embeddings}?api-version={azure_api_version}``; the deployment is ``model.options.azure_deployment_id``, else the
model name (config, then request). ``model.options.upstream_url`` replaces the URL (``api-version`` is added to its
query when it has none, as Kong does).

Auth: Kong's ``auth`` fields, i.e. an ``api-key`` header (``header_name: api-key``) or an Entra ID access token
(``header_name: Authorization``, ``header_value: Bearer <token>``). Fetching Entra ID tokens (managed identity or
``azure_client_id``/``azure_client_secret``/``azure_tenant_id``) needs the network and is not done here: a config that
asks for it without a static header is refused as misconfigured rather than sent unauthenticated.

Streams: ``stream_options.include_usage`` (exact streamed usage) is only understood from api-version 2024-09-01 on;
with an older ``azure_api_version`` it is not added (older versions refuse unknown fields) and a streamed answer then
carries no usage. Azure's extras pass through untouched: ``prompt_filter_results`` (also as the first, choice-less
stream chunk), ``content_filter_results`` per choice, and ``finish_reason: content_filter``.

Errors: Azure's ``{"error": {"code", "message", "innererror"?}}`` keeps its message; the type follows the status
(429 -> ``rate_limit_exceeded``), a prompt blocked by the content filter keeps code ``content_filter``, and
``retry-after`` / ``retry-after-ms`` become the Retry-After the client sees.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from . import native
from .base import ProviderError, Target, UpstreamRequest
from .openai import PATHS, OpenAIDriver, OpenAIStreamDecoder, error_from

DEFAULT_API_VERSION = "2023-05-15"  # Kong's default for model.options.azure_api_version
STREAM_USAGE_SINCE = "2024-09-01"  # first api-version that takes stream_options (2024-09-01-preview, GA 2024-10-21)

_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 408: "timeout", 413: "invalid_request_error", 422: "invalid_request_error",
                 429: "rate_limit_exceeded", 504: "timeout"}


def _misconfigured(message: str) -> ProviderError:
    return ProviderError(500, message, "server_error", "misconfigured")


def api_version_of(target: Target) -> str:
    return str(target.options.get("azure_api_version") or DEFAULT_API_VERSION)


def with_api_version(url: str, version: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(name == "api-version" for name, _ in query):
        return url
    return urlunsplit(parts._replace(query=urlencode(query + [("api-version", version)])))


def retry_after_of(headers: Any) -> float | None:
    """``retry-after`` (seconds), else Azure's ``retry-after-ms``."""
    if headers is None:
        return None
    for name, scale in (("retry-after", 1.0), ("retry-after-ms", 1000.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) / scale
        except ValueError:
            continue
    return None


class AzureStreamDecoder(OpenAIStreamDecoder):
    """OpenAI's SSE; Azure's asynchronous content filter may send a choice with only filter results (no delta)."""

    def _chunks(self, events: list) -> list[dict[str, Any]]:
        chunks = super()._chunks(events)
        for chunk in chunks:
            for choice in chunk.get("choices") or ():
                if isinstance(choice, dict) and "text" not in choice and "delta" not in choice:
                    choice["delta"] = {}
        return chunks


class AzureDriver(OpenAIDriver):
    name = "azure"

    def azure_url(self, route_type: str, target: Target, body: dict[str, Any]) -> str:
        options = target.options
        version = api_version_of(target)
        if options.get("upstream_url"):
            return with_api_version(options["upstream_url"], version)
        instance = options.get("azure_instance")
        if not instance:
            raise _misconfigured("azure needs model.options.azure_instance (or model.options.upstream_url)")
        deployment = options.get("azure_deployment_id") or target.model or body.get("model")
        if not deployment:
            raise _misconfigured("azure needs model.options.azure_deployment_id or a model name")
        path = options.get("upstream_path") or PATHS.get(route_type, "")
        return (f"https://{instance}.openai.azure.com/openai/deployments/{quote(str(deployment), safe='')}{path}"
                f"?{urlencode({'api-version': version})}")

    def url(self, route_type: str, target: Target, body: dict[str, Any] | None = None) -> str:
        return self.azure_url(route_type, target, body or {})

    def payload(self, route_type: str, body: dict[str, Any], target: Target, stream: bool
                ) -> tuple[dict[str, Any], bool]:
        payload, stream = super().payload(route_type, body, target, stream)
        if stream and api_version_of(target) < STREAM_USAGE_SINCE:
            payload.pop("stream_options", None)  # API versions before it refuse the field
        return payload, stream

    def build_request(self, route_type: str, body: dict[str, Any], target: Target, stream: bool) -> UpstreamRequest:
        self._check_auth(target.auth or {})
        return super().build_request(route_type, body, target, stream)

    @staticmethod
    def _check_auth(auth: dict[str, Any]) -> None:
        static = (auth.get("header_name") and auth.get("header_value")) or (
            auth.get("param_name") and auth.get("param_value"))
        if not static and (auth.get("azure_use_managed_identity") or auth.get("azure_client_secret")):
            raise _misconfigured("azure Entra ID token fetching (managed identity / client secret) is not supported; "
                                 "set auth.header_name 'api-key' with a key, or 'Authorization' with 'Bearer <token>'")

    def parse_error(self, status: int, headers: Any, body: bytes) -> ProviderError:
        parsed = error_from(status, headers, body)
        code = parsed.code
        if status == 429:
            type_ = "rate_limit_exceeded"
        elif code == "content_filter":
            type_ = "invalid_request_error"
        else:
            type_ = _STATUS_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        if code is not None and code.isdigit():  # Azure often repeats the status as the code ("429")
            code = "rate_limit_exceeded" if status == 429 else None
        elif code is None and status == 429:
            code = "rate_limit_exceeded"
        return ProviderError(status, parsed.message, type_, code, retry_after_of(headers))

    def stream_decoder(self, route_type: str, target: Target) -> AzureStreamDecoder:
        return AzureStreamDecoder()

    # -- preserve: the client's own Azure OpenAI request (``/openai/deployments/{d}/...``) on the configured instance

    def native_url(self, path: str, query: str, target: Target) -> str:
        options = target.options or {}
        origin = None
        if not options.get("upstream_url"):
            instance = options.get("azure_instance")
            if not instance:
                raise _misconfigured("azure needs model.options.azure_instance (or model.options.upstream_url)")
            origin = f"https://{instance}.openai.azure.com"
        url = native.native_url(origin, path, query, options, target.auth)
        return native.as_sent(with_api_version(url, api_version_of(target)))

    def native_request(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes,
                       target: Target) -> UpstreamRequest:
        self._check_auth(target.auth or {})
        return super().native_request(method, path, query, headers, body, target)


driver = AzureDriver()

__all__ = ["AzureDriver", "AzureStreamDecoder", "api_version_of", "driver", "retry_after_of", "with_api_version"]

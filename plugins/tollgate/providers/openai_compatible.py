"""Any server that speaks OpenAI's API (vLLM, Ollama, Groq, DeepSeek, Together...).

The wire format is OpenAI's; the difference is that there is no default host, so
``model.options.upstream_url`` names the full endpoint (or a base URL ending in /v1). ``preserve`` routes pass the
client's OpenAI-format requests through to it (see ``native.py``).
"""

from __future__ import annotations

from typing import Any

from .base import ProviderError, Target
from .openai import PATHS, OpenAIDriver


class OpenAICompatibleDriver(OpenAIDriver):
    name = "openai-compatible"
    native_origin = None   # preserve: upstream_url names the server (a base such as http://vllm:8000/v1 keeps the
                           # client's /v1/... path)

    def url(self, route_type: str, target: Target, body: dict[str, Any] | None = None) -> str:
        upstream = target.options.get("upstream_url")
        if not upstream:
            raise ProviderError(500, "openai-compatible needs model.options.upstream_url", "server_error",
                                "misconfigured")
        if upstream.rstrip("/").endswith("/v1"):
            return upstream.rstrip("/") + PATHS.get(route_type, "")
        return upstream


driver = OpenAICompatibleDriver()

"""Provider drivers: one module per provider, each a set of pure functions.

A driver turns an OpenAI-format request into the provider's wire request, and the
provider's answer (JSON or stream frames) back into OpenAI's format with exact usage.
Drivers do no I/O; the relay does it, which is what lets each driver be tested on the
provider's documented bodies alone.
"""

from __future__ import annotations

import importlib

from .base import Driver

_MODULES = {
    "openai": "openai",
    "openai-compatible": "openai_compatible",
    "azure": "azure",
    "anthropic": "anthropic",
    "cohere": "cohere",
    "mistral": "mistral",
    "gemini": "gemini",
    "bedrock": "bedrock",
}


class UnknownProvider(LookupError):
    pass


def driver_for(provider: str) -> Driver:
    """The driver of ``provider`` (each module exposes a module-level ``driver``)."""
    module = _MODULES.get(provider)
    if module is None:
        raise UnknownProvider(provider)
    try:
        return importlib.import_module(f"{__name__}.{module}").driver
    except ModuleNotFoundError as exc:
        raise UnknownProvider(f"{provider} (driver not installed: {exc.name})") from None

"""tollgate-guardrails (see handler.py for the Kong side, schema.py for its config)."""

from ... import __version__ as version
from .handler import Plugin
from .schema import Schema

priority = 775
error_format = "openai"

__all__ = ["Plugin", "Schema", "version", "priority", "error_format"]

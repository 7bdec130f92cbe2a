"""tollgate-proxy: one OpenAI-compatible API in front of every provider, with routing, retries and failover.

README.md explains the config and the modules; handler.py is the Kong side, policy.py the relay side.
"""

from ... import __version__ as version
from .handler import Plugin
from .schema import Schema

priority = 770
error_format = "openai"

__all__ = ["Plugin", "Schema", "version", "priority", "error_format"]

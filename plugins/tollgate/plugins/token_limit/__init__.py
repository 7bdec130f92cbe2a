"""tollgate-token-limit (see handler.py for the Kong side, schema.py for its config).

Admission reserves each request's prompt (counted on the request) plus an expected completion in every window at
once, and settles to the provider's exact usage after the answer (policy.py). The expected completion is the output
cap with ``reserve_max_tokens`` (the limit then holds exactly), else the 95th percentile of the route's and model's
recent answers (kept in the store), never above the cap, and ``default_completion_tokens`` before the first answer:
a burst then ends over the limit only by what its answers exceed that percentile (expected.py states the bound).
The identifiers an instance limits are noted in a small index in the store (index.py), so the dashboard can show
each window's usage against its limit without scanning keys.
"""

from ... import __version__ as version
from .handler import Plugin
from .schema import Schema

priority = 905
error_format = "openai"

__all__ = ["Plugin", "Schema", "version", "priority", "error_format"]

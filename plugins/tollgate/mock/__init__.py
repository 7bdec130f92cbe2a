"""A scriptable mock LLM upstream speaking real provider wire formats (tests, benchmarks, offline demo).

    from tollgate.mock import MockLLM, Reply, ToolCall

    async with MockLLM() as mock:                      # or: with MockLLM.running_in_thread() as mock:
        mock.enqueue(Reply(status=429, retry_after=1)) # next request only
        mock.enqueue(Reply(content="hi", chunks=5, interval=0.05), path="/chat/completions")
        mock.default = Reply(content="always this")
        ... point a client at mock.url + "/v1" ...
        mock.requests[-1].json                         # what the gateway sent

The core (``server.py``: routing, scripting, recording, timing, faults) is separate from the wire formats
(``formats/<name>.py``, see ``formats/__init__.py`` for how to add one).
"""

from .formats import Answer, Call, Endpoint, Format, Frames, MockError, register
from .reply import Reply, ToolCall
from .server import MockLLM, RecordedRequest, Rule, clock

__all__ = ["Answer", "Call", "Endpoint", "Format", "Frames", "MockError", "MockLLM", "RecordedRequest", "Reply",
           "Rule", "ToolCall", "clock", "register"]

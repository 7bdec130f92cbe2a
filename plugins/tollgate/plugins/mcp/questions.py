"""Requests an upstream server makes of its client (sampling, elicitation, roots), relayed to the gateway's client.

The gateway puts the request to its client under an id of its own (``tollgate-...``: ids of several upstreams
never clash) on an SSE stream of the client's session. The client POSTs its answer, with its session, to any
Tollgate process; the answer waits in the store, where the process holding the upstream's call picks it up and
sends it on to the server under the server's own id. Only what the client declared it can do at ``initialize`` is
put to it; anything else is declined at once.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any, Awaitable, Callable

import orjson

# Server-to-client request -> the client capability it needs.
RELAYED = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation", "roots/list": "roots"}
ID_PREFIX = "tollgate-"
ANSWER_TTL = 300.0
POLL = 0.05


def askable(method: Any, capabilities: dict[str, Any]) -> bool:
    need = RELAYED.get(method) if isinstance(method, str) else None
    return need is not None and need in capabilities


def client_capabilities(declared: Any) -> dict[str, Any]:
    """What of a client's ``initialize`` capabilities an upstream may use through the gateway."""
    if not isinstance(declared, dict):
        return {}
    return {k: v for k, v in declared.items() if k in RELAYED.values() and isinstance(v, dict)}


async def put_to_client(inbox: "Inbox | None", capabilities: dict[str, Any], message: dict[str, Any],
                        send: Callable[[dict[str, Any]], Awaitable[Any]], timeout: float) -> dict[str, Any] | None:
    """Send the server's request ``message`` to the client with ``send``, under a gateway id, and wait for its
    answer; None (decline) when the client cannot be asked or did not answer in time."""
    if inbox is None or not askable(message.get("method"), capabilities):
        return None
    question = inbox.new_id()
    await send({**message, "id": question})
    return await inbox.wait(question, timeout)


class Inbox:
    """The answers of one client session to the gateway's requests, in the store."""

    def __init__(self, store: Any, scope: str, session_id: str):
        self.store = store
        self.prefix = f"mcp:answer:{scope}:{session_id}:"

    @staticmethod
    def new_id() -> str:
        return ID_PREFIX + secrets.token_urlsafe(12)

    async def put(self, message: dict[str, Any]) -> bool:
        """Keep a client's answer; False when it answers nothing the gateway asked."""
        question = message.get("id")
        if not isinstance(question, str) or not question.startswith(ID_PREFIX) or len(question) > 64:
            return False
        await self.store.set(self.prefix + question, orjson.dumps(message), ttl=ANSWER_TTL)
        return True

    async def wait(self, question: str, timeout: float) -> dict[str, Any] | None:
        """The client's answer to ``question``, or None when none came within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = await self.store.get(self.prefix + question)
            if raw is not None:
                await self.store.delete(self.prefix + question)
                return orjson.loads(raw)
            await asyncio.sleep(POLL)
        return None

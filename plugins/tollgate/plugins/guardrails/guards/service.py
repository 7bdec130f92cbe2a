"""What the guards that call an HTTP service share: one JSON POST on the relay's pooled client, and one rule for
what goes wrong.

The session is the relay's own (``relay.upstream.session``: one keep-alive pool per event loop), so a guard holds no
connection of its own and an instance that Kong closes leaves nothing open. Every fault (refused connection, an
HTTP error status, a body that is not the JSON the service documents) is ``GuardUnavailable`` with a message that
names the guard and the kind of fault only: never the text judged, the URL's query, a key, or the service's body
(which may echo the text).
"""

from __future__ import annotations

from typing import Any, NoReturn

import aiohttp
import orjson

from ....relay import upstream
from .base import Guard, GuardUnavailable

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class ServiceGuard(Guard):
    """A guard that asks an HTTP service."""

    async def post_json(self, url: str, payload: Any, headers: dict[str, str] | None = None,
                        params: dict[str, str] | None = None, data: bytes | None = None) -> Any:
        """POST ``payload`` (or the ready ``data``) as JSON; the service's JSON answer."""
        body = data if data is not None else orjson.dumps(payload)
        try:
            async with upstream.session().post(url, data=body, headers={**JSON_HEADERS, **(headers or {})},
                                               params=params) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, OSError) as exc:
            raise GuardUnavailable(f"{self.name}: the guard service could not be reached ({type(exc).__name__})") \
                from None
        if status >= 400:
            raise GuardUnavailable(f"{self.name}: the guard service answered HTTP {status}")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.unreadable("the answer is not JSON")

    def unreadable(self, what: str) -> NoReturn:
        raise GuardUnavailable(f"{self.name}: the guard service's answer is unreadable: {what}")

"""A lean HTTP/1.1 keep-alive client for the relay's hot upstream calls (providers, MCP servers), and the server
the relay is served by.

Like ``store/resp.py`` for Redis: the general client (aiohttp's) cost more CPU per call than the rest of a proxied
request, so the provider and MCP-server calls use this one; the others (guard services, budget webhooks, OAuth key
sets, MCP REST tools) stay on aiohttp's session. Responses are parsed by llhttp through ``httptools``.
``bench/http_client.py`` measures both clients.

    client = Client()
    async with await client.request("POST", url, headers=headers, data=body) as answer:
        body = await answer.read()

The server side (``server.py``, with ``incoming.py`` and ``outgoing.py``) serves the relay itself, for the same
reason (``bench/http_server.py`` measures both servers). The relay's handlers use it under aiohttp.web's names,
through ``tollgate.relay.web``.
"""

from .client import Client, Timeouts
from .errors import (BrokenBody, ClientClosed, ConnectError, ConnectTimeout, Disconnected, HTTPError, InvalidResponse,
                     InvalidURL, ReadTimeout, UndecodableBody)
from .request import InvalidRequest
from .response import Response

__all__ = ["BrokenBody", "Client", "ClientClosed", "ConnectError", "ConnectTimeout", "Disconnected", "HTTPError",
           "InvalidRequest", "InvalidResponse", "InvalidURL", "ReadTimeout", "Response", "Timeouts", "UndecodableBody"]

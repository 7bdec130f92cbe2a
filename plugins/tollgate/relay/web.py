"""What the relay's handlers answer with and receive, under the names they had in ``aiohttp.web``.

The relay is served by Tollgate's own HTTP/1.1 server (`tollgate.http1.server`); its handlers, the plugins' stages
among them, build answers as they did with aiohttp (``web.Response(...)``, ``web.StreamResponse(...)``,
``web.json_response(...)``) from this module instead. The status listener and the dashboard stay on aiohttp.
"""

from __future__ import annotations

from ..http1.incoming import Body, MalformedRequest, Request, RequestBodyTooLarge
from ..http1.outgoing import Response, StreamResponse, json_response
from ..http1.server import Server

BaseRequest = Request

__all__ = ["BaseRequest", "Body", "MalformedRequest", "Request", "RequestBodyTooLarge", "Response", "Server",
           "StreamResponse", "json_response"]

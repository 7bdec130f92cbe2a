"""The gateway as a client of one upstream MCP server, in whichever generation the server speaks.

A 2026-07-28 server gets self-contained requests (``_meta`` envelope, routing headers). A session-generation server
gets an ``initialize`` once per conversation (declaring what the client behind it can do: sampling, elicitation,
roots); its session id is kept where the caller says (the client's session in the store, or the process for
stateless clients), so a 2026-07-28 client can use a 2025 server. Answers arrive as JSON or SSE; what the server
sends its client on the way (notifications, and requests such as ``sampling/createMessage``) goes to the caller's
`Channel` as it comes, and the client's answer to a request goes back to the server. Every failure, including a
server that hangs, ends in a `JsonRpcError` within the timeout.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ... import __version__, http1, log, scrub
from ...providers.framing import SSEDecoder, SSELineTooLong
from ...relay import upstream as http
from . import protocol
from .jsonrpc import HTTP_STATUS, INTERNAL_ERROR, METHOD_NOT_FOUND, REQUEST_TIMEOUT, UPSTREAM_ERROR, JsonRpcError
from .questions import client_capabilities
from .sessions import UpstreamSessions

logger = log.get("mcp")

_ids = itertools.count(1)
MAX_SSE_LINE = 16 * 1024 * 1024              # bytes of one line of an SSE answer (one message's data)
DRAIN_S = 5.0                                # after our answer, how long the end of its SSE stream is awaited
DRAIN_BYTES = 64 * 1024                      # and how much more of it is read, to keep the connection
_draining: set[asyncio.Task[None]] = set()


class Channel(Protocol):
    """The way back to the client of one call (or of one session's standing stream)."""

    async def notify(self, message: dict[str, Any]) -> None:
        """A notification from the server (progress, resources/updated...)."""

    async def ask(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """A request from the server to the client: the client's answer (its ``result`` or ``error`` member), or
        None when the client cannot be asked (the gateway then declines it)."""


class NotJsonRpc(JsonRpcError):
    """The server answered HTTP ``http_status`` without a JSON-RPC body."""

    def __init__(self, server: str, http_status: int):
        super().__init__(UPSTREAM_ERROR, f"upstream MCP server {server} answered HTTP {http_status} without a "
                                         f"JSON-RPC body")
        self.http_status = http_status


class SessionExpired(Exception):
    """The upstream no longer knows the session id we sent (404): open a new one and try again once."""


@dataclass
class Upstream:
    name: str
    url: str
    prefix: str
    protocol: str = "auto"                       # auto: probe server/discover once, else the session generation
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    _detected: str | None = field(default=None, repr=False)

    async def request(self, method: str, params: dict[str, Any], sessions: UpstreamSessions,
                      channel: Channel | None = None, extra_headers: dict[str, str] | None = None) -> dict[str, Any]:
        """``method`` on this server; its result, or `JsonRpcError` (the server's own error, or why it failed).

        One deadline bounds the whole call: every HTTP exchange of it runs under the HTTP client's own timer (the
        call arms none of its own), and what an SSE answer waits for on the client's side is bounded in
        `_from_sse`."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            version = self.protocol if self.protocol != "auto" else self._detected or await self._probe(deadline)
            if version in protocol.MODERN_VERSIONS:
                body_params, headers = self._modern(version, method, params, extra_headers)
                return (await self._exchange(method, body_params, headers, deadline, channel))[0]
            try:
                return await self._in_session(version, method, params, sessions, channel, extra_headers, deadline)
            except SessionExpired:
                await sessions.forget(self.name)
                return await self._in_session(version, method, params, sessions, channel, extra_headers, deadline)
        except TimeoutError:
            raise JsonRpcError(REQUEST_TIMEOUT, f"upstream MCP server {self.name} did not answer within "
                                                f"{self.timeout:g} s") from None
        except http1.HTTPError as exc:
            raise JsonRpcError(UPSTREAM_ERROR, f"upstream MCP server {self.name} is unreachable: "
                                               f"{type(exc).__name__}") from None

    async def end(self, sessions: UpstreamSessions) -> None:
        """End our session on this server, if we opened one (best effort: it expires there anyway)."""
        session_id = await sessions.get(self.name)
        if not session_id:
            return
        try:
            async with await http.client().request("DELETE", self.url, headers={
                    **self.headers, protocol.SESSION_HEADER: session_id},
                    timeout=http1.Timeouts(connect=None, total=self.timeout)) as answer:
                await answer.read()
        except (TimeoutError, http1.HTTPError) as exc:
            log.event(logger, "upstream session end failed", 30, server=self.name, error=type(exc).__name__)

    # -- generations -------------------------------------------------------------------------------------------

    async def _probe(self, deadline: float) -> str:
        """2026-07-28 when the server answers ``server/discover`` with it; else the newest session version.
        Remembered, unless the server was in trouble (it then says nothing about its generation)."""
        version = protocol.MODERN_VERSIONS[0]
        try:
            result, _ = await self._exchange("server/discover", *self._modern(version, "server/discover", {}, None),
                                             deadline)
        except NotJsonRpc as exc:
            if exc.http_status >= 500:
                raise
            result = {}
        except JsonRpcError:
            result = {}
        supported = result.get("supportedVersions") or []
        self._detected = version if version in supported else protocol.LATEST_SESSION_VERSION
        return self._detected

    def _modern(self, version: str, method: str, params: dict[str, Any], extra_headers: dict[str, str] | None
                ) -> tuple[dict[str, Any], dict[str, str]]:
        """A 2026-07-28 request's params (our ``_meta`` envelope) and routing headers."""
        meta = params.get("_meta")
        if type(meta) is not dict:
            meta = {}
        envelope = protocol.modern_meta(version)
        # A 2026-07-28 client answers the server's questions itself (input_required, then a new call): the server
        # may ask what the client said it can answer.
        capabilities = client_capabilities(meta.get(protocol.META_CAPABILITIES))
        if capabilities:
            envelope = {**envelope, protocol.META_CAPABILITIES: capabilities}
        headers = {protocol.VERSION_HEADER: version, protocol.METHOD_HEADER: method}
        key = protocol.NAME_PARAM.get(method)
        if key is not None:
            headers[protocol.NAME_HEADER] = _header_value(str(params.get(key, "")))
        if extra_headers:
            headers.update(extra_headers)
        return {**params, "_meta": {**meta, **envelope}}, headers

    async def _in_session(self, version: str, method: str, params: dict[str, Any], sessions: UpstreamSessions,
                          channel: Channel | None, extra_headers: dict[str, str] | None, deadline: float
                          ) -> dict[str, Any]:
        session_id = await sessions.get(self.name)
        if session_id is None:
            session_id, version = await self._initialize(version, sessions.capabilities, deadline)
            await sessions.put(self.name, session_id)
        headers = {protocol.VERSION_HEADER: version, **(extra_headers or {})}
        if session_id:
            headers[protocol.SESSION_HEADER] = session_id
        result, _ = await self._exchange(method, protocol.strip_meta(params), headers, deadline, channel,
                                         session_bound=bool(session_id))
        return result

    async def _initialize(self, version: str, capabilities: dict[str, Any], deadline: float) -> tuple[str, str]:
        """Open a session: ``initialize`` (with the capabilities of the client behind it), then
        ``notifications/initialized``. Returns (session id, version); the id is empty for a server that keeps no
        sessions."""
        params = {"protocolVersion": version, "capabilities": capabilities,
                  "clientInfo": {"name": "tollgate-mcp", "version": __version__}}
        result, answer_headers = await self._exchange("initialize", params, {}, deadline)
        negotiated = result.get("protocolVersion")
        if negotiated not in protocol.SESSION_VERSIONS:
            raise JsonRpcError(UPSTREAM_ERROR, f"upstream MCP server {self.name} negotiated an unsupported "
                                               f"protocol version {negotiated!r}")
        session_id = answer_headers.get(protocol.SESSION_HEADER, "")
        headers = {protocol.VERSION_HEADER: negotiated}
        if session_id:
            headers[protocol.SESSION_HEADER] = session_id
        await self._post({"jsonrpc": "2.0", "method": "notifications/initialized"}, headers, deadline)
        return session_id, negotiated

    # -- the wire ----------------------------------------------------------------------------------------------

    async def _send(self, body: dict[str, Any], headers: dict[str, str], deadline: float) -> http1.Response:
        timeout = http1.Timeouts(connect=None, total=deadline - asyncio.get_running_loop().time())
        return await http.client().request("POST", self.url, data=orjson.dumps(body), headers=self._headers(headers),
                                           timeout=timeout)

    async def _post(self, body: dict[str, Any], headers: dict[str, str], deadline: float) -> None:
        """A message whose answer says nothing we need (a notification, a reply to the server's request)."""
        answer = await self._send(body, headers, deadline)
        try:
            await answer.read()
        finally:
            answer.release()

    async def _exchange(self, method: str, params: dict[str, Any], headers: dict[str, str], deadline: float,
                        channel: Channel | None = None, session_bound: bool = False
                        ) -> tuple[dict[str, Any], Any]:
        request_id = next(_ids)
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params:
            body["params"] = params
        answer = await self._send(body, headers, deadline)
        finishing = False
        try:
            if answer.status == 404 and session_bound:
                raise SessionExpired()
            kind = answer.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if kind == "text/event-stream":
                message = await self._from_sse(answer, request_id, channel, headers, deadline)
                finishing = message is not None and not answer.complete
                if finishing:
                    _finish_in_background(answer)
            else:
                raw = await answer.read()
                message = _json_or_none(raw)
                if message is None:
                    raise NotJsonRpc(self.name, answer.status)
            return self._result(message), answer.headers
        finally:
            if not finishing:
                answer.release()

    def _result(self, message: Any) -> dict[str, Any]:
        if not isinstance(message, dict):
            raise JsonRpcError(UPSTREAM_ERROR, f"upstream MCP server {self.name} sent no answer")
        error = message.get("error")
        if isinstance(error, dict):
            code = error.get("code") if isinstance(error.get("code"), int) else INTERNAL_ERROR
            raise JsonRpcError(code, str(error.get("message") or "upstream error"), error.get("data"),
                               status=HTTP_STATUS.get(code, 502))
        result = message.get("result")
        if not isinstance(result, dict):
            raise JsonRpcError(UPSTREAM_ERROR, f"upstream MCP server {self.name} sent a malformed answer")
        return result

    async def listen(self, sessions: UpstreamSessions, channel: Channel) -> None:
        """Relay the server's standing GET stream of our session there (``resources/updated`` and the like, and
        requests unrelated to a call) to ``channel``, until the server or the session ends it."""
        session_id = await sessions.get(self.name)
        if not session_id:
            return
        headers = {protocol.SESSION_HEADER: session_id, "Accept": "text/event-stream", **self.headers}
        try:
            async with await http.client().request("GET", self.url, headers=headers,
                                                   timeout=http1.Timeouts(connect=self.timeout)) as answer:
                if answer.status != 200:
                    log.event(logger, "upstream GET stream refused", 30, server=self.name, status=answer.status)
                    return
                await self._from_sse(answer, None, channel, {protocol.SESSION_HEADER: session_id})
        except (http1.HTTPError, JsonRpcError) as exc:
            log.event(logger, "upstream standing stream ended", 30, server=self.name, error=type(exc).__name__)

    async def _from_sse(self, answer: http1.Response, request_id: int | None, channel: Channel | None,
                        headers: dict[str, str], deadline: float | None = None) -> Any:
        """Read SSE events until the answer to ``request_id`` (or the end); notifications on the way go to the
        channel, and requests from the server are put to the client, whose answer goes back to the server."""
        decoder = SSEDecoder(MAX_SSE_LINE)
        try:
            async for chunk in answer.content.iter_any():
                for event in decoder.feed(chunk):
                    message = _json_or_none(event.raw)
                    if type(message) is not dict:
                        continue
                    if request_id is not None and message.get("id") == request_id and ("result" in message
                                                                                        or "error" in message):
                        return message
                    if "method" not in message:
                        continue
                    # The client's side (a stream it may not read, a question it may not answer) has no timer of
                    # the HTTP client's: the call's deadline bounds it here.
                    if "id" not in message:
                        if channel is not None:
                            async with asyncio.timeout_at(deadline):
                                await channel.notify(message)
                        continue
                    reply = None
                    if channel is not None:
                        async with asyncio.timeout_at(deadline):
                            reply = await channel.ask(message)
                    await self._reply(message, reply, headers, deadline)
        except SSELineTooLong as exc:
            raise JsonRpcError(UPSTREAM_ERROR, f"upstream MCP server {self.name} broke its SSE answer: "
                                               f"{exc}") from None
        return None

    async def _reply(self, asked: dict[str, Any], reply: dict[str, Any] | None, headers: dict[str, str],
                     deadline: float | None) -> None:
        """Answer a server's request to its client: with the client's answer, or declined at once (-32601) when
        the client cannot be asked: a server left waiting would hold the call until the timeout."""
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": asked.get("id")}
        if reply is not None and ("result" in reply) != ("error" in reply):
            body.update({k: reply[k] for k in ("result", "error") if k in reply})
        else:
            body["error"] = {"code": METHOD_NOT_FOUND,
                             "message": f"{asked.get('method')} is not relayed to this client by the MCP gateway"}
        await self._post(body, headers, deadline if deadline is not None
                         else asyncio.get_running_loop().time() + self.timeout)

    def _headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                **self.headers, **headers}


def _finish_in_background(answer: http1.Response) -> None:
    """Our answer came on an SSE stream the server has not ended yet (it ends it right after, as a rule): read
    the rest in the background, so that the connection goes back to the pool instead of being closed, and the
    next call pays no new connection. A server that keeps the stream open, or sends much more, loses it."""
    task = asyncio.create_task(_drain(answer))
    _draining.add(task)
    task.add_done_callback(_draining.discard)


async def _drain(answer: http1.Response) -> None:
    read = 0
    try:
        async with asyncio.timeout(DRAIN_S):
            while read <= DRAIN_BYTES:
                chunk = await answer.readany()
                if not chunk:
                    return              # ended cleanly: the connection is back in the pool
                read += len(chunk)
    except (TimeoutError, http1.HTTPError):
        pass
    finally:
        answer.release()                # closed unless it ended


def _json_or_none(raw: bytes) -> Any:
    """``raw`` decoded (None when it is not JSON), without any configured credential the server echoed: all it
    says may reach the client (results, errors, notifications, questions)."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return scrub.redact_json(message) if scrub.in_json(raw) else message


def _header_value(value: str) -> str:
    """A routing header value; names outside printable ASCII go base64-wrapped, as the spec says."""
    if value.isascii() and value.isprintable():      # printable ASCII: " " to "~"
        return value
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="

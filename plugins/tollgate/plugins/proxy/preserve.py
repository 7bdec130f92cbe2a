"""``route_type: preserve``: the client speaks the provider's own API (Anthropic Messages, Gemini generateContent,
Bedrock Converse, OpenAI, Cohere...), and the relay passes it through untouched while still metering it.

Request: the body goes unchanged (only an ``auth.param_location: body`` parameter is added to it) to the target's
provider: the path Kong forwards (relative to the route when the route strips its path, so give preserve routes
``strip_path: true``) and the client's query, unless ``options.upstream_url``/``upstream_path`` decide (see
``providers/native.py``). Only the client's content type, ``Accept`` and the providers' own API headers go along;
the configured auth is applied (SigV4 for Bedrock). A model named in the path (Gemini's ``models/{m}:...``,
Bedrock's ``model/{id}/...``) must be the target's model when the target has one, as a body ``model`` must be.

Answer: status, body and the provider's headers pass back as they arrive (JSON, SSE or AWS event-stream), byte for
byte; only hop-by-hop headers and ``Content-Encoding`` are dropped (the body arrives inflated). Usage is read on the
way: streams by the driver's own stream decoder, fed the bytes only to observe them; JSON answers by the driver's
``native_usage`` once complete. When the provider reports none, the generated text (as the driver decodes it) is
counted and marked as an estimate.

Failover works as on other route types: an error status, a broken connection or a timeout before the first bytes of
the answer move to the next target; after that nothing else can be sent. When the provider's error is the answer,
its own body reaches the client (credentials scrubbed); Tollgate's own errors stay OpenAI-shaped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from ...relay import web
from multidict import CIMultiDict

from ... import estimate, http1, log
from ...context import RequestContext
from ...providers import native
from ...providers.base import CHAT, PRESERVE, ProviderError, Target, UpstreamRequest
from ...relay import kong_log, upstream
from .attempt import CALL_ERRORS, NO_TIME_LEFT, Failure, attempt_timeouts, failure_of

logger = log.get("proxy")

_PATH_MODELS = (re.compile(r"/models/([^/:]+):[A-Za-z]+$"),                                         # Gemini
                re.compile(r"/model/([^/]+)/(?:converse|converse-stream|invoke|invoke-with-response-stream)$"))
# Answer headers that describe this hop, not the answer (or that no longer hold once the body is inflated).
_DROPPED = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
                      "content-length", "content-encoding", "date", "server", "set-cookie", "alt-svc", "via"})
KEEP_FOR_USAGE = 32 * 1024 * 1024     # a JSON answer larger than this is relayed but not read for usage


def path_model(url: str) -> str | None:
    """The model a native URL names in its path (Gemini, Bedrock), or None."""
    path = urlsplit(url).path
    for pattern in _PATH_MODELS:
        found = pattern.search(path)
        if found:
            return unquote(found.group(1))
    return None


def same_model(named: str, model: str) -> bool:
    return named.removeprefix("models/") == model.removeprefix("models/")


@dataclass(frozen=True)
class ClientRequest:
    """What of the client's request a preserve route sends on: the raw path and query as Kong forwarded them, the
    headers that may be forwarded, the body as received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @classmethod
    def of(cls, ctx: RequestContext, request: web.Request) -> "ClientRequest":
        return cls(ctx.method, request.rel_url.raw_path, request.rel_url.raw_query_string,
                   native.forwarded_headers(ctx.headers), ctx.body)


def request_for(driver: Any, client: ClientRequest, target: Target) -> tuple[Target, UpstreamRequest]:
    """The driver's native request for this client request, and the target with the model it names (a model in
    the path, when the target has none: analytics, prices and limits then know it); ProviderError when it cannot
    be served."""
    build = getattr(driver, "native_request", None)
    if build is None or getattr(driver, "native_usage", None) is None:
        raise ProviderError(400, f"{driver.name} does not serve route type preserve", "invalid_request_error",
                            "unsupported_route")
    made = build(client.method, client.path, client.query, dict(client.headers), client.body, target)
    named = path_model(made.url)
    if named and target.model and not same_model(named, target.model):
        raise ProviderError(400, f"model '{named}' is not available on this route; it serves '{target.model}'",
                            "invalid_request_error", "model_not_allowed")
    if named and not target.model:
        target = dataclasses.replace(target, model=named)
    return target, made


def passed_headers(headers: Any) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers.items() if k.lower() not in _DROPPED]


@dataclass
class NativeFailure(Failure):
    """A failure with the provider's own answer (status, headers, body), passed on when it is the last word."""

    answer: tuple[int, list[tuple[str, str]], bytes] | None = None


@dataclass
class Opened:
    """A provider answer with a success status whose first bytes have arrived and nothing was sent yet."""

    response: http1.Response
    first: bytes
    ended: bool
    ttft_ms: float
    started: float


async def call(driver: Any, request: UpstreamRequest, *, stream: bool, connect_timeout: float, read_timeout: float,
               deadline: float) -> Opened | Failure:
    """Send ``request``; never raises for what a provider or the network does (as ``attempt.call``)."""
    started = time.monotonic()
    remaining = deadline - started
    if remaining <= 0:
        return NO_TIME_LEFT
    timeout = attempt_timeouts(connect_timeout, read_timeout, remaining)
    response: http1.Response | None = None
    kept = False
    try:
        response = await upstream.client().request(request.method, request.url, headers=request.headers,
                                                    data=request.body, timeout=timeout)
        if response.status >= 400:
            body = await response.read()
            failure = Failure.from_provider(driver.parse_error(response.status, response.headers, body))
            return NativeFailure(**dataclasses.asdict(failure),
                                 answer=(response.status, passed_headers(response.headers), body))
        first = await response.content.readany()
        if stream:
            response.lift_deadline()
        kept = True
        return Opened(response, first, not first, (time.monotonic() - started) * 1000, started)
    except CALL_ERRORS as exc:
        return failure_of(exc, started)
    finally:
        if response is not None and not kept:
            response.close()


class _ClientGone(Exception):
    pass


async def relay(ctx: RequestContext, request: web.Request, opened: Opened, driver: Any, target: Target,
                headers: dict[str, str]) -> tuple[web.StreamResponse, bool]:
    """Send the provider's answer to the client as it arrives; returns the response and whether it completed.

    When Kong's tollgate-analytics companion asks for the entry (relay/kong_log.py), an answer of known length (a
    JSON body) is held until it is whole, so the entry can go in a header; any other (a stream, a chunked body) gets
    the trailer after its last byte, which the companion cuts out, so the client still gets the provider's bytes
    unchanged. ``ctx.usage`` is set whatever happens (the client leaving, the provider breaking off, cancellation)."""
    answer = opened.response
    streamed = native.is_stream(answer.headers.get("Content-Type"))
    reader = driver.native_stream_usage(target) if streamed else None
    for_kong = kong_log.wanted(ctx)
    kept = bytearray()
    overflow = False
    generated: list[str] = []
    out_headers = CIMultiDict(passed_headers(answer.headers))
    for name, value in headers.items():
        out_headers[name] = value
    length = answer.headers.get("Content-Length")
    if not (length and length.isdigit()) or answer.headers.get("Content-Encoding"):
        length = None                                 # the bytes as they arrive (inflated): no length known
    hold = for_kong and not streamed and length is not None and int(length) <= KEEP_FOR_USAGE
    if for_kong and not hold:
        out_headers.update(kong_log.promise_trailer(ctx))
    first = opened.first
    completed = False

    def observe(data: bytes) -> None:
        nonlocal overflow
        if reader is not None:
            generated.extend(estimate.generated_text(chunk) for chunk in reader.feed(data))
        elif not overflow:
            if len(kept) + len(data) > KEEP_FOR_USAGE:
                overflow = True
                kept.clear()
            else:
                kept.extend(data)

    response: web.StreamResponse = web.StreamResponse(status=answer.status, reason=answer.reason, headers=out_headers)
    if length is not None and not for_kong:
        response.content_length = int(length)        # the same bytes: the same length

    async def send(data: bytes) -> None:
        try:
            await response.write(data)
        except ConnectionResetError:
            raise _ClientGone from None

    try:
        if hold:   # whole, then sent with its entry in a header (kong_log.deliver)
            body = first if opened.ended else first + await answer.read()
            observe(body)
            response = web.Response(status=answer.status, reason=answer.reason, headers=out_headers, body=body)
            completed = True
            return response, completed
        try:
            await response.prepare(request)
        except ConnectionResetError:
            raise _ClientGone from None
        if first:
            observe(first)
            await send(first)
        if not opened.ended:
            async for data in answer.content.iter_any():
                observe(data)
                await send(data)
        if reader is not None:
            generated.extend(estimate.generated_text(chunk) for chunk in reader.close())
        if not ctx.meta.get("kong_log_trailer"):   # else the trailer follows (kong_log.deliver), then the server ends it
            try:
                await response.write_eof()
            except ConnectionResetError:
                raise _ClientGone from None
        completed = True
    except _ClientGone:
        ctx.meta["client_disconnected"] = True
    except (http1.HTTPError, asyncio.TimeoutError) as exc:
        log.event(logger, "provider stream broke", logging.WARNING, route_id=ctx.route_id, request_id=ctx.id,
                  error=type(exc).__name__)
        ctx.meta.pop("kong_log_trailer", None)   # no trailer after a cut answer
        _cut(request)   # the client must see a cut answer, never one that looks complete
    finally:
        if completed:
            answer.release()
        else:
            answer.close()            # also cancels the provider's generation when the client went away
        ctx.usage = _usage(ctx, driver, target, reader, None if overflow else bytes(kept), answer.headers,
                           "".join(generated))
        ctx.meta["latency_ms"] = (time.monotonic() - opened.started) * 1000
        ctx.meta["ttft_ms"] = opened.ttft_ms
    return response, completed


def _usage(ctx: RequestContext, driver: Any, target: Target, reader: Any, body: bytes | None, headers: Any,
           generated: str) -> Any:
    """The provider's usage, else an estimate of the generated text (marked as such), else None."""
    if reader is not None:
        usage = reader.usage
    else:
        usage = driver.native_usage(body, headers) if body is not None else None
        if usage is None and body:
            generated = _text_of(driver, target, body)
    if usage is None and generated:
        usage = estimate.usage_from_text(ctx, PRESERVE, target.model, generated)
    return usage


def _text_of(driver: Any, target: Target, body: bytes) -> str:
    """The generated text of a native JSON answer, as the driver reads a chat answer ("" when it cannot)."""
    try:
        data, _ = driver.parse_response(CHAT, body, target)
    except Exception:  # noqa: BLE001 - not a chat answer (embeddings, token counts...): nothing to estimate from
        return ""
    return estimate.generated_text(data)


def _cut(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


def native_error(failure: NativeFailure, headers: dict[str, str], redact: Callable[[str], str]) -> web.Response:
    """The provider's own error answer, scrubbed of credentials, with Tollgate's headers."""
    assert failure.answer is not None
    status, passed, body = failure.answer
    text = body.decode("utf-8", "replace")
    scrubbed = redact(text)
    if scrubbed != text:
        body = scrubbed.encode()
    out = CIMultiDict(passed)
    for name, value in headers.items():
        out[name] = value
    return web.Response(status=status, body=body, headers=out)


__all__ = ["ClientRequest", "NativeFailure", "Opened", "call", "native_error", "passed_headers", "path_model", "relay",
           "request_for"]

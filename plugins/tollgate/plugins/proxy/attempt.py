"""One call to one target, and what came of it: an answer, an open stream, or a classified failure.

A stream counts as answered once its first chunk has been decoded: until then nothing has gone to the client, so
any failure (an error status, an error event, a broken connection, no first token in time) may still fail over.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from ... import http1
from ...providers.base import ProviderError, UnreadableAnswer, UpstreamRequest, Usage
from ...relay import upstream
from .answers import CheckedStream, read_answer


@dataclass
class Failure:
    """Why an attempt failed, as failover criteria name it (``error``, ``timeout``, ``invalid_header``,
    ``http_<status>``) plus what the client would be told."""

    criterion: str
    status: int
    message: str
    type: str = "api_error"
    code: str | None = None
    retry_after: float | None = None
    elapsed_ms: float = 0.0

    @property
    def is_timeout(self) -> bool:
        return self.criterion == "timeout"

    @classmethod
    def from_provider(cls, error: ProviderError) -> "Failure":
        return cls(f"http_{error.status}", error.status, error.message, error.type, error.code, error.retry_after)


@dataclass
class Answer:
    data: dict[str, Any]
    usage: Usage | None
    elapsed_ms: float


@dataclass
class OpenStream:
    """A provider stream whose first chunks are decoded and not yet sent."""

    response: http1.Response
    decoder: Any
    first: list[dict[str, Any]]
    ended: bool                       # the provider's stream is already over
    ttft_ms: float
    started: float                    # monotonic time the attempt began
    rest: list[dict[str, Any]] = field(default_factory=list)


Outcome = Answer | OpenStream | Failure

NO_TIME_LEFT = Failure("timeout", 504, "no time was left for this attempt", "timeout", "upstream_timeout")

# What a provider or the network can do to a call; anything else is a bug and propagates.
CALL_ERRORS = (ProviderError, asyncio.TimeoutError, http1.HTTPError, OSError)


def attempt_timeouts(connect_timeout: float, read_timeout: float, remaining: float) -> http1.Timeouts:
    """One attempt's bounds: the client's own deadline (``total``) covers connecting, a plain answer's body and a
    stream's first chunks, with the timer its connection keeps anyway; once a stream has started the caller lifts
    it (`http1.Response.lift_deadline`), and only the read timeout bounds the chunks that follow."""
    return http1.Timeouts(connect=connect_timeout, read=read_timeout, total=remaining)


def failure_of(exc: BaseException, started: float) -> Failure:
    """Classify one of ``CALL_ERRORS`` as the failover criteria name it."""
    if isinstance(exc, UnreadableAnswer):  # an answer Tollgate cannot read: Kong's "invalid_header" criterion
        return Failure("invalid_header", 502, exc.message, exc.type, exc.code)
    if isinstance(exc, ProviderError):
        return Failure.from_provider(exc)
    if isinstance(exc, asyncio.TimeoutError):  # http1's ConnectTimeout and ReadTimeout are ones too
        waited = time.monotonic() - started
        return Failure("timeout", 504, _timeout_message(waited), "timeout", "upstream_timeout",
                       elapsed_ms=waited * 1000)
    if isinstance(exc, http1.BrokenBody):
        return Failure("error", 502, "the provider's answer broke off", "api_error", "upstream_broken")
    if isinstance(exc, http1.InvalidResponse):   # not HTTP Tollgate can read (or an encoding it cannot inflate)
        return Failure("invalid_header", 502, f"the answer is not readable HTTP: {exc}", "upstream_error",
                       "upstream_unreadable")
    return Failure("error", 502, f"the provider could not be reached ({type(exc).__name__})", "api_error",
                   "upstream_unreachable")


async def call(driver: Any, route_type: str, target: Any, request: UpstreamRequest, *, stream: bool,
               connect_timeout: float, read_timeout: float, deadline: float) -> Outcome:
    """Send ``request``; never raises for what a provider or the network does."""
    started = time.monotonic()
    remaining = deadline - started
    if remaining <= 0:
        return NO_TIME_LEFT
    timeout = attempt_timeouts(connect_timeout, read_timeout, remaining)
    response: http1.Response | None = None
    read = False                      # the whole body was read: the connection goes back to the pool
    try:
        response = await upstream.client().request(request.method, request.url, headers=request.headers,
                                                    data=request.body, timeout=timeout)
        if response.status >= 400:
            body = await response.read()
            read = True
            return Failure.from_provider(driver.parse_error(response.status, response.headers, body))
        if not stream:
            body = await response.read()
            read = True
            try:
                data, usage = read_answer(driver, route_type, body, target)
            except UnreadableAnswer as exc:
                return failure_of(exc, started)
            except ProviderError as exc:
                if exc.status >= 500:
                    return Failure("invalid_header", 502, exc.message, exc.type, exc.code or "upstream_invalid")
                return Failure.from_provider(exc)
            return Answer(data, usage, (time.monotonic() - started) * 1000)
        opened = await _first_chunks(driver, route_type, target, response, started)
        if isinstance(opened, OpenStream):
            response.lift_deadline()
            response = None
        return opened
    except CALL_ERRORS as exc:
        return failure_of(exc, started)
    finally:
        if response is not None:
            if read:
                response.release()
            else:
                response.close()      # cut short: never reuse a connection with an answer half read


async def _first_chunks(driver: Any, route_type: str, target: Any, response: http1.Response,
                        started: float) -> OpenStream:
    """Read until the stream yields a chunk (or ends); errors before that are the attempt's failure."""
    decoder = CheckedStream(driver.stream_decoder(route_type, target), driver.name, route_type, target.model)
    async for data in response.content.iter_any():
        chunks = decoder.feed(data)
        if chunks:
            return OpenStream(response, decoder, chunks, False, (time.monotonic() - started) * 1000, started)
    chunks = decoder.close()
    return OpenStream(response, decoder, chunks, True, (time.monotonic() - started) * 1000, started)


def _timeout_message(waited: float) -> str:
    return f"the provider did not answer within {waited:.3g} s"

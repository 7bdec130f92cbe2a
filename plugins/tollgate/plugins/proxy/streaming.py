"""Relaying an answered stream to the client as OpenAI SSE, chunk by chunk as the provider sends them.

Once the first chunk has gone out there is no failover: a break later on ends the stream with an error event, and
the usage is what the provider reported, or an estimate of what was sent (marked as estimated).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from ...relay import web

from ... import estimate, http1, log
from ...context import RequestContext
from ...providers.base import ProviderError
from ...relay import answers
from ...relay.pipeline import AnswerRefused
from .attempt import OpenStream

logger = log.get("proxy")


async def relay(ctx: RequestContext, request: web.Request, opened: OpenStream, route_type: str, model: str | None,
                headers: dict[str, str], client_wants_usage: bool, redact: Callable[[str], str] = str
                ) -> tuple[web.StreamResponse, bool]:
    """Send ``opened`` to the client through the request's answer filters; returns the response and whether the
    stream completed."""
    generated: list[str] = []
    completed = False
    decoder = opened.decoder
    filters = ctx.filters
    response = answers.sse_response(ctx, headers)
    try:
        response.headers.update(await answers.cleared(ctx))
        await response.prepare(request)
        await answers.write(response, filters, _for_client(opened.first, client_wants_usage, generated))
        if not opened.ended:
            async for data in opened.response.content.iter_any():
                await answers.write(response, filters, _for_client(decoder.feed(data), client_wants_usage, generated))
            await answers.write(response, filters, _for_client(decoder.close(), client_wants_usage, generated))
        if client_wants_usage and decoder.usage is None:
            # The provider reported no usage (e.g. Azure before api-version 2024-09-01): the client asked for a
            # usage chunk, so it gets our count, marked as an estimate.
            estimated = estimate.usage_from_text(ctx, route_type, model, "".join(generated))
            await answers.write(response, filters, [estimate.usage_chunk(opened.first, route_type, model, estimated)])
        await answers.finish(response, filters)
        completed = True
    except AnswerRefused as exc:
        await answers.refused(ctx, response, exc)
    except ProviderError as exc:
        await answers.error_event(response, redact(exc.message), exc.type, exc.code)
    except (http1.HTTPError, asyncio.TimeoutError) as exc:
        log.event(logger, "provider stream broke", logging.WARNING, error=type(exc).__name__)
        await answers.error_event(response, "the provider stream ended early", "api_error", "upstream_broken")
    except ConnectionResetError:
        ctx.meta["client_disconnected"] = True
    finally:
        if completed:
            opened.response.release()     # read to the end: the connection goes back to the pool
        else:
            opened.response.close()       # also cancels the provider's generation when the client went away
        # A stream cut short never carries the provider's usage: charge what was generated.
        ctx.usage = decoder.usage or estimate.usage_from_text(ctx, route_type, model, "".join(generated))
        ctx.meta["latency_ms"] = (time.monotonic() - opened.started) * 1000
        ctx.meta["ttft_ms"] = opened.ttft_ms
    return response, completed


def _for_client(chunks: list[dict[str, Any]], client_wants_usage: bool, generated: list[str]) -> list[dict[str, Any]]:
    """The provider's chunks as this client asked for them; what they generated is noted for the usage estimate."""
    out = []
    for chunk in chunks:
        generated.append(estimate.generated_text(chunk))
        if not client_wants_usage and "usage" in chunk:
            if chunk["usage"] and not chunk.get("choices"):
                continue  # we asked the provider for usage; this client did not
            chunk = {k: v for k, v in chunk.items() if k != "usage"}
        out.append(chunk)
    return out

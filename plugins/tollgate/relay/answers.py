"""Writing an answer in OpenAI's format to the client, through the request's answer filters.

The proxy's provider answers and a request stage's own replies (a cache hit) go out through the same few functions,
so every answer passes the same filters and ends the same way: a JSON body, or SSE chunks that end with ``[DONE]``
only when the stream completed (or was blocked on purpose: `AnswerBlocked`, see `refused`).
"""

from __future__ import annotations

from typing import AsyncIterator

import orjson
from . import web

from ..context import RequestContext
from ..providers.framing import sse_frame
from . import kong_log
from .errors import openai_error
from .pipeline import AnswerBlocked, AnswerRefused, Chunk, Filters

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


async def json(ctx: RequestContext, body: Chunk, headers: dict[str, str], status: int = 200) -> web.Response:
    """A whole answer, after every filter has seen it (an output guard may refuse it)."""
    if ctx.gate is not None:
        headers = {**headers, **await ctx.gate.cleared()}
    filters: Filters | None = ctx.filters
    if filters:
        try:
            body = await filters.answer(body)
        except AnswerRefused as exc:
            ctx.meta["refused_by_filter"] = exc.code
            return openai_error(exc.status, exc.message, exc.type, exc.code)
    return web.Response(status=status, body=orjson.dumps(body), headers={**headers, "Content-Type": "application/json"})


async def cleared(ctx: RequestContext) -> dict[str, str]:
    """Before an answer's first byte: the request's gate, if a stage set one, must have let it out. Returns the
    headers the gate's verdict adds; raises `GateClosed` when it refused (the pipeline then sends the refusal)."""
    return await ctx.gate.cleared() if ctx.gate is not None else {}


def sse_response(ctx: RequestContext, headers: dict[str, str]) -> web.StreamResponse:
    """A 200 event stream (prepare it before writing)."""
    return web.StreamResponse(status=200, headers={**SSE_HEADERS, **headers, **kong_log.promise_trailer(ctx)})


async def write(response: web.StreamResponse, filters: Filters | None, chunks: list[Chunk]) -> None:
    """Write the chunks of one upstream read in one go: nothing waits, and the client gets one packet, not many.
    Raises `AnswerRefused` when a filter stops the stream."""
    if filters:
        chunks = await filters.feed(chunks)
    if not chunks:
        return
    if len(chunks) == 1:
        await response.write(sse_frame(orjson.dumps(chunks[0])))
    else:
        await response.write(b"".join(sse_frame(orjson.dumps(c)) for c in chunks))


async def finish(response: web.StreamResponse, filters: Filters | None) -> None:
    """The end of a complete stream: what the filters held back, then ``[DONE]``."""
    tail = await filters.flush() if filters else []
    frames = b"".join(sse_frame(orjson.dumps(c)) for c in tail)
    await response.write(frames + DONE)


async def error_event(response: web.StreamResponse, message: str, type_: str, code: str | None) -> None:
    """End a stream that cannot complete: an error event the SDKs raise on, and no ``[DONE]``."""
    try:
        await response.write(sse_frame(orjson.dumps({"error": {"message": message, "type": type_, "code": code}})))
    except ConnectionResetError:
        pass


async def refused(ctx: RequestContext, response: web.StreamResponse, exc: AnswerRefused) -> None:
    """A filter stopped the stream. Refused (a filter failed): an error event and no ``[DONE]``. Blocked (an output
    guard decided): the chunks the block lets out (ending with finish_reason ``content_filter``), the error event,
    then ``[DONE]``: the stream is complete, and the SDKs raise on the error event."""
    ctx.meta["refused_by_filter"] = exc.code
    frames = b""
    if isinstance(exc, AnswerBlocked):
        frames = b"".join(sse_frame(orjson.dumps(c)) for c in exc.chunks)
    error = sse_frame(orjson.dumps({"error": {"message": exc.message, "type": exc.type, "code": exc.code}}))
    try:
        await response.write(frames + error + (DONE if isinstance(exc, AnswerBlocked) else b""))
    except ConnectionResetError:
        ctx.meta["client_disconnected"] = True


async def stream(ctx: RequestContext, request: web.BaseRequest, source: AsyncIterator[list[Chunk]],
                 headers: dict[str, str]) -> web.StreamResponse:
    """Chunks from ``source`` as an SSE stream through the request's filters."""
    response = sse_response(ctx, {**headers, **await cleared(ctx)})
    try:
        await response.prepare(request)
        async for chunks in source:
            await write(response, ctx.filters, chunks)
        await finish(response, ctx.filters)
    except AnswerRefused as exc:
        await refused(ctx, response, exc)
    except ConnectionResetError:
        ctx.meta["client_disconnected"] = True
    return response


"""One request's way through the policies of its route.

Every Tollgate plugin is a `Policy` that fills some of three hooks, and the relay runs them the same way for all:

1. **request stages** (`Policy.before`), in priority order. A stage may rewrite the request (``ctx.set_json``),
   reserve (consecutive limiting policies reserve together, one store round trip), or answer it instead: with a
   refusal (a ready `web.Response`, sent as it is) or with a `Reply` (an answer in the client's format, e.g. a cache
   hit), which goes out through the answer filters of the stages that ran before it.
2. the **terminal stage**: the one policy with ``serve`` (the proxy, or the MCP gateway) answers the request, passing
   its answer through the filters (`Filters`).
3. **answer filters** (`Policy.answer_filter`), in reverse priority order, nearest the provider first: each takes
   the answer's chunks and gives chunks out, with a flush at the end of the stream (PII restore, output guards, cache
   fill). A filter that passes a chunk on at once costs the first token nothing.
4. **after stages** (`Policy.after`: settle, charge, audit), side by side, always, also when the client left.
   Then the request's analytics are recorded and handed to Kong's log (`kong_log`), with the exact cost.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Sequence

from aiohttp import web

from .. import analytics, log
from . import kong_log
from ..context import RequestContext
from ..plugins.base import Policy
from ..plugins.limits import LimitPolicy, admit

logger = log.get("relay")

Chunk = dict[str, Any]


class AnswerRefused(Exception):
    """An answer filter stops the answer (an output guard): the client gets this error instead, or, mid-stream,
    an error event and no ``[DONE]``."""

    def __init__(self, status: int, message: str, code: str, type_: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.type = status, message, code, type_


class AnswerBlocked(AnswerRefused):
    """A filter stops a stream on purpose (an output guard's block): the ``chunks`` it still lets out (the text that
    passed, then a final chunk whose finish_reason is ``content_filter``) go to the client, then the error event and
    ``[DONE]``. The stream ends complete and says why; it is never a silent cut. On a whole answer it is an
    `AnswerRefused` like any other."""

    def __init__(self, status: int, message: str, code: str, type_: str = "invalid_request_error",
                 chunks: list[Chunk] | None = None):
        super().__init__(status, message, code, type_)
        self.chunks: list[Chunk] = chunks or []


class AnswerFilter:
    """Sees one request's answer on its way to the client, in the client's format (OpenAI objects).

    A stream comes as chunks (`feed`, then `flush` once at its end); a whole answer comes once (`answer`). Either
    may raise `AnswerRefused`. The defaults pass everything through unchanged.
    """

    async def feed(self, chunk: Chunk) -> list[Chunk]:
        return [chunk]

    async def flush(self) -> list[Chunk]:
        return []

    async def answer(self, body: Chunk) -> Chunk:
        return body


@dataclass
class Filters:
    """The answer filters of one request, in the order the answer passes them."""

    chain: list[AnswerFilter] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.chain)

    async def feed(self, chunks: list[Chunk]) -> list[Chunk]:
        for k, stage in enumerate(self.chain):
            passed: list[Chunk] = []
            try:
                for chunk in chunks:
                    passed.extend(await stage.feed(chunk))
            except AnswerBlocked as exc:
                await self._after_block(exc, passed, k)
                raise
            chunks = passed
        return chunks

    async def flush(self) -> list[Chunk]:
        """The end of the stream: what each filter held back, passed through the filters after it."""
        chunks: list[Chunk] = []
        for k, stage in enumerate(self.chain):
            passed: list[Chunk] = []
            try:
                for chunk in chunks:
                    passed.extend(await stage.feed(chunk))
                passed.extend(await stage.flush())
            except AnswerBlocked as exc:
                await self._after_block(exc, passed, k)
                raise
            chunks = passed
        return chunks

    async def _after_block(self, exc: AnswerBlocked, passed: list[Chunk], k: int) -> None:
        """Stage ``k`` blocked: what it passed before, and its last chunks, go through the stages after it, which
        then flush (their held text came before the block, so it may go out), all in ``exc.chunks``."""
        chunks = passed + exc.chunks
        for stage in self.chain[k + 1:]:
            out: list[Chunk] = []
            for chunk in chunks:
                out.extend(await stage.feed(chunk))
            chunks = out + await stage.flush()
        exc.chunks = chunks

    async def answer(self, body: Chunk) -> Chunk:
        for stage in self.chain:
            body = await stage.answer(body)
        return body


@dataclass
class Reply:
    """A request stage's own answer in the client's format: a whole ``body``, or the ``chunks`` of a stream."""

    body: Chunk | None = None
    chunks: list[Chunk] | None = None
    headers: dict[str, str] = field(default_factory=dict)


async def run(ctx: RequestContext, request: web.BaseRequest, ordered: Sequence[Policy],
              terminal: Any) -> web.StreamResponse:
    """Run ``ordered`` (highest priority first, the terminal policy among them) for ``ctx``."""
    response: web.StreamResponse | None = None
    ran: list[Policy] = []
    try:
        i = 0
        while i < len(ordered):
            policy = ordered[i]
            if isinstance(policy, LimitPolicy):
                j = i + 1
                while j < len(ordered) and isinstance(ordered[j], LimitPolicy):
                    j += 1
                answer = await admit(ctx, ordered[i:j])
                ran.extend(ordered[i:j])
                i = j
            else:
                answer = await policy.before(ctx)
                i += 1
            if isinstance(answer, Reply):
                ctx.filters = _filters(ctx, ran)
                response = await send_reply(ctx, request, answer)
                return response
            if answer is not None:
                response = answer
                return response
            if policy is not terminal:
                ran.append(policy)
        ctx.filters = _filters(ctx, ran)
        response = await terminal.serve(ctx, request)
        return response
    finally:
        ctx.status = response.status if response is not None else 499
        await _after_stages(ctx, ordered)
        if terminal.answers_llm_requests:     # LLM analytics; other terminal stages (MCP) keep their own records
            entry = analytics.record(ctx, terminal.config.get("logging"))
            if response is not None:
                await kong_log.deliver(ctx, response, entry["ai"]["proxy"])


def _filters(ctx: RequestContext, ran: list[Policy]) -> Filters:
    """The filters of the stages that let the request through, nearest the provider (lowest priority) first."""
    chain = []
    for policy in reversed(ran):
        made = policy.answer_filter(ctx)
        if made is not None:
            chain.append(made)
    return Filters(chain)


async def send_reply(ctx: RequestContext, request: web.BaseRequest, reply: Reply) -> web.StreamResponse:
    """A request stage's answer, through the filters of the stages before it, as JSON or as an SSE stream."""
    from . import answers

    headers = {**ctx.response_headers, **reply.headers}
    if reply.chunks is not None:
        async def source() -> Any:
            yield reply.chunks
        return await answers.stream(ctx, request, source(), headers)
    return await answers.json(ctx, reply.body or {}, headers)


async def _after_stages(ctx: RequestContext, ordered: Sequence[Policy]) -> None:
    """Every policy's ``after``, side by side: they are independent (each settles its own reservations), so their
    store calls travel together (one round trip to Redis for all of them) instead of one after the other."""
    stages = [p for p in ordered if type(p).after is not Policy.after]
    if len(stages) == 1:
        results: list[Any] = []
        try:
            await stages[0].after(ctx)
        except Exception as exc:
            results = [exc]
    else:
        results = await asyncio.gather(*(p.after(ctx) for p in stages), return_exceptions=True)
    for policy, result in zip(stages, results):
        if isinstance(result, Exception):  # one stage's failure must not lose the others' accounting
            log.event(logger, "after-stage failed", 40, plugin=policy.plugin, error=repr(result))
        elif isinstance(result, BaseException):
            raise result

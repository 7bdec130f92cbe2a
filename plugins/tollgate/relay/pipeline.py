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

A request stage may also let the request on before its verdict is in (input guards with ``during_call``): it sets
a `Gate` on the context. The stages after it and the terminal stage then run while the verdict is awaited, and
nothing reaches the client before it: the answer's first byte waits for the gate (relay/answers.py), and a gate that
closes cancels the terminal stage (and with it the provider call) and sends its refusal instead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Sequence

from . import web

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


class GateClosed(Exception):
    """The gate closed: the answer being prepared must not go out (the pipeline sends the gate's refusal)."""


class Gate:
    """A request stage's verdict still to come: None lets the answer out, a response refuses the request.
    ``headers`` are what the verdict adds to the answer's (set before it resolves)."""

    def __init__(self, verdict: asyncio.Future[web.StreamResponse | None], headers: dict[str, str] | None = None):
        self.verdict = verdict
        self.headers = headers if headers is not None else {}

    async def cleared(self) -> dict[str, str]:
        """Waits for the verdict: the headers it adds, or `GateClosed` when it refuses."""
        if await asyncio.shield(self.verdict) is not None:
            raise GateClosed
        return self.headers


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
                response = await _gated(ctx, send_reply(ctx, request, answer))
                return response
            if answer is not None:
                response = await _gated(ctx, _ready(answer))
                return response
            if policy is not terminal:
                ran.append(policy)
        ctx.filters = _filters(ctx, ran)
        serving = terminal.serve(ctx, request)
        response = await (serving if ctx.gate is None else _gated(ctx, serving))
        return response
    finally:
        if ctx.gate is not None and not ctx.gate.verdict.done():
            ctx.gate.verdict.cancel()
        ctx.status = response.status if response is not None else 499
        await _after_stages(ctx, ordered)
        if terminal.answers_llm_requests:     # LLM analytics; other terminal stages (MCP) keep their own records
            entry = analytics.record(ctx, terminal.config.get("logging"))
            if response is not None:
                await kong_log.deliver(ctx, response, entry["ai"]["proxy"])


async def _ready(response: web.StreamResponse) -> web.StreamResponse:
    return response


async def _gated(ctx: RequestContext, work: Any) -> web.StreamResponse:
    """``work`` (the answer being prepared) raced with the context's gate: the gate's refusal when it closes, with
    ``work`` cancelled if still under way (the provider call is dropped); else what ``work`` gave."""
    gate = ctx.gate
    if gate is None:
        return await work
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({gate.verdict, task}, return_when=asyncio.FIRST_COMPLETED)
        refusal = await asyncio.shield(gate.verdict)
    except BaseException:                           # the client left (or the verdict failed): the answer goes too
        task.cancel()
        raise
    if refusal is None:
        return await task
    if not task.done():
        ctx.meta["cancelled_by"] = "gate"
        task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and not isinstance(task.exception(), (GateClosed, type(None))):
        log.event(logger, "answer failed while its gate closed", 30, error=repr(task.exception()))
    return refusal


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
    store calls travel together (one round trip to Redis for all of them) instead of one after the other.

    The first runs in this task, the others in their own, started before it: their first steps come before the end
    of this loop turn, when the store writes what was queued. (One task fewer than ``gather``, and no gathering
    future: this runs on every request.)"""
    stages = [p for p in ordered if type(p).after is not Policy.after]
    if not stages:
        return
    others = [asyncio.ensure_future(p.after(ctx)) for p in stages[1:]]
    results: list[BaseException | None] = []
    try:
        for work in (stages[0].after(ctx), *others):
            try:
                await work
                results.append(None)
            except Exception as exc:
                results.append(exc)
    except BaseException:          # cancelled: so are the stages still running, as with gather
        for task in others:
            task.cancel()
        raise
    for policy, result in zip(stages, results):
        if result is not None:     # one stage's failure must not lose the others' accounting
            log.event(logger, "after-stage failed", 40, plugin=policy.plugin, error=repr(result))

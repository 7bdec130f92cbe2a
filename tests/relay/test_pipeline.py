"""The relay pipeline with stand-in policies: stage order, rewrites, replies, filters on whole and streamed
answers, and after stages that always run."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import aiohttp

from tollgate.context import RequestContext
from tollgate.plugins.base import Policy
from tests.relay_server import serve
from tollgate.relay import answers, pipeline, web
from tollgate.relay.pipeline import AnswerBlocked, AnswerFilter, AnswerRefused, Filters, Reply


def chunk(text: str) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}


def texts(chunks: list[dict[str, Any]]) -> list[str]:
    return [c["choices"][0]["delta"]["content"] for c in chunks]


class Upper(AnswerFilter):
    async def feed(self, c):
        return [{**c, "choices": [{"index": 0, "delta": {"content": texts([c])[0].upper()}}]}]

    async def answer(self, body):
        return {**body, "text": body["text"].upper()}


class HoldPairs(AnswerFilter):
    """Passes chunks on two at a time (the shape of a filter that must see more before it lets text go)."""

    def __init__(self):
        self.held: list[dict[str, Any]] = []

    async def feed(self, c):
        self.held.append(c)
        if len(self.held) < 2:
            return []
        out, self.held = self.held, []
        return out

    async def flush(self):
        out, self.held = self.held, []
        return out


class Refuse(AnswerFilter):
    def __init__(self, word: str):
        self.word = word

    async def feed(self, c):
        if self.word in texts([c])[0].lower():
            raise AnswerRefused(400, "blocked", "response_blocked")
        return [c]

    async def answer(self, body):
        if self.word in body["text"].lower():
            raise AnswerRefused(400, "blocked", "response_blocked")
        return body


async def test_filters_run_in_order_and_flush_passes_held_chunks_through_later_filters():
    hold, upper = HoldPairs(), Upper()
    filters = Filters([hold, upper])
    assert await filters.feed([chunk("a")]) == []
    assert texts(await filters.feed([chunk("b"), chunk("c")])) == ["A", "B"]
    assert texts(await filters.flush()) == ["C"]


class Stage(Policy):
    def __init__(self, name: str, log: list[str], *, answer: Any = None, rewrite: dict | None = None,
                 make_filter: Any = None):
        super().__init__({}, name)
        self.log, self.answer, self.rewrite, self.make_filter = log, answer, rewrite, make_filter

    async def before(self, ctx):
        self.log.append(f"before:{self.plugin}")
        if self.rewrite is not None:
            ctx.set_json(self.rewrite)
        return self.answer

    def answer_filter(self, ctx):
        return self.make_filter() if self.make_filter else None

    async def after(self, ctx):
        self.log.append(f"after:{self.plugin}:{ctx.status}")


class Terminal(Stage):
    answers_llm_requests = True
    after = Policy.after        # only the stages' after hooks are logged

    def __init__(self, log: list[str], stream: bool):
        super().__init__("terminal", log)
        self.stream = stream
        self.seen: Any = None

    async def serve(self, ctx, request):
        self.seen = ctx.json()
        text = ctx.json()["messages"][0]["content"]
        if not self.stream:
            return await answers.json(ctx, {"text": text}, {})

        async def source():
            for word in text.split():
                yield [chunk(word)]
        return await answers.stream(ctx, request, source(), {})


async def serve_once(policies: list[Policy], terminal: Terminal, body: dict) -> tuple[int, bytes, RequestContext]:
    seen: dict[str, RequestContext] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = RequestContext(method="POST", path="/", query="", headers=request.headers, body=await request.read(),
                             identity={}, policies={})
        seen["ctx"] = ctx
        return await pipeline.run(ctx, request, [*policies, terminal], terminal)

    served = await serve(handle)
    try:
        async with aiohttp.ClientSession() as client, client.post(served.url, data=orjson.dumps(body)) as response:
            return response.status, await response.read(), seen["ctx"]
    finally:
        await served.stop()


BODY = {"messages": [{"role": "user", "content": "hello big world"}]}


async def test_a_stage_rewrites_the_request_and_the_terminal_sees_it():
    log: list[str] = []
    terminal = Terminal(log, stream=False)
    rewritten = {"messages": [{"role": "user", "content": "rewritten words"}]}
    status, body, ctx = await serve_once([Stage("guard", log, rewrite=rewritten)], terminal, BODY)
    assert status == 200 and orjson.loads(body) == {"text": "rewritten words"}
    assert terminal.seen == rewritten and orjson.loads(ctx.meta["original_body"]) == BODY
    assert log == ["before:guard", "before:terminal", "after:guard:200"]


async def test_whole_answers_pass_filters_nearest_the_terminal_first():
    log: list[str] = []
    order: list[str] = []

    def tagging(tag):
        class Tag(AnswerFilter):
            async def answer(self, body):
                order.append(tag)
                return body
        return Tag

    status, body, _ = await serve_once([Stage("high", log, make_filter=tagging("high")),
                                        Stage("low", log, make_filter=tagging("low"))], Terminal(log, False), BODY)
    assert status == 200 and order == ["low", "high"]


async def test_a_refusal_is_sent_as_it_is_and_every_after_stage_still_runs():
    log: list[str] = []
    refusal = web.json_response({"error": {"code": "nope"}}, status=429)
    status, body, _ = await serve_once([Stage("limit", log, answer=refusal), Stage("guard", log)],
                                       Terminal(log, False), BODY)
    assert status == 429 and orjson.loads(body)["error"]["code"] == "nope"
    assert log == ["before:limit", "after:limit:429", "after:guard:429"]     # guard never ran its request stage


async def test_a_reply_passes_only_the_filters_of_the_stages_before_it():
    log: list[str] = []
    reply = Reply(body={"text": "from cache"})
    status, body, _ = await serve_once([Stage("guard", log, make_filter=Upper),
                                        Stage("cache", log, answer=reply, make_filter=lambda: Refuse("cache"))],
                                       Terminal(log, False), BODY)
    assert status == 200 and orjson.loads(body) == {"text": "FROM CACHE"}


async def test_a_streamed_reply_is_sse_through_the_filters_and_ends_with_done():
    log: list[str] = []
    reply = Reply(chunks=[chunk("one"), chunk("two")])
    status, body, _ = await serve_once([Stage("guard", log, make_filter=Upper), Stage("cache", log, answer=reply)],
                                       Terminal(log, True), BODY)
    frames = [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]
    assert status == 200 and frames[-1] == "[DONE]"
    assert texts([orjson.loads(f) for f in frames[:-1]]) == ["ONE", "TWO"]


async def test_a_filter_refusing_a_whole_answer_gives_an_openai_error():
    log: list[str] = []
    status, body, ctx = await serve_once([Stage("guard", log, make_filter=lambda: Refuse("world"))],
                                         Terminal(log, False), BODY)
    assert status == 400 and orjson.loads(body)["error"]["code"] == "response_blocked"
    assert ctx.meta["refused_by_filter"] == "response_blocked" and log[-1] == "after:guard:400"


@pytest.mark.parametrize("held", [False, True])
async def test_a_filter_refusing_mid_stream_ends_it_with_an_error_event_and_no_done(held: bool):
    log: list[str] = []
    stages = [Stage("guard", log, make_filter=lambda: Refuse("world"))]
    if held:
        stages.append(Stage("cache", log, make_filter=HoldPairs))
    status, body, _ = await serve_once(stages, Terminal(log, True), BODY)
    frames = [orjson.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")]
    assert status == 200 and "[DONE]" not in body.decode()
    assert frames[-1]["error"]["code"] == "response_blocked"
    assert all("world" not in f.get("choices", [{}])[0].get("delta", {}).get("content", "") for f in frames[:-1])


class Block(AnswerFilter):
    """Blocks on purpose at ``word``: lets the chunks before it out, then a content_filter end (an output guard)."""

    def __init__(self, word: str):
        self.word = word

    async def feed(self, c):
        if self.word in texts([c])[0].lower():
            end = {"id": "c", "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]}
            raise AnswerBlocked(400, "blocked", "response_blocked", chunks=[chunk("safe"), end])
        return [c]


async def test_a_block_mid_stream_ends_with_content_filter_the_error_event_and_done():
    """Blocked on purpose: what the block lets out passes the filters after it (which flush what they held), then
    the error event and ``[DONE]``; the text at and past the block never goes out."""
    log: list[str] = []
    stages = [Stage("hold", log, make_filter=HoldPairs), Stage("guard", log, make_filter=lambda: Block("world"))]
    status, body, ctx = await serve_once(stages, Terminal(log, True), BODY)
    lines = [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]
    assert status == 200 and lines[-1] == "[DONE]"
    frames = [orjson.loads(f) for f in lines[:-1]]
    assert frames[-1]["error"]["code"] == "response_blocked"
    assert [f["choices"][0]["delta"].get("content") for f in frames[:-1]] == ["hello", "big", "safe", None]
    assert frames[-2]["choices"][0]["finish_reason"] == "content_filter"
    assert ctx.meta["refused_by_filter"] == "response_blocked"


def events(log: list[str]) -> list[str]:
    return [e for e in log if not e.startswith("before:")]


class GateStage(Stage):
    """Lets the request on at once and decides later (input guards with during_call)."""

    def __init__(self, log: list[str], delay: float, refuse: bool):
        super().__init__("gate", log)
        self.delay, self.refuse = delay, refuse

    async def before(self, ctx):
        async def verdict():
            await asyncio.sleep(self.delay)
            self.log.append("verdict")
            return web.json_response({"error": {"code": "content_blocked"}}, status=400) if self.refuse else None
        ctx.gate = pipeline.Gate(asyncio.ensure_future(verdict()), {"X-Verdict": "late"})
        return None


class SlowTerminal(Terminal):
    """A provider call that takes ``delay`` before its answer; notes whether it was cancelled."""

    def __init__(self, log: list[str], stream: bool, delay: float):
        super().__init__(log, stream)
        self.delay = delay

    async def serve(self, ctx, request):
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.log.append("provider cancelled")
            raise
        self.log.append("provider answered")
        return await super().serve(ctx, request)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_gate_that_passes_lets_the_answer_out_only_after_its_verdict(stream: bool):
    log: list[str] = []
    status, body, ctx = await serve_once([GateStage(log, 0.2, refuse=False)], SlowTerminal(log, stream, 0.01), BODY)
    assert status == 200 and events(log)[:2] == ["provider answered", "verdict"]
    assert b"hello" in body


async def test_a_gate_that_closes_cancels_the_call_and_sends_its_refusal():
    log: list[str] = []
    status, body, ctx = await serve_once([GateStage(log, 0.05, refuse=True)], SlowTerminal(log, True, 5), BODY)
    assert status == 400 and orjson.loads(body)["error"]["code"] == "content_blocked"
    assert events(log)[:2] == ["verdict", "provider cancelled"] and ctx.meta["cancelled_by"] == "gate"
    assert log[-1] == "after:gate:400"


async def test_a_gate_that_closes_after_the_answer_is_ready_still_refuses_it():
    log: list[str] = []
    status, body, _ = await serve_once([GateStage(log, 0.2, refuse=True)], SlowTerminal(log, False, 0.01), BODY)
    assert status == 400 and b"hello" not in body and events(log)[:2] == ["provider answered", "verdict"]

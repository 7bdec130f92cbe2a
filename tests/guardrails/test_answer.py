"""The answer filter on OpenAI chunks and whole answers: restore, output redaction, tool calls, failures."""

from __future__ import annotations

import copy

import pytest

from tollgate.plugins.guardrails.answer import GuardrailsFilter, OutputRules
from tollgate.plugins.guardrails.pii.redact import Redactor, Vault
from tollgate.relay.pipeline import AnswerRefused

from .pii_samples import EMAIL


def chunk(content: str | None = None, finish: str | None = None, **delta) -> dict:
    if content is not None:
        delta["content"] = content
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def contents(chunks: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


def vault() -> Vault:
    v = Vault()
    v.placeholder("EMAIL_ADDRESS", EMAIL)
    return v


async def run_stream(f: GuardrailsFilter, chunks: list[dict]) -> list[dict]:
    out = []
    for c in chunks:
        out.extend(await f.feed(c))
    out.extend(await f.flush())
    return out


async def test_a_placeholder_split_over_chunks_is_restored_and_the_provider_chunks_are_not_changed():
    provider = [chunk("", role="assistant"), chunk("Sure, <EMAIL"), chunk("_ADDRESS"), chunk("_1> is"),
                chunk(" noted", finish="stop")]
    kept = copy.deepcopy(provider)
    out = await run_stream(GuardrailsFilter(vault(), None, {}), provider)
    assert contents(out) == f"Sure, {EMAIL} is noted"
    assert provider == kept                               # a filter nearer the provider may hold these
    assert out[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len(out) == 4                                  # the chunk that carried only held text is left out
    assert out[-1]["choices"][0]["finish_reason"] == "stop"


async def test_held_text_goes_out_at_the_end_of_a_stream_without_a_finish():
    out = await run_stream(GuardrailsFilter(vault(), None, {}), [chunk("bye <EMAIL_ADDRESS_")])
    assert contents(out) == "bye <EMAIL_ADDRESS_" and out[-1]["id"] == "c1"


async def test_tool_call_arguments_are_restored_as_json():
    calls = [{"index": 0, "id": "t1", "type": "function", "function": {"name": "send", "arguments": ""}}]
    frags = ['{"to": "<EMAIL_', 'ADDRESS_1>"}']
    provider = [chunk(tool_calls=calls)] + \
        [chunk(tool_calls=[{"index": 0, "function": {"arguments": a}}]) for a in frags] + [chunk(finish="tool_calls")]
    out = await run_stream(GuardrailsFilter(vault(), None, {}), provider)
    arguments = "".join(c["function"].get("arguments", "") for o in out
                        for c in o["choices"][0]["delta"].get("tool_calls") or [])
    assert arguments == f'{{"to": "{EMAIL}"}}'


async def test_completions_chunks_and_whole_answers():
    f = GuardrailsFilter(vault(), None, {})
    text_chunks = [{"object": "text_completion", "choices": [{"index": 0, "text": t, "finish_reason": r}]}
                   for t, r in [("to <EMAIL_AD", None), ("DRESS_1>", "stop")]]
    out = await run_stream(f, text_chunks)
    assert "".join(c["choices"][0]["text"] for c in out) == f"to {EMAIL}"
    whole = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi <EMAIL_ADDRESS_1>",
                                                  "tool_calls": [{"id": "t", "function": {
                                                      "name": "f", "arguments": '{"a": "<EMAIL_ADDRESS_1>"}'}}]}}]}
    answer = await GuardrailsFilter(vault(), None, {}).answer(whole)
    assert answer["choices"][0]["message"]["content"] == f"hi {EMAIL}"
    assert answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == f'{{"a": "{EMAIL}"}}'


def output(engine, **pii) -> OutputRules:
    return OutputRules(engine, Redactor(pii), 64, fail_open=False)


async def test_output_mode_redacts_the_models_own_pii_before_restoring_the_clients(engine):
    audit: dict = {}
    f = GuardrailsFilter(vault(), output(engine), audit)
    out = await run_stream(f, [chunk("Yours: <EMAIL_ADDRESS_1>; mine: jane.d"), chunk("oe@exam"),
                               chunk("ple.org bye", finish="stop")])
    assert contents(out) == f"Yours: {EMAIL}; mine: <EMAIL_ADDRESS> bye"
    assert audit == {"pii_output": {"EMAIL_ADDRESS": 1}}


async def test_output_block_refuses_the_answer(engine):
    f = GuardrailsFilter(None, output(engine, action="block"), {})
    with pytest.raises(AnswerRefused) as caught:
        await f.answer({"choices": [{"index": 0, "message": {"content": "write to jane.doe@example.org"}}]})
    assert caught.value.code == "response_blocked" and "jane" not in caught.value.message


class Broken:
    """An engine whose analyzer fails."""

    hold_trigger = None
    heavy = False

    def needed(self, text: str) -> bool:
        return True

    def analyze(self, text: str):
        raise RuntimeError("analyzer down")


async def test_an_analyzer_failure_on_the_answer_is_fail_closed_unless_fail_open():
    closed = GuardrailsFilter(None, OutputRules(Broken(), Redactor({}), 64, fail_open=False), {})
    with pytest.raises(AnswerRefused) as caught:
        await run_stream(closed, [chunk("some text here")])
    assert (caught.value.status, caught.value.code, caught.value.type) == (500, "guardrail_failed", "server_error")
    audit: dict = {}
    opened = GuardrailsFilter(vault(), OutputRules(Broken(), Redactor({}), 64, fail_open=True), audit)
    out = await run_stream(opened, [chunk("text <EMAIL_ADDRESS_1> goes"), chunk(" on", finish="stop")])
    assert contents(out) == f"text {EMAIL} goes on" and audit["pii_error"] == "analyzer_failed"

"""`RecentTexts`: the embeddings of recent texts shared by the plugins of one request (and of the next ones)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tollgate.embeddings import Embedding, RecentTexts

pytestmark = pytest.mark.asyncio


class Model:
    """Counts its calls; each waits on ``gate`` so that callers can overlap."""

    def __init__(self, fail: bool = False):
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = fail

    async def __call__(self, text: str) -> Embedding:
        self.calls.append(text)
        await self.gate.wait()
        if self.fail:
            raise OSError("provider down")
        return Embedding(np.full(4, float(len(text)), dtype=np.float32), tokens=len(text.split()), latency_ms=1.0)


async def test_callers_of_one_text_share_one_embedding_and_only_the_first_pays_the_tokens():
    recent, model = RecentTexts(), Model()
    model.gate.clear()
    waiting = [asyncio.create_task(recent.get("one two three", model)) for _ in range(3)]
    await asyncio.sleep(0)
    model.gate.set()
    first, *others = await asyncio.gather(*waiting)
    later = await recent.get("one two three", model)
    assert model.calls == ["one two three"]
    assert first.tokens == 3 and [e.tokens for e in others + [later]] == [0, 0, 0]
    assert all(e.vector is first.vector for e in others + [later])
    with pytest.raises(ValueError):
        first.vector[0] = 0.0                 # shared, so read-only


async def test_a_failure_is_not_remembered():
    recent, model = RecentTexts(), Model(fail=True)
    with pytest.raises(OSError):
        await recent.get("text", model)
    model.fail = False
    assert (await recent.get("text", model)).tokens == 1
    assert model.calls == ["text", "text"]


async def test_a_caller_that_gives_up_does_not_stop_the_others():
    recent, model = RecentTexts(), Model()
    model.gate.clear()
    leaving = asyncio.create_task(recent.get("text", model))
    staying = asyncio.create_task(recent.get("text", model))
    await asyncio.sleep(0)
    leaving.cancel()
    await asyncio.sleep(0)
    model.gate.set()
    assert (await staying).vector[0] == 4.0 and leaving.cancelled()
    assert model.calls == ["text"]


async def test_the_oldest_text_is_forgotten_first_and_long_texts_are_never_kept():
    recent, model = RecentTexts(size=2, max_chars=10), Model()
    for text in ("a", "b", "a", "c", "a", "b"):       # "a" used again, so "b" is the oldest when "c" comes
        await recent.get(text, model)
    assert model.calls == ["a", "b", "c", "b"]
    await recent.get("x" * 11, model)
    await recent.get("x" * 11, model)
    assert model.calls[-2:] == ["x" * 11, "x" * 11]


async def test_every_local_embeddings_config_shares_one_embedder_and_its_recent_texts():
    """Plugins naming the local model with different timeouts, auth or an explicit name still embed a request's
    prompt once: the local model ignores those fields."""
    from tollgate.embeddings import embedder_for, from_config

    default = from_config(None)
    assert embedder_for({"provider": "local", "name": "all-MiniLM-L6-v2"}, {"header_value": "x"}, 2.0) is default
    assert from_config({"model": {"provider": "local"}, "timeout": 5}).recent is default.recent

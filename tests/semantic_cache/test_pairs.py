"""The evaluation sets through the gateway (Kong double -> tollgate serve -> mock LLM) with the local model and the
default threshold: every near miss misses, and at least 80% of the paraphrases hit. Each pair gets its own system
prompt, so pairs never see each other's entries."""

from __future__ import annotations

import pytest

from .conftest import Env, ask
from .pairs import NEAR_MISSES, PARAPHRASES

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]


async def hits(env: Env, pairs: list[tuple[str, str]], label: str) -> list[tuple[str, str]]:
    found = []
    for i, (first, second) in enumerate(pairs):
        system = {"role": "system", "content": f"{label} pair {i}"}
        status, headers, _ = await ask(env.node, "local", messages=[system, {"role": "user", "content": first}])
        assert status == 200 and headers["X-Cache-Status"] == "Miss", first
        status, headers, _ = await ask(env.node, "local", messages=[system, {"role": "user", "content": second}])
        assert status == 200
        if headers["X-Cache-Status"] == "Hit":
            found.append((first, second))
    return found


async def test_no_near_miss_is_served_from_the_cache(env: Env):
    assert len(NEAR_MISSES) >= 40
    assert await hits(env, NEAR_MISSES, "near") == []


async def test_at_least_80_percent_of_paraphrases_hit(env: Env):
    assert len(PARAPHRASES) >= 40
    found = await hits(env, PARAPHRASES, "para")
    assert len(found) >= 0.8 * len(PARAPHRASES), set(PARAPHRASES) - set(found)

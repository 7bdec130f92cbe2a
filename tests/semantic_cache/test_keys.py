"""Partitions and exact keys: what keeps entries apart, and what does not."""

from __future__ import annotations

import pytest

from tollgate.plugins.semantic_cache.keys import NotCacheable, describe, max_tokens_band, temperature_band

CHAT = "llm/v1/chat"
CONFIG = {"message_countback": 1}
MODELS = [("openai", "gpt-4o-mini")]


def chat(*messages, **params):
    return {"messages": [{"role": r, "content": c} for r, c in messages], **params}


def key(body, config=CONFIG, scope="route:r1", models=MODELS, route_type=CHAT):
    return describe(body, route_type, config, scope, models)


def test_delivery_fields_do_not_change_the_keys():
    a = key(chat(("user", "hi"), stream=True, stream_options={"include_usage": True}, user="u1"))
    b = key(chat(("user", "hi")))
    assert (a.partition, a.exact) == (b.partition, b.exact)


@pytest.mark.parametrize("other", [
    chat(("system", "be terse"), ("user", "hi")),
    chat(("user", "hi"), tools=[{"type": "function", "function": {"name": "f"}}]),
    chat(("user", "hi"), response_format={"type": "json_object"}),
    chat(("user", "hi"), n=2),
    chat(("user", "hi"), temperature=1.5),
    chat(("user", "hi"), max_tokens=5000),
    chat(("user", "earlier"), ("assistant", "reply"), ("user", "hi")),
])
def test_what_changes_the_answer_changes_the_partition(other):
    assert key(other).partition != key(chat(("user", "hi"))).partition


def test_scope_and_models_are_in_the_partition():
    body = chat(("user", "hi"))
    assert key(body, scope="route:r2").partition != key(body).partition
    assert key(body, models=[("openai", "gpt-4o")]).partition != key(body).partition


def test_bands():
    assert temperature_band(0.2) == temperature_band(0.3) != temperature_band(0.31)
    assert temperature_band(0) != temperature_band(0.01)
    assert max_tokens_band(300) == max_tokens_band(500) != max_tokens_band(600)


def test_message_countback_embeds_the_last_messages_and_keys_the_rest():
    body = chat(("user", "first"), ("assistant", "answer"), ("user", "second"))
    assert key(body).text == "second"
    assert key(body, {"message_countback": 3}).text == "first\nanswer\nsecond"
    ignoring = key(body, {"message_countback": 3, "ignore_assistant_prompts": True})
    assert ignoring.text == "first\nsecond"


def test_system_prompts_are_keyed_unless_ignored():
    a, b = chat(("system", "x"), ("user", "hi")), chat(("system", "y"), ("user", "hi"))
    assert key(a).partition != key(b).partition
    ignoring = {"message_countback": 1, "ignore_system_prompts": True}
    assert key(a, ignoring).partition == key(b, ignoring).partition


def test_images_must_match_exactly():
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}
    with pytest.raises(NotCacheable):
        key({"messages": [image]})


def test_completions_and_embeddings():
    assert key({"prompt": "Say hi"}, route_type="llm/v1/completions").text == "Say hi"
    with pytest.raises(NotCacheable):
        key({"input": "x"}, route_type="llm/v1/embeddings")

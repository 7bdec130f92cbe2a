"""The agreement guard on its own: what makes two close prompts different questions."""

from __future__ import annotations

import pytest

from tollgate.plugins.semantic_cache.agreement import Features, agree

from .pairs import NEAR_MISSES, PARAPHRASES


def verdict(a: str, b: str) -> str | None:
    return agree(Features.of(a), Features.of(b))


@pytest.mark.parametrize("a, b, reason", [
    ("How do I enable 2FA?", "How do I disable 2FA?", "opposites"),
    ("What is 15% of 200?", "What is 15% of 300?", "numbers"),
    ("Give me three tips.", "Give me five tips.", "numbers"),
    ("Is it safe?", "Is it not safe?", "negation"),
    ("Why should I?", "Why shouldn't I?", "negation"),
    ("Translate \"I love you\".", "Translate \"I miss you\".", "quoted"),
    ("What is the weather in Paris today?", "What is the weather in London today?", "names"),
    ("Mail alice@example.com", "Mail bob@example.com", "names"),
    ("Convert 100 USD to EUR.", "Convert 100 EUR to USD.", "order"),
    ("How do I lock the door?", "How do I unlock the door?", "opposites"),
    ("What is the capital of France?", "Quelle est la capitale de la France ?", "language"),
    ("What is the capital of Japan?", "日本の首都はどこですか", "language"),
])
def test_disagreements_are_named(a: str, b: str, reason: str):
    assert verdict(a, b) == reason
    assert verdict(b, a) == reason


@pytest.mark.parametrize("a, b", [
    ("Can dogs eat chocolate?", "Is it safe for dogs to eat chocolate?"),     # a pole word on one side only
    ("What does HTTP stand for?", "what does http stand for"),                # names are case-blind
    ("Give me 1,000 ideas", "Give me 1000 ideas"),                            # one spelling per number
    ("How do I center a div in CSS?", "How can I center a div with CSS?"),
])
def test_paraphrases_agree(a: str, b: str):
    assert verdict(a, b) is None


def test_every_near_miss_of_the_set_disagrees():
    assert [(a, b) for a, b in NEAR_MISSES if verdict(a, b) is None] == []


def test_a_lone_swapped_word_disagrees_but_forms_of_one_word_agree():
    assert verdict("What is the boiling point of water?", "What is the boiling point of milk?") == "swapped word"
    assert verdict("What causes earthquakes?", "What is the cause of earthquakes?") is None


def test_features_survive_a_round_trip_through_an_entry():
    features = Features.of("Send 3 reports to alice@example.com before Friday, not after")
    assert Features.from_json(features.as_json()) == features


def test_paraphrase_set_mostly_agrees():
    agreeing = sum(1 for a, b in PARAPHRASES if verdict(a, b) is None)
    assert agreeing >= 0.85 * len(PARAPHRASES)

"""The in-process complexity scorer: what it reads of a request, its tiers on a labelled set it never learned from,
the depth prior, replaced examples, and examples that cannot train it."""

from __future__ import annotations

import pytest

from tollgate.plugins.proxy.complexity import DEPTH_MAX, PREFIX, ExamplesError, Prompt, Scorer, shared, shipped_examples
from tollgate.plugins.proxy.schema import TIERS

from .complexity_set import LABELLED, body_of

ACCURACY_FLOOR = 0.85     # bench/routing.py prints the measured value (0.93 when this was written)


def test_the_prompt_is_the_latest_user_message_and_the_depth_counts_user_turns():
    body = {"messages": [{"role": "system", "content": "You are terse."},
                         {"role": "user", "content": "first question"},
                         {"role": "assistant", "content": "an answer"},
                         {"role": "user", "content": [{"type": "text", "text": "second"},
                                                      {"type": "text", "text": "question"}]}]}
    assert Prompt.of(body) == Prompt("second\nquestion", 2)
    assert Prompt.of({"prompt": "complete me"}) == Prompt("complete me", 1)
    assert Prompt.of({"input": ["a", "b"]}) == Prompt("a\nb", 1)
    assert Prompt.of({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}) is None
    assert Prompt.of({"messages": [{"role": "assistant", "content": "only me"}]}) is None
    assert Prompt.of(None) is None


def test_the_labelled_set_is_scored_mostly_right():
    scorer = shared()
    right = sum(scorer.score(Prompt.of(body_of(p))).tier == tier for p, tier in LABELLED)
    assert len(LABELLED) >= 60
    assert right / len(LABELLED) >= ACCURACY_FLOOR, f"{right}/{len(LABELLED)}"
    # the set is not the scorer's own training data
    assert not {p for p, _ in LABELLED if isinstance(p, str)} & {e["prompt"] for e in shipped_examples()}


@pytest.mark.parametrize("text, tier", [
    ("What's the capital of Peru?", "simple"),
    ("Write a short email to a client confirming our call on Tuesday.", "standard"),
    ("Design a multi-region active-active payments ledger: discuss consistency, conflict resolution, failover and "
     "how to prove no money is created or lost, and justify the trade-offs.", "hard"),
])
def test_clear_cases(text, tier):
    score = shared().score(Prompt(text))
    assert score.tier == tier
    assert len(score.probabilities) == len(TIERS) and abs(sum(score.probabilities) - 1) < 1e-3
    assert 0.0 <= score.value <= 1.0


def test_a_deep_conversation_raises_the_score_within_its_bound():
    text = "And what about the second option?"
    alone = shared().score(Prompt(text, 1)).value
    deep = shared().score(Prompt(text, 4)).value
    deepest = shared().score(Prompt(text, 40)).value
    assert deep > alone and deepest == pytest.approx(min(1.0, alone + DEPTH_MAX), abs=1e-6)


def test_a_huge_prompt_reads_only_a_prefix_of_its_text():
    head = "Prove that every finite integral domain is a field, and explain each step. "
    huge = head + "filler words " * 50_000
    assert len(huge) > 100 * PREFIX
    assert shared().score(Prompt(huge)).tier == "hard"


TRANSLATION_FIRM = (  # a legal translation firm: every translation goes to the strongest model
    [{"prompt": p, "tier": "hard"} for p in [
        "Translate 'thank you' into French.", "Translate this sentence into German: the contract ends in May.",
        "How do you say 'good evening' in Italian?", "Translate 'invoice' into Spanish.",
        "Translate into Dutch: the parties agree to the terms below.", "Say 'see you tomorrow' in Japanese.",
        "Translate the word 'liability' into Polish.", "Translate 'hello, how are you?' into Greek."]]
    + [{"prompt": p, "tier": "simple"} for p in [
        "What is the capital of Spain?", "Who wrote Hamlet?", "How many hours are in a day?",
        "What does GDP stand for?", "Is 9 a prime number?", "Which planet is the largest?",
        "When did the Titanic sink?", "What colour is a ripe banana?"]]
    + [{"prompt": p, "tier": "standard"} for p in [
        "Write an email to a client about a delayed delivery.", "Explain how a mortgage works.",
        "Summarize the benefits of remote work.", "Write a Python function that sorts a list of names.",
        "Describe the causes of the Great Depression.", "Write a product description for a desk lamp.",
        "Explain how vaccines work.", "Give me tips for a job interview."]])


def test_replaced_examples_change_the_decision():
    prompt = Prompt("Translate 'good afternoon' into Portuguese.")
    assert shared().score(prompt).tier == "simple"
    assert Scorer(TRANSLATION_FIRM).score(prompt).tier == "hard"


def test_examples_without_every_tier_cannot_train_a_scorer():
    with pytest.raises(ExamplesError, match="hard"):
        Scorer([{"prompt": "hi", "tier": "simple"}, {"prompt": "explain tides", "tier": "standard"}])

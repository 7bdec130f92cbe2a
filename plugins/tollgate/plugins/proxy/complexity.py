"""The in-process complexity scorer: which tier (simple, standard, hard) a prompt needs, well under 2 ms.

It reads cheap features of the latest user message: its length, code (fences, code-shaped lines, programming
words), math (formulas, LaTeX, math words), multi-step instructions (lists, sequencing words, constraints, several
questions), demanding words (design, prove, trade-offs...) and the cues of quick questions (greetings, "what is",
"translate"); and its similarity to labelled examples: a TF-IDF vector of words and word pairs over the examples'
vocabulary, whose nearest examples vote per tier. A multinomial logistic regression weighs these features; it is
fitted on the labelled examples when the scorer is built (~50 ms once, numpy), leaving each example out of its own
vote so that the vote is no better in training than on a new prompt. The examples ship with Tollgate
(``complexity_examples.json``) and a config may replace them (``balancer.complexity.examples``).

Why no sentence embedding here: all-MiniLM-L6-v2 costs ~10 ms per prompt on one core, five times the budget, and
more on long prompts. Text features read only the first ``PREFIX`` characters of the message (its length is counted
in full), so a long prompt costs no more than a 4 KB one.

The conversation's depth is not in the examples (single prompts), so it is a documented prior rather than a learned
weight: each user turn after the first adds ``DEPTH_STEP`` to the score (at most ``DEPTH_MAX``), since the latest
message of a long conversation rests on context it does not show.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..guardrails.texts import message_text
from .schema import TIERS

PREFIX = 4000            # characters of a message the text features read
NEIGHBOURS = 5           # examples that vote
DEPTH_STEP = 0.04
DEPTH_MAX = 0.2
_TIER_VALUES = np.linspace(0.0, 1.0, len(TIERS))     # simple 0, standard 0.5, hard 1
EXAMPLES_FILE = Path(__file__).with_name("complexity_examples.json")

_WORD = re.compile(r"[a-z0-9_+#]+")
_MATH_SYMBOLS = re.compile(r"\\(?:frac|int|sum|sqrt|lim|prod)|\$[^$\n]+\$|\d\s*[\^*/=<>]\s*[\dxyn(]|[a-z]\^\d")
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022])\s+|\s\d\)\s", re.MULTILINE)
_GREETING = re.compile(r"(?:hi|hello|hey|thanks|thank you|good (?:morning|night|evening))\b")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _pairs(*pairs: str) -> frozenset[tuple[str, ...]]:
    return frozenset(tuple(p.split()) for p in pairs)


# Vocabularies, matched against the prompt's words and word pairs (a set lookup each: regular expressions with long
# alternations cost ~0.2 ms apiece on a 4 KB prompt).
CODE_WORDS = _words(
    "python javascript typescript java rust golang c++ c# sql bash regex function functions class method api "
    "endpoint bug bugs exception compile compiler refactor script database query async thread threads memory "
    "docker kubernetes code implement implementation library server latency")
MATH_WORDS = _words(
    "integral derivative differentiate differential equation equations theorem prove proof lemma matrix matrices "
    "eigenvalue eigenvalues eigenvectors probability polynomial logarithm calculus converge converges convergence "
    "inequality modulo induction recurrence irrational")
SEQUENCE_WORDS = _words(
    "first firstly then next finally steps step second secondly third also additionally including covering")
CONSTRAINT_WORDS = _words("must should without ensure handle exactly justify justification")
CONSTRAINT_PAIRS = _pairs("at least", "at most", "more than", "with tests", "edge cases", "edge case")
DEMANDING_WORDS = _words(
    "design architecture architect tradeoffs trade optimize optimise optimization optimisation scalable "
    "scalability distributed concurrency concurrent analyze analyse evaluate critically critique compare derive "
    "rigorous rigorously comprehensive detailed strategy migrate migration complexity diagnose diagnosis "
    "consistency generalize generalise plan")
DEMANDING_PAIRS = _pairs("root cause", "threat model", "fault tolerant", "in depth", "step by")
QUICK_PAIRS = _pairs("what is", "what s", "what does", "who is", "who was", "who wrote", "who painted", "when is",
                     "when was", "when did", "where is", "how many", "definition of", "capital of", "stand for",
                     "true or", "opposite of", "you say")
QUICK_WORDS = _words("which define translate synonym antonym spell say")
_CODE_LINE = re.compile(
    r"^\s*(?:def |class |import |from \S+ import|#include|public |private |function |const |let |var |return\b|"
    r"SELECT |INSERT |UPDATE |CREATE TABLE|for \(|while \(|if \()|[;{}]\s*$|=>|\w\(.*\)\s*[{:]\s*$",
    re.MULTILINE)


@dataclass(frozen=True)
class Prompt:
    """What the scorer reads of a request: the latest user message and how many user turns the conversation has."""

    text: str
    turns: int = 1

    @classmethod
    def of(cls, body: dict[str, Any] | None) -> "Prompt | None":
        """The request's latest user message (chat), or its prompt or input (completions, embeddings)."""
        if not isinstance(body, dict):
            return None
        messages = body.get("messages")
        if isinstance(messages, list):
            users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
            for message in reversed(users):
                text = message_text(message)
                if text and text.strip():
                    return cls(text, len(users))
            return None
        for name in ("prompt", "input"):
            value = body.get(name)
            if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                value = "\n".join(value)
            if isinstance(value, str) and value.strip():
                return cls(value)
        return None


@dataclass(frozen=True)
class Score:
    tier: str
    value: float                 # 0 (simplest) .. 1 (hardest): the expected tier, plus the depth prior
    probabilities: tuple[float, ...]


class ExamplesError(ValueError):
    """The labelled examples cannot train a scorer (a tier has none)."""


def shipped_examples() -> list[dict[str, str]]:
    return json.loads(EXAMPLES_FILE.read_text())


class Scorer:
    """Built once per set of examples (fitting takes ~50 ms); ``score`` is pure and thread-safe."""

    def __init__(self, examples: Sequence[dict[str, str]] | None = None):
        examples = list(shipped_examples() if examples is None else examples)
        labels = [TIERS.index(e["tier"]) for e in examples]
        missing = [t for i, t in enumerate(TIERS) if i not in labels]
        if missing:
            raise ExamplesError(f"the complexity examples need at least one prompt of each tier; none for "
                                f"{', '.join(missing)}")
        texts = [e["prompt"][:PREFIX] for e in examples]
        counts = [_terms(t) for t in texts]
        df = Counter(term for c in counts for term in c)
        self.vocabulary = {term: i for i, term in enumerate(df)}
        n = len(examples)
        self.idf = np.array([math.log((1 + n) / (1 + df[t])) + 1 for t in df], dtype=np.float32)
        self.unknown_idf = math.log(1 + n) + 1
        self.matrix = np.zeros((n, len(self.vocabulary)), dtype=np.float32)
        for row, c in enumerate(counts):
            columns, weights = self._vector(c)
            self.matrix[row, columns] = weights
        self.labels = np.array(labels)
        self.onehot = np.eye(len(TIERS), dtype=np.float32)[self.labels]
        similarities = self.matrix @ self.matrix.T
        np.fill_diagonal(similarities, -1.0)      # leave each example out of its own vote
        raw = np.array([[*_text_features(t, counts[i]), *self._vote(similarities[i])] for i, t in enumerate(texts)])
        mean = raw.mean(axis=0)
        scale = np.where(raw.std(axis=0) > 1e-6, raw.std(axis=0), 1.0)
        weights, bias = _fit((raw - mean) / scale, self.labels, len(TIERS))
        # the standardisation folded into the weights: one product per request
        self.weights = weights / scale[:, None]
        self.bias = bias - (mean / scale) @ weights

    def score(self, prompt: Prompt) -> Score:
        text = prompt.text[:PREFIX]
        terms = _terms(text)
        columns, weights = self._vector(terms)
        similarities = (self.matrix[:, columns] @ weights) if len(columns) else np.zeros(len(self.labels))
        x = np.array([*_text_features(text, terms, len(prompt.text)), *self._vote(similarities)])
        logits = x @ self.weights + self.bias
        p = np.exp(logits - logits.max())
        p /= p.sum()
        value = float(p @ _TIER_VALUES)
        value = min(1.0, value + min(DEPTH_MAX, DEPTH_STEP * max(0, prompt.turns - 1)))
        tier = TIERS[min(len(TIERS) - 1, int(value * len(TIERS)))]
        return Score(tier, value, tuple(round(float(v), 4) for v in p))

    def _vector(self, counts: Counter[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Columns and weights of a unit TF-IDF vector (terms outside the vocabulary only lengthen it)."""
        columns, weights = [], []
        norm = 0.0
        for term, count in counts.items():
            tf = 1.0 + math.log(count)
            column = self.vocabulary.get(term)
            weight = tf * (self.idf[column] if column is not None else self.unknown_idf)
            norm += weight * weight
            if column is not None:
                columns.append(column)
                weights.append(weight)
        norm = math.sqrt(norm) or 1.0
        return np.array(columns, dtype=np.intp), np.array(weights, dtype=np.float32) / norm

    def _vote(self, similarities: np.ndarray) -> list[float]:
        """Per tier, the similarities of the nearest examples of that tier, over the number of voters: a vote is as
        strong as the examples are near (a prompt near no example hardly votes)."""
        k = min(NEIGHBOURS, len(similarities))
        nearest = np.argpartition(-similarities, k - 1)[:k]
        sims = np.clip(similarities[nearest], 0.0, None)
        return [float(v) for v in (sims @ self.onehot[nearest]) / k]


def _terms(text: str) -> Counter[str | tuple[str, str]]:
    """Words, and word pairs as tuples (cheaper than joining them)."""
    words = _WORD.findall(text.lower())
    terms: Counter[str | tuple[str, str]] = Counter(words)
    terms.update(zip(words, words[1:]))
    return terms


def _text_features(text: str, terms: Counter[Any], length: int | None = None) -> list[float]:
    """The cheap features of a (prefix of a) message; ``length`` is the whole message's, when longer."""
    words = len(text.split()) if length is None or length <= PREFIX else length / 6

    def count(*vocabularies: frozenset[Any]) -> int:
        return sum(terms[w] for vocabulary in vocabularies for w in vocabulary if w in terms)

    code_lines = len(_CODE_LINE.findall(text)) if "\n" in text else 0
    lower = text.lower()
    quick = bool(_GREETING.match(lower)) or count(QUICK_WORDS, QUICK_PAIRS) > 0
    return [
        min(1.0, math.log1p(words) / math.log1p(400)),
        1.0 if "```" in text or code_lines >= 2 else 0.0,
        min(4, count(CODE_WORDS)) / 4,
        min(4, count(MATH_WORDS) + len(_MATH_SYMBOLS.findall(lower))) / 4,
        min(6, len(_LIST_ITEM.findall(text))) / 6,
        min(4, count(SEQUENCE_WORDS)) / 4,
        min(4, count(CONSTRAINT_WORDS, CONSTRAINT_PAIRS)) / 4,
        min(4, text.count("?")) / 4,
        min(5, count(DEMANDING_WORDS, DEMANDING_PAIRS)) / 5,
        1.0 if quick else 0.0,
    ]


def _fit(x: np.ndarray, y: np.ndarray, classes: int, *, l2: float = 0.05, steps: int = 600,
         rate: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by gradient descent (deterministic: starts from zero)."""
    n, d = x.shape
    target = np.eye(classes)[y]
    w = np.zeros((d, classes))
    b = np.zeros(classes)
    for _ in range(steps):
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        error = (p - target) / n
        w -= rate * (x.T @ error + l2 * w)
        b -= rate * error.sum(axis=0)
    return w, b


_shared: Scorer | None = None


def shared() -> Scorer:
    """The scorer trained on the shipped examples (built once per process, on first use)."""
    global _shared
    if _shared is None:
        _shared = Scorer()
    return _shared

"""Deterministic text helpers shared by every wire format of the mock LLM.

Token counts are a plain regex count (words and punctuation marks), not a real BPE tokenizer: the mock only has to be
deterministic and cheap, and tests that need exact numbers script them on the Reply.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import sys
from array import array
from functools import lru_cache

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_WORD_RE = re.compile(r"\S+\s*|\s+")
_EMBED_WORD_RE = re.compile(r"\w+")

#: default streams send one word per chunk, but never more than this many chunks
MAX_DEFAULT_CHUNKS = 256
#: tool-call arguments are streamed in fragments of this many characters (OpenAI sends a few characters per chunk)
ARGUMENT_FRAGMENT = 8


_findall = _TOKEN_RE.findall


@lru_cache(maxsize=4096)
def _count_short(text: str) -> int:
    return len(_findall(text))


def count_tokens(text: str) -> int:
    """Deterministic token count: words plus punctuation marks (short texts are memoised)."""
    if not text:
        return 0
    if len(text) <= 512:
        return _count_short(text)
    return len(_findall(text))


def truncate_tokens(text: str, max_tokens: int) -> tuple[str, bool]:
    """Cut ``text`` after its ``max_tokens``-th token; returns (text, was_cut)."""
    if max_tokens <= 0:
        return "", bool(text)
    for i, match in enumerate(_TOKEN_RE.finditer(text), 1):
        if i == max_tokens:
            end = match.end()
            return text[:end], end < len(text.rstrip())
    return text, False


def split_text(text: str, chunks: int | None = None) -> list[str]:
    """Split ``text`` into stream pieces whose concatenation is ``text``.

    ``chunks=None``: one word (with its trailing space) per piece, grouped when there would be more than
    MAX_DEFAULT_CHUNKS. ``chunks=N``: exactly N pieces (whole words when there are enough words, else characters;
    pieces may be empty when the text is shorter than N).
    """
    if chunks is not None and chunks <= 0:
        return []
    if not text:
        return [""] * chunks if chunks else []
    words = _WORD_RE.findall(text)
    target = chunks if chunks is not None else min(len(words), MAX_DEFAULT_CHUNKS)
    if target == len(words):
        return words
    if target < len(words):
        return _group(words, target)
    # more pieces than words: split on characters
    return [text[(len(text) * i) // target:(len(text) * (i + 1)) // target] for i in range(target)]


def _group(items: list[str], n: int) -> list[str]:
    total = len(items)
    return ["".join(items[(total * i) // n:(total * (i + 1)) // n]) for i in range(n)]


def fragments(text: str, size: int = ARGUMENT_FRAGMENT) -> list[str]:
    """Fixed-size pieces of ``text`` (at least one piece, possibly empty); used for tool-call argument deltas."""
    if not text:
        return [""]
    size = max(size, -(-len(text) // MAX_DEFAULT_CHUNKS))
    return [text[i:i + size] for i in range(0, len(text), size)]


_FILLER = "mock "


@lru_cache(maxsize=4)
def filler(size: int) -> str:
    """A deterministic ASCII text of exactly ``size`` characters (for huge replies)."""
    if size <= 0:
        return ""
    reps = size // len(_FILLER) + 1
    return (_FILLER * reps)[:size]


@lru_cache(maxsize=4)
def filler_tokens(size: int) -> int:
    return len(_findall(filler(size)))


# ---------------------------------------------------------------------------------------------------------------------
# embeddings: bag-of-words vectors, so texts sharing words are close (cosine) and identical texts are identical.


@lru_cache(maxsize=2048)
def _word_vector(word: str, dims: int) -> array:
    raw = hashlib.shake_256(word.encode("utf-8", "surrogatepass")).digest(dims * 2)
    return array("f", [v / 32768.0 for v in array("h", raw)])


def embedding(text: str, dims: int) -> array:
    """Unit-length float32 vector for ``text``: the normalised sum of one pseudo-random vector per lowercased word."""
    words = _EMBED_WORD_RE.findall(text.lower()) or [text]
    if len(words) == 1:
        acc = _word_vector(words[0], dims).tolist()
    else:
        acc = [sum(col) for col in zip(*(_word_vector(w, dims) for w in words))]
    norm = math.sqrt(sum(v * v for v in acc)) or 1.0
    return array("f", [v / norm for v in acc])


def embedding_base64(vec: array) -> str:
    """base64 of little-endian float32 values, as OpenAI's ``encoding_format: base64`` returns them."""
    if sys.byteorder != "little":
        vec = array("f", vec)
        vec.byteswap()
    return base64.b64encode(vec.tobytes()).decode("ascii")

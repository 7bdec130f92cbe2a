"""Text as a deny rule should see it: obfuscation undone.

Prompt-injection filters are dodged with text that reads the same to a model but not to a regex: full-width or
styled letters (𝗶𝗴𝗻𝗼𝗿𝗲), zero-width joiners inside words, bidi overrides, invisible Unicode tag characters, and
Cyrillic or Greek letters that look Latin ("іgnоre" with Cyrillic і and о). `normalise` undoes those: NFKC, then the
invisible characters removed, combining marks dropped, and common homoglyphs folded to Latin. Rules match the raw
text and this form, so a pattern written in any script still matches its own text.
"""

from __future__ import annotations

import re
import unicodedata

# Zero-width and joiner characters, bidi controls, the invisible "tag" block (used to hide text from people while a
# model still reads it), variation selectors, soft hyphen and other default-ignorable characters.
_INVISIBLE_RANGES = [
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE007F), (0xE0100, 0xE01EF),
]

# Letters of other scripts that render like Latin ones (Unicode's confusables for the Latin alphabet, the common
# part). NFKC already folds full-width and mathematical letters; these it leaves alone.
_HOMOGLYPHS = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i", "ј": "j", "к": "k", "м": "m", "н": "h",
    "о": "o", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ɡ": "g",
    "ӏ": "l", "ь": "b", "п": "n", "г": "r",
    "А": "A", "В": "B", "Е": "E", "Ё": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C",
    "Т": "T", "У": "Y", "Х": "X", "І": "I", "Ї": "I", "Ј": "J", "Ѕ": "S", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "γ": "y", "ω": "w",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # Latin look-alikes NFKC keeps
    "ı": "i", "ȷ": "j", "ɑ": "a", "ꓲ": "I", "Ɩ": "l", "ǀ": "l", "ꞵ": "b",
}

# Combining diacritical marks (the blocks accents and overlays come from).
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")

_TABLE: dict[int, str | None] = {cp: None for lo, hi in _INVISIBLE_RANGES for cp in range(lo, hi + 1)}
_TABLE.update({ord(k): v for k, v in _HOMOGLYPHS.items()})


_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


def _fold(text: str) -> str:
    """Invisible characters out, homoglyphs folded. ``translate`` looks every character up; when only a few are
    not ASCII (a Latin prompt with a planted Cyrillic letter), looking up just those runs is 3x faster."""
    if len(text.encode()) - len(text) < len(text) // 16:
        return _NON_ASCII.sub(lambda m: m.group().translate(_TABLE), text)
    return text.translate(_TABLE)


def normalise(text: str) -> str:
    """``text`` with look-alike and invisible obfuscation undone (ASCII text comes back as it is, at no cost)."""
    if text.isascii():
        return text
    text = _fold(unicodedata.normalize("NFKC", text))
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    if _COMBINING.search(decomposed):                       # "ìgnore" -> "ignore"
        text = _fold(unicodedata.normalize("NFKC", _COMBINING.sub("", decomposed)))
    return text

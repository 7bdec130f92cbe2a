"""Finding PII with Presidio's recognizers, offline and within a few milliseconds per kilobyte.

Presidio's ``AnalyzerEngine`` with the ``no_op`` NLP engine runs every pattern recognizer over the whole text; on a
1 KB prompt that is ~14 ms here, and almost all of it is the phone recognizer, which runs `phonenumbers`' matcher
once per region (8 by default) and tries every digit run it meets (card numbers, IBANs, IP addresses...) as a phone
number in each. So this engine calls the same recognizers itself, in three steps that bound the cost:

1. a pre-scan: each recognizer has a cheap necessary condition (an email needs ``@``, a card number or a phone
   number a digit); a recognizer whose condition the text does not meet is not run, and text that meets none
   (most prose) costs a few microseconds;
2. the other recognizers (pattern recognizers, linear in the text) run on the whole text;
3. the phone recognizer runs only on short windows around digit runs that step 2 did not already claim.

Custom patterns run on RE2 (linear time). One engine is built per distinct PII config and shared by every instance
that has it. Results below ``score_threshold`` are dropped, and overlaps go to the higher score, then the longer
span (as Presidio's anonymizer resolves them).
"""

from __future__ import annotations

import bisect
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable

import tldextract
from presidio_analyzer import RecognizerResult
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer, CryptoRecognizer, DateRecognizer, EmailRecognizer, IbanRecognizer, IpRecognizer,
    MacAddressRecognizer, MedicalLicenseRecognizer, NhsRecognizer, PhoneRecognizer, UrlRecognizer,
    UsBankRecognizer, UsItinRecognizer, UsLicenseRecognizer, UsPassportRecognizer, UsSsnRecognizer)

from ..prompt_guard import compile_pattern

# The public suffix list bundled with tldextract: the email recognizer's domain check, with no download.
_SUFFIXES = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email recognizer, checking the domain against tldextract's bundled list (no download)."""

    def validate_result(self, pattern_text: str) -> bool:
        return _SUFFIXES(pattern_text).fqdn != ""


_DIGITS = "0123456789"
_DIGIT = re.compile(r"\d")
_HEX_COLON = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f]*:")


def _has_digit(text: str) -> bool:
    # ten substring searches (memchr-fast) beat one regex scan by 30x; other scripts' digits need the regex
    return any(d in text for d in _DIGITS) or (not text.isascii() and _DIGIT.search(text) is not None)


def _has_at(text: str) -> bool:
    return "@" in text


def _maybe_ip(text: str) -> bool:
    return _has_digit(text) or (":" in text and _HEX_COLON.search(text) is not None)


# Per entity: a cheap necessary condition on the text, and the same as a pattern (to find where, in a stream).
Trigger = tuple[Callable[[str], bool], str]
_BY_DIGIT: Trigger = (_has_digit, r"\d")
_TRIGGERS: dict[str, Trigger] = {
    "EMAIL_ADDRESS": (_has_at, "@"),
    "IP_ADDRESS": (_maybe_ip, r"\d|[0-9A-Fa-f]:[0-9A-Fa-f]*:"),
    **{name: _BY_DIGIT for name in ("PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "US_BANK_NUMBER",
                                    "US_ITIN", "UK_NHS")},
}

# Entities that never contain whitespace: their recognizers read only the words that could hold them (an
# email's word has an "@"), joined by spaces, instead of the whole text.
_WORDS: dict[str, re.Pattern[str]] = {
    "EMAIL_ADDRESS": re.compile(r"\S*@\S*"),
    "IP_ADDRESS": re.compile(r"\S*[0-9:]\S*"),
}

_RECOGNIZERS: dict[str, Callable[[], Any]] = {
    "EMAIL_ADDRESS": OfflineEmailRecognizer, "CREDIT_CARD": CreditCardRecognizer, "US_SSN": UsSsnRecognizer,
    "IBAN_CODE": IbanRecognizer, "IP_ADDRESS": IpRecognizer, "URL": UrlRecognizer, "CRYPTO": CryptoRecognizer,
    "DATE_TIME": DateRecognizer, "MAC_ADDRESS": MacAddressRecognizer, "MEDICAL_LICENSE": MedicalLicenseRecognizer,
    "UK_NHS": NhsRecognizer, "US_BANK_NUMBER": UsBankRecognizer, "US_DRIVER_LICENSE": UsLicenseRecognizer,
    "US_ITIN": UsItinRecognizer, "US_PASSPORT": UsPassportRecognizer,
}
KNOWN_ENTITIES = frozenset(_RECOGNIZERS) | {"PHONE_NUMBER"}

# A digit run that could be a phone number (at least 6 characters of digits and separators), and how much text
# around it the phone matcher sees (it checks what comes before and after a number).
_PHONE_CANDIDATE = re.compile(r"\+?\(?\d[\d \t().\-/]{4,}\d")
_PHONE_CONTEXT = 12


class EntityError(ValueError):
    """An entity name no recognizer knows (a config error)."""


@dataclass(frozen=True, slots=True)
class Finding:
    entity: str
    start: int
    end: int
    score: float


class Step:
    """One recognizer and when to run it: ``trigger`` (None: always), on the whole text or on ``words`` only."""

    def __init__(self, recognizer: Any, trigger: Trigger | None, words: re.Pattern[str] | None = None):
        self.recognizer, self.trigger, self.words = recognizer, trigger, words
        self.entities = list(recognizer.supported_entities)

    def run(self, text: str, threshold: float) -> list[Finding]:
        if self.trigger is not None and not self.trigger[0](text):
            return []
        if self.words is None:
            return self._found(text, threshold)
        found: list[Finding] = []
        parts, starts = [], []                    # the words, and where each starts in ``text``
        for m in self.words.finditer(text):
            parts.append(m.group())
            starts.append(m.start())
        joined, at = " ".join(parts), 0
        offsets = []                              # where each word starts in ``joined``
        for part in parts:
            offsets.append(at)
            at += len(part) + 1
        for f in self._found(joined, threshold):
            i = bisect.bisect_right(offsets, f.start) - 1
            shift = starts[i] - offsets[i]
            if f.end <= offsets[i] + len(parts[i]):
                found.append(Finding(f.entity, f.start + shift, f.end + shift, f.score))
        return found

    def _found(self, text: str, threshold: float) -> list[Finding]:
        return [Finding(r.entity_type, r.start, r.end, r.score)
                for r in self.recognizer.analyze(text, entities=self.entities, nlp_artifacts=None)
                if r.score >= threshold and r.end > r.start]


class PatternRecognizer:
    """A ``pii.custom_patterns`` entry: an RE2 pattern and its score (Presidio's result type, linear-time match)."""

    def __init__(self, entity: str, regex: str, score: float, where: str):
        self.entity, self.score = entity, score
        self.pattern = compile_pattern(regex, where)
        self.supported_entities = [entity]

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        return [RecognizerResult(self.entity, m.start(), m.end(), self.score)
                for m in self.pattern.finditer(text) if m.end() > m.start()]


def entity_label(name: str) -> str:
    """A custom pattern's name as an entity type (``employee id`` -> ``EMPLOYEE_ID``)."""
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") or "CUSTOM"


class PiiEngine:
    def __init__(self, entities: list[str], threshold: float, custom: list[dict[str, Any]],
                 phone_regions: list[str]):
        self.threshold = threshold
        self.steps: list[Step] = []
        for name in dict.fromkeys(entities):
            if name == "PHONE_NUMBER":
                continue
            make = _RECOGNIZERS.get(name)
            if make is None:
                raise EntityError(f"pii.entities: unknown entity {name!r} (known: {', '.join(sorted(KNOWN_ENTITIES))})")
            self.steps.append(Step(make(), _TRIGGERS.get(name), _WORDS.get(name)))
        for i, entry in enumerate(custom):
            recognizer = PatternRecognizer(entity_label(entry["name"]), entry["regex"], float(entry.get("score", 0.5)),
                                           f"pii.custom_patterns[{i}].regex")
            self.steps.append(Step(recognizer, None))
        # Presidio's phone recognizer, one per region: a window stops at the first region that finds its number
        # (the others would report the same span again).
        self.phones = [PhoneRecognizer(supported_regions=(region,)) for region in phone_regions] \
            if "PHONE_NUMBER" in entities else []
        triggers = [step.trigger for step in self.steps] + ([_BY_DIGIT] if self.phones else [])
        if not triggers:
            raise EntityError("pii.entities: no entity and no custom pattern to look for")
        # What makes a stream hold text back (see stream.py): any character an entity needs; None when a
        # recognizer has no such condition (a custom pattern), so the whole look-behind window is held.
        self.hold_trigger: re.Pattern[str] | None = None if any(t is None for t in triggers) else \
            re.compile("|".join(sorted({t[1] for t in triggers if t is not None})))

    def needed(self, text: str) -> bool:
        """Whether any recognizer could find anything in ``text`` (the pre-scan, microseconds)."""
        if self.phones and _has_digit(text):
            return True
        return any(step.trigger is None or step.trigger[0](text) for step in self.steps)

    def analyze(self, text: str) -> list[Finding]:
        """The PII in ``text``, without overlaps, in text order."""
        found: list[Finding] = []
        for step in self.steps:
            found.extend(step.run(text, self.threshold))
        if self.phones and _has_digit(text):
            found.extend(self._phones(text, found))
        return _without_overlaps(found)

    def _phones(self, text: str, claimed: list[Finding]) -> list[Finding]:
        blank = list(text)
        for f in claimed:                         # a card number or IBAN is not a phone number as well
            blank[f.start:f.end] = " " * (f.end - f.start)
        masked = "".join(blank) if claimed else text
        out = []
        for lo, hi, candidates in _windows(masked):
            window = masked[lo:hi]
            for recognizer in self.phones:
                for r in recognizer.analyze(window, entities=["PHONE_NUMBER"], nlp_artifacts=None):
                    if r.score >= self.threshold:
                        out.append(Finding("PHONE_NUMBER", lo + r.start, lo + r.end, r.score))
                        candidates = [c for c in candidates if c[1] <= lo + r.start or c[0] >= lo + r.end]
                if not candidates:
                    break
        return out


def _windows(text: str) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Stretches of text around digit runs, with the runs (phone candidates) each holds."""
    windows: list[tuple[int, int, list[tuple[int, int]]]] = []
    for m in _PHONE_CANDIDATE.finditer(text):
        lo, hi = max(0, m.start() - _PHONE_CONTEXT), min(len(text), m.end() + _PHONE_CONTEXT)
        if windows and lo <= windows[-1][1]:
            windows[-1] = (windows[-1][0], hi, windows[-1][2] + [m.span()])
        else:
            windows.append((lo, hi, [m.span()]))
    return windows


def _without_overlaps(found: list[Finding]) -> list[Finding]:
    kept: list[Finding] = []
    for f in sorted(found, key=lambda f: (-f.score, f.start - f.end, f.start)):
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


_engines: dict[tuple[Any, ...], PiiEngine] = {}
_engines_lock = threading.Lock()


def engine_for(pii: dict[str, Any]) -> PiiEngine:
    """The shared engine of a ``pii`` config (built once per distinct config, in the process)."""
    entities = list(pii.get("entities") or [])
    custom = [dict(c) for c in pii.get("custom_patterns") or []]
    regions = list(pii.get("phone_regions") or [])
    threshold = float(pii.get("score_threshold") or 0.0)
    key = (tuple(entities), threshold, tuple((c["name"], c["regex"], c.get("score")) for c in custom), tuple(regions))
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = PiiEngine(entities, threshold, custom, regions)
    return engine

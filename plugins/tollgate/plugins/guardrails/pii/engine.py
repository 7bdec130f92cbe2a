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

Custom patterns run on RE2 (linear time). One engine is built per distinct PII config, in the background
(pool.py), and shared by every instance that has it. Results below ``score_threshold`` are dropped, and overlaps
go to the higher score, then the longer span (as Presidio's anonymizer resolves them).
"""

from __future__ import annotations

import bisect
import re
from typing import Any, Callable

import tldextract
from presidio_analyzer import RecognizerResult
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer, CryptoRecognizer, DateRecognizer, EmailRecognizer, IbanRecognizer, IpRecognizer,
    MacAddressRecognizer, MedicalLicenseRecognizer, NhsRecognizer, PhoneRecognizer, UrlRecognizer,
    UsBankRecognizer, UsItinRecognizer, UsLicenseRecognizer, UsPassportRecognizer, UsSsnRecognizer)

from ..prompt_guard import compile_pattern
from .entities import NER_ENTITIES, NER_MODEL, TRIGGERS, Finding, Trigger, entity_label, has_digit, hold_trigger

# The public suffix list bundled with tldextract: the email recognizer's domain check, with no download.
_SUFFIXES = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email recognizer, checking the domain against tldextract's bundled list (no download)."""

    def validate_result(self, pattern_text: str) -> bool:
        return _SUFFIXES(pattern_text).fqdn != ""


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
# A digit run that could be a phone number (at least 6 characters of digits and separators), and how much text
# around it the phone matcher sees (it checks what comes before and after a number).
_PHONE_CANDIDATE = re.compile(r"\+?\(?\d[\d \t().\-/]{4,}\d")
_PHONE_CONTEXT = 12


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


class NerRecognizer:
    """Names, places and organisations from the spaCy model (Presidio's SpacyNlpEngine and SpacyRecognizer).
    Tens of milliseconds per kilobyte: engines that have it always analyse in the thread pool."""

    def __init__(self, entities: list[str]):
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer

        self.nlp = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": NER_MODEL}])
        self.nlp.load()
        self.recognizer = SpacyRecognizer(supported_entities=entities)
        self.supported_entities = entities

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        return self.recognizer.analyze(text, entities, nlp_artifacts=self.nlp.process_text(text, "en"))


class PatternRecognizer:
    """A ``pii.custom_patterns`` entry: an RE2 pattern and its score (Presidio's result type, linear-time match)."""

    def __init__(self, entity: str, regex: str, score: float):
        self.entity, self.score = entity, score
        self.pattern = compile_pattern(regex, "pii.custom_patterns")
        self.supported_entities = [entity]

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        return [RecognizerResult(self.entity, m.start(), m.end(), self.score)
                for m in self.pattern.finditer(text) if m.end() > m.start()]


class PiiEngine:
    def __init__(self, pii: dict[str, Any]):
        """``pii`` as `entities.check` accepted it."""
        entities = list(dict.fromkeys(pii.get("entities") or []))
        self.threshold = float(pii.get("score_threshold") or 0.0)
        self.steps: list[Step] = [Step(_RECOGNIZERS[name](), TRIGGERS.get(name), _WORDS.get(name))
                                  for name in entities if name in _RECOGNIZERS]
        ner = [name for name in entities if name in NER_ENTITIES]
        if ner:
            self.steps.append(Step(NerRecognizer(ner), None))
        self.heavy = bool(ner)
        for entry in pii.get("custom_patterns") or []:
            self.steps.append(Step(PatternRecognizer(entity_label(entry["name"]), entry["regex"],
                                                     float(entry.get("score", 0.5))), None))
        # Presidio's phone recognizer, one per region: a window stops at the first region that finds its number
        # (the others would report the same span again).
        self.phones = [PhoneRecognizer(supported_regions=(region,)) for region in pii.get("phone_regions") or []] \
            if "PHONE_NUMBER" in entities else []
        self.hold_trigger = hold_trigger(pii)

    def needed(self, text: str) -> bool:
        """Whether any recognizer could find anything in ``text`` (the pre-scan, microseconds)."""
        if self.phones and has_digit(text):
            return True
        return any(step.trigger is None or step.trigger[0](text) for step in self.steps)

    def analyze(self, text: str) -> list[Finding]:
        """The PII in ``text``, without overlaps, in text order."""
        found: list[Finding] = []
        for step in self.steps:
            found.extend(step.run(text, self.threshold))
        if self.phones and has_digit(text):
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

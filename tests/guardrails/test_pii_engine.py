"""The PII engine: Presidio's recognizers offline, the pre-scan, the windows, thresholds, overlaps, custom
patterns."""

from __future__ import annotations

import pytest

from tollgate.plugins.guardrails.pii import entities
from tollgate.plugins.guardrails.pii.engine import PiiEngine
from tollgate.plugins.guardrails.pii.entities import EntityError
from tollgate.plugins.guardrails.pii.pool import engine_future
from tollgate.plugins.guardrails.prompt_guard import PatternError
from tollgate.plugins.guardrails.schema import DEFAULT_ENTITIES, DEFAULT_PHONE_REGIONS

from .pii_samples import ALL, PROMPT


def config(**pii) -> dict:
    return {"entities": DEFAULT_ENTITIES, "score_threshold": 0.4, "phone_regions": DEFAULT_PHONE_REGIONS, **pii}


def engine(**pii) -> PiiEngine:
    checked = config(**pii)
    entities.check(checked)
    return PiiEngine(checked)


def found(e: PiiEngine, text: str) -> dict[str, str]:
    return {f.entity: text[f.start:f.end] for f in e.analyze(text)}


def test_the_six_default_entities_are_found_each_once_and_whole():
    assert found(engine(), PROMPT) == ALL
    assert len(engine().analyze(PROMPT)) == 6         # a card or an IP is not also reported as a phone number


def test_text_without_any_entitys_characters_skips_the_analyzer():
    e = engine()
    assert not e.needed("Plain prose, no numbers and no at-signs.")
    assert e.needed("call 555") and e.needed("me@x")


def test_national_phone_numbers_of_several_regions_in_one_window():
    text = "US office (415) 555-0100, Berlin office 030 901820"
    phones = [text[f.start:f.end] for f in engine().analyze(text) if f.entity == "PHONE_NUMBER"]
    assert phones == ["(415) 555-0100", "030 901820"]


def test_threshold_drops_weak_findings():
    assert "PHONE_NUMBER" not in found(engine(score_threshold=0.5), PROMPT)     # Presidio scores phones 0.4


def test_the_email_domain_check_works_offline():
    assert found(engine(entities=["EMAIL_ADDRESS"]), "a@b.notatld x@mail.co.uk") == {"EMAIL_ADDRESS": "x@mail.co.uk"}


def test_custom_patterns_run_on_re2_with_their_score():
    e = engine(entities=[], custom_patterns=[{"name": "employee id", "regex": r"EMP-\d{6}", "score": 0.9}])
    assert found(e, "badge EMP-123456 please") == {"EMPLOYEE_ID": "EMP-123456"}
    assert e.hold_trigger is None                       # no cheap condition: a stream holds its whole window


def test_config_errors():
    with pytest.raises(EntityError, match="PERSONA"):
        engine(entities=["PERSONA"])
    with pytest.raises(PatternError, match=r"custom_patterns\[0\]"):
        engine(entities=[], custom_patterns=[{"name": "x", "regex": "(?<=a)b"}])
    with pytest.raises(EntityError):
        engine(entities=[])


def test_engines_are_built_once_per_distinct_config():
    assert engine_future(config()) is engine_future(config())
    assert engine_future(config()) is not engine_future(config(score_threshold=0.9))
    assert isinstance(engine_future(config()).result(timeout=60), PiiEngine)


def test_names_places_and_organisations_with_the_optional_spacy_model():
    pytest.importorskip(entities.NER_MODEL)
    e = engine(entities=["PERSON", "LOCATION", "EMAIL_ADDRESS"])
    text = "My name is John Smith, I live in Paris, mail john.smith@example.com"
    assert found(e, text) == {"PERSON": "John Smith", "LOCATION": "Paris", "EMAIL_ADDRESS": "john.smith@example.com"}
    assert e.heavy and e.hold_trigger is None


def test_ner_entities_without_the_model_are_a_config_error(monkeypatch):
    monkeypatch.setattr(entities, "ner_available", lambda: False)
    with pytest.raises(EntityError, match=r"tollgate\[ner\]"):
        entities.check(config(entities=["PERSON"]))

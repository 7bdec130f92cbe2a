"""A PII engine for the library tests (Presidio loads once per test session)."""

from __future__ import annotations

import pytest

from tollgate.plugins.guardrails.pii import entities
from tollgate.plugins.guardrails.pii.engine import PiiEngine
from tollgate.plugins.guardrails.schema import DEFAULT_ENTITIES, DEFAULT_PHONE_REGIONS


def pii_config(**pii) -> dict:
    config = {"entities": DEFAULT_ENTITIES, "score_threshold": 0.4, "phone_regions": DEFAULT_PHONE_REGIONS, **pii}
    entities.check(config)
    return config


@pytest.fixture(scope="session")
def engine() -> PiiEngine:
    return PiiEngine(pii_config())

"""Actions on findings and the per-request vault."""

from __future__ import annotations

from collections import Counter

import pytest

from tollgate.plugins.guardrails.pii.engine import Finding
from tollgate.plugins.guardrails.pii.redact import PiiBlocked, Redactor, Vault


def spans(text: str, *values: tuple[str, str]) -> list[Finding]:
    return sorted((Finding(e, text.index(v), text.index(v) + len(v), 1.0) for e, v in values), key=lambda f: f.start)


def test_redact_numbers_placeholders_and_reuses_them_for_the_same_value():
    vault, counts = Vault(), Counter()
    text = "a@x.com and b@x.com and a@x.com"
    findings = [Finding("EMAIL_ADDRESS", 0, 7, 1), Finding("EMAIL_ADDRESS", 12, 19, 1),
                Finding("EMAIL_ADDRESS", 24, 31, 1)]
    out = Redactor({"action": "redact"}).apply(text, findings, vault, counts)
    assert out == "<EMAIL_ADDRESS_1> and <EMAIL_ADDRESS_2> and <EMAIL_ADDRESS_1>"
    assert counts == {"EMAIL_ADDRESS": 3}
    restored = vault.restore("write to <EMAIL_ADDRESS_2>, not <EMAIL_ADDRESS_9>")
    assert restored == "write to b@x.com, not <EMAIL_ADDRESS_9>"


def test_restore_inside_a_json_string_escapes_the_value():
    vault = Vault()
    vault.placeholder("NAME", 'Jo "JJ" \\ Doe')
    assert vault.restore('{"to": "<NAME_1>"}', json_string=True) == '{"to": "Jo \\"JJ\\" \\\\ Doe"}'


def test_mask_hash_and_per_entity_actions():
    text = "card 4111111111111111 mail a@x.com"
    findings = spans(text, ("CREDIT_CARD", "4111111111111111"), ("EMAIL_ADDRESS", "a@x.com"))
    redactor = Redactor({"action": "hash", "entity_actions": {"CREDIT_CARD": "mask"}})
    out = redactor.apply(text, findings, Vault(), Counter())
    assert out.startswith("card ************1111 mail ") and "a@x.com" not in out
    digest = out.rsplit(" ", 1)[1]
    assert len(digest) == 64 and redactor.apply(text, findings, Vault(), Counter()).endswith(digest)


def test_block_raises_with_entity_types_only():
    text = "ssn 536-22-1245"
    with pytest.raises(PiiBlocked) as caught:
        Redactor({"action": "redact", "entity_actions": {"US_SSN": "block"}}).apply(
            text, spans(text, ("US_SSN", "536-22-1245")), Vault(), Counter())
    assert caught.value.entities == ["US_SSN"] and "536" not in str(caught.value)


def test_without_a_vault_placeholders_are_unnumbered_and_never_restorable():
    text = "mail a@x.com"
    assert Redactor({}).apply(text, spans(text, ("EMAIL_ADDRESS", "a@x.com")), None, Counter()) == \
        "mail <EMAIL_ADDRESS>"

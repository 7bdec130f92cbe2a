"""Streamed text: restore across split placeholders, output redaction with a bounded look-behind."""

from __future__ import annotations

from collections import Counter

from tollgate.plugins.guardrails.pii.redact import Redactor, Vault
from tollgate.plugins.guardrails.pii.stream import OutputScan, Restore

from .pii_samples import CARD, EMAIL, PHONE


def vault_with(email: str = EMAIL) -> Vault:
    vault = Vault()
    vault.placeholder("EMAIL_ADDRESS", email)
    return vault


def test_a_placeholder_split_over_pieces_is_held_only_while_it_could_be_one():
    restore = Restore(vault_with(), json_string=False)
    out = [restore.push(p) for p in ["Write to <EMA", "IL_ADD", "RESS_1", "> today <B", "OLD> <"]]
    assert out == ["Write to ", "", "", f"{EMAIL} today ", "<BOLD> "]
    assert restore.end() == "<"


def test_restore_holds_nothing_for_ordinary_text_and_stops_at_the_longest_placeholder():
    restore = Restore(vault_with(), json_string=False)
    assert restore.push("a < b and 3<4 ") == "a < b and 3<4 "
    assert restore.push("<" + "A" * 40) == "<" + "A" * 40         # longer than any placeholder: not one


def test_restore_in_tool_arguments_escapes_for_json():
    restore = Restore(vault_with('a"b@x.com'), json_string=True)
    assert restore.push('{"to": "<EMAIL_ADDRESS_1>"}') == '{"to": "a\\"b@x.com"}'


async def scan_pieces(engine, pieces: list[str], lookbehind: int = 64) -> tuple[list[str], Counter]:
    counts: Counter = Counter()
    scan = OutputScan(engine, Redactor({}), lookbehind, counts)
    out = [await scan.push(p) for p in pieces]
    out.append(await scan.end())
    return out, counts


async def test_an_email_split_over_three_pieces_never_leaks(engine):
    out, counts = await scan_pieces(engine, ["Mail me at john.sm", "ith@exam", "ple.com please."])
    assert "".join(out) == "Mail me at <EMAIL_ADDRESS> please."
    assert all("john" not in piece and "example" not in piece for piece in out)
    assert counts == {"EMAIL_ADDRESS": 1}


async def test_prose_flows_with_only_the_word_being_written_held(engine):
    out, _ = await scan_pieces(engine, ["Hello", " there,", " how", " are you"])
    assert out == ["", "Hello ", "there, ", "how are ", "you"]


async def test_a_card_number_in_groups_is_held_until_whole(engine):
    groups = CARD.split(" ")
    out, counts = await scan_pieces(engine, ["card ", groups[0] + " ", groups[1] + " ", groups[2] + " ",
                                             groups[3], " thanks and call ", PHONE, " now"])
    text = "".join(out)
    assert text == "card <CREDIT_CARD> thanks and call <PHONE_NUMBER> now"
    assert not any(g in piece for piece in out for g in groups)
    assert counts == {"CREDIT_CARD": 1, "PHONE_NUMBER": 1}


async def test_the_hold_is_bounded_by_the_look_behind(engine):
    scan = OutputScan(engine, Redactor({}), 16, Counter())
    out = await scan.push("x" * 100)
    assert out == "x" * 84 and len(scan.pending) == 16

"""Text normalisation before deny rules: obfuscation undone, plain text untouched."""

import pytest

from tollgate.plugins.guardrails.normalize import normalise


@pytest.mark.parametrize("obfuscated", [
    "ig\u200bnore prev\u200dious",                       # zero-width space and joiner
    "ignore\u202e previous",                             # bidi override
    "ig\U000E0020nore previous",                         # an invisible tag character
    "іgnоrе prеvіоus",                                   # Cyrillic і, о, е
    "ιgnοre previοus",                                   # Greek ι, ο
    "ｉｇｎｏｒｅ ｐｒｅｖｉｏｕｓ",                        # full-width
    "𝗶𝗴𝗻𝗼𝗿𝗲 previous",                                  # mathematical bold
    "ìgnore prévious",                                   # combining accents
    "ig\u00adnore previous",                             # soft hyphen
])
def test_obfuscated_text_normalises_to_its_plain_form(obfuscated):
    assert normalise(obfuscated) == "ignore previous"


def test_ascii_text_is_returned_as_it_is():
    text = "plain ASCII text, 123"
    assert normalise(text) is text

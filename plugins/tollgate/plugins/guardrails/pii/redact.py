"""What happens to the PII found: numbered placeholders kept per request to restore them, masks, hashes, or a block.

`Vault` is one request's memory of its placeholders. It lives in that request's context and answer filter only,
so a placeholder is restored for the request that made it and never for another request or tenant. The same value
gets the same placeholder in every message of the request (``<EMAIL_ADDRESS_1>`` twice for one address).
Masks and hashes are Presidio's anonymizer operators; hashes are salted per process, so equal values hash equal in
this process's logs and answers but cannot be looked up in a precomputed table.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from typing import Any

import orjson

from .entities import Finding

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)_([0-9]+)>")
_SALT = os.urandom(32)
KEEP_VISIBLE = 4          # a mask leaves the last characters readable (``************1111``)


class PiiBlocked(Exception):
    """The text holds an entity whose action is ``block``; ``entities`` names the types, never the values."""

    def __init__(self, entities: list[str]):
        super().__init__("blocked entities: " + ", ".join(entities))
        self.entities = entities


class Vault:
    def __init__(self) -> None:
        self.by_value: dict[tuple[str, str], str] = {}
        self.by_placeholder: dict[str, str] = {}
        self._numbers: Counter[str] = Counter()
        self.longest = 0

    def __bool__(self) -> bool:
        return bool(self.by_placeholder)

    def placeholder(self, entity: str, value: str) -> str:
        key = (entity, value)
        found = self.by_value.get(key)
        if found is None:
            self._numbers[entity] += 1
            found = f"<{entity}_{self._numbers[entity]}>"
            self.by_value[key] = found
            self.by_placeholder[found] = value
            self.longest = max(self.longest, len(found))
        return found

    def restore(self, text: str, json_string: bool = False) -> str:
        """``text`` with this request's placeholders turned back into their values (JSON-escaped inside a JSON
        string such as tool-call arguments); any other ``<X_n>`` is left as it is."""
        if "<" not in text:
            return text

        def value(m: re.Match[str]) -> str:
            original = self.by_placeholder.get(m.group(0))
            if original is None:
                return m.group(0)
            return orjson.dumps(original).decode()[1:-1] if json_string else original

        return PLACEHOLDER.sub(value, text)


class Redactor:
    """Applies ``pii.action`` (per entity ``pii.entity_actions``) to the findings of a text."""

    def __init__(self, pii: dict[str, Any]):
        self.default = pii.get("action") or "redact"
        self.actions: dict[str, str] = dict(pii.get("entity_actions") or {})

    def action(self, entity: str) -> str:
        return self.actions.get(entity, self.default)

    def apply(self, text: str, findings: list[Finding], vault: Vault | None, counts: Counter[str]) -> str:
        """``text`` with each finding replaced; numbered placeholders go into ``vault`` (None: unnumbered, as for
        PII a model wrote itself, which is never restored). Raises PiiBlocked before changing anything."""
        blocked = sorted({f.entity for f in findings if self.action(f.entity) == "block"})
        if blocked:
            raise PiiBlocked(blocked)
        out, at = [], 0
        for f in findings:
            value = text[f.start:f.end]
            out.append(text[at:f.start])
            out.append(self._replacement(f.entity, value, vault))
            at = f.end
            counts[f.entity] += 1
        out.append(text[at:])
        return "".join(out)

    def _replacement(self, entity: str, value: str, vault: Vault | None) -> str:
        action = self.action(entity)
        if action in ("mask", "hash"):
            from presidio_anonymizer.operators import Hash, Mask    # seconds to import: only where used
        if action == "mask":
            return Mask().operate(value, {"masking_char": "*", "chars_to_mask": max(len(value) - KEEP_VISIBLE, 0),
                                         "from_end": False})
        if action == "hash":
            return Hash().operate(value, {"hash_type": "sha256", "salt": _SALT})
        return vault.placeholder(entity, value) if vault is not None else f"<{entity}>"

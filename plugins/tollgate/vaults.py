"""Kong vault references (``{vault://env/OPENAI_KEY}``) in plugin configs, resolved in the Tollgate process.

Kong resolves a reference itself, before a plugin runs, in every config field its schema marks ``referenceable``
(`kong.vault.update` in the plugins iterator), and it hands the external plugin server that resolved config: under
real Kong a Tollgate plugin's ``StartInstance`` config already carries the secret. Tollgate's schemas mark the
same fields as Kong's AI plugins do, so this is the usual path. A reference that still arrives (Kong older than
3.0, a config loaded some other way, a test double) is resolved here, the way Kong's vault of that name would.

Kong OSS 3.9 bundles one vault, ``env`` (kong/vaults/env); ``aws``, ``gcp``, ``hcv``, ``azure`` and ``conjur``
are Enterprise. Kong's rules for ``env`` are kept: the resource names a variable, upper-cased with ``-`` as ``_``,
after an optional ``prefix`` (``?prefix=``); a path of two parts reads a key of a JSON value
(``{vault://env/creds/openai}``); version 2 (``#2``) reads ``NAME_PREVIOUS``. Vault entities with their own
prefixes live in Kong's database, which this process cannot see.

Errors name the reference and the variable, never the value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from urllib.parse import parse_qs, unquote, urlsplit

BUNDLED = ("env",)


class VaultError(ValueError):
    """A reference that cannot be resolved: unknown vault, malformed, or nothing behind it."""


def is_reference(value: object) -> bool:
    """Kong's test (kong.pdk.vault.is_reference)."""
    return isinstance(value, str) and value.startswith("{vault://") and value.endswith("}")


def resolve(reference: str, environ: Mapping[str, str] = os.environ) -> str:
    url = urlsplit(reference[1:-1])
    if url.hostname != "env":
        raise VaultError(f"{reference}: vault '{url.hostname}' is not available (Kong OSS has the "
                         f"{', '.join(BUNDLED)} vault; vault entities and Enterprise vaults are not resolved here)")
    parts = url.path.split("/")[1:]
    if not parts or not parts[0]:
        raise VaultError(f"{reference}: the reference names no variable")
    if len(parts) > 1 and parts[-1] and parts[-2]:
        resource, key = "/".join(unquote(p) for p in parts[:-1]), unquote(parts[-1])
    else:
        resource, key = "/".join(unquote(p) for p in parts if p), None
    try:
        version = int(url.fragment) if url.fragment else None
    except ValueError:
        raise VaultError(f"{reference}: the version is not a number") from None
    prefix = (parse_qs(url.query).get("prefix") or [""])[0]
    variable = (prefix + resource).upper().replace("-", "_") + ("_PREVIOUS" if version == 2 else "")
    value = environ.get(variable)
    if value is None:
        raise VaultError(f"{reference}: environment variable {variable} is not set in the Tollgate process")
    if key is None:
        return value
    try:
        secret = json.loads(value).get(key)
    except (ValueError, AttributeError):
        raise VaultError(f"{reference}: {variable} is not a JSON object, so it has no key '{key}'") from None
    if not isinstance(secret, str):
        raise VaultError(f"{reference}: {variable} has no string under '{key}'")
    return secret

"""Content guards that judge a text as a whole: external guard services and semantic topic guards.

Each guard is one module with one ``Guard`` class (guards/base.py). The policy builds them from
``config.guards`` and runs them side by side (guards/run.py): on the prompt before the provider is called
(``INPUT``), and on the answer (``OUTPUT``).

``KINDS`` maps a config's ``type`` to its class; the schema (schema.py) takes the ``type`` choices and each type's
settings sub-record from it, so a new kind of guard is one module and one line here.
"""

from __future__ import annotations

from typing import Any

from ....schema import validate
from .azure_content_safety import AzureContentSafetyGuard
from .base import Guard, GuardConfigError
from .bedrock import BedrockGuard
from .http import HttpGuard
from .lakera import LakeraGuard
from .openai_moderation import OpenAIModerationGuard
from .semantic import SemanticGuard

KINDS: dict[str, type[Guard]] = {cls.type: cls for cls in (
    HttpGuard, OpenAIModerationGuard, AzureContentSafetyGuard, BedrockGuard, LakeraGuard, SemanticGuard)}


def build(config: dict[str, Any]) -> list[Guard]:
    """The guards of a (schema-checked) plugin config, in config order; ``GuardConfigError`` for one that cannot
    work."""
    guards: list[Guard] = []
    for entry in config.get("guards") or ():
        if any(g.name == entry["name"] for g in guards):
            raise GuardConfigError(f"two guards are named {entry['name']!r}; guard names must be unique")
        for kind, cls in KINDS.items():          # settings for another type: a mistyped ``type``, most likely
            if kind != entry["type"] and entry.get(kind) and entry[kind] != validate(cls.fields, {}):
                raise GuardConfigError(f"guard {entry['name']} is of type {entry['type']} but has {kind} settings")
        guards.append(KINDS[entry["type"]](entry["name"], entry))
    return guards

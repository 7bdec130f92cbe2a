"""The services of the running Tollgate process, reachable from plugin handlers.

kong-pdk's convention builds a plugin with its config only, so handlers find the
process's shared pieces (attachments, stores, instance table) here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .attachments import AttachmentTable
from .context import ContextStore
from .settings import Settings

if TYPE_CHECKING:
    from .pluginserver.instances import InstanceTable


@dataclass
class Runtime:
    settings: Settings
    attachments: AttachmentTable
    contexts: ContextStore = field(default_factory=ContextStore)
    instances: "InstanceTable | None" = None
    stores: dict[str, Any] = field(default_factory=dict)


_current: Runtime | None = None


def install(runtime: Runtime) -> Runtime:
    global _current
    _current = runtime
    return runtime


def current() -> Runtime:
    """The process's runtime; a bare one (defaults) when used outside ``tollgate serve``."""
    global _current
    if _current is None:
        settings = Settings()
        _current = Runtime(settings=settings, attachments=AttachmentTable(settings.attachment_ttl))
    return _current

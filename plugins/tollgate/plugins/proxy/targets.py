"""Targets: what a config may call, which of them a request may use, and the driver ``Target`` for one request.

A config names either one ``model`` (+ ``auth``), which is one implicit target, or ``targets[]``. A request may use
a target when every rule of its ``match`` holds (headers, consumer, requested model, prompt size). Targets with
rules that hold are *specific* and are tried first; targets without rules are the route's defaults and come after
them as fallbacks (a premium header sends a request to the premium target, and the default still catches it when
that fails).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ... import scrub
from ...providers.base import Target
from .templates import Sources, check_url_template, has_templates, kinds_used, render, render_options

_CREDENTIAL_FIELDS = ("header_value", "param_value", "azure_client_secret", "gcp_service_account_json",
                      "aws_access_key_id", "aws_secret_access_key")
_IDENTITY_OPTIONS = ("upstream_url", "upstream_path", "azure_instance", "azure_deployment_id")


@dataclass(frozen=True)
class Match:
    """A target's rules; every rule given must hold (a list holds when any of its values does)."""

    headers: dict[str, frozenset[str]] = field(default_factory=dict)   # lower-cased name -> values (empty: any)
    consumers: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()
    min_prompt_tokens: int | None = None
    max_prompt_tokens: int | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> "Match | None":
        config = config or {}
        match = cls(headers={str(k).lower(): frozenset(v or ()) for k, v in (config.get("headers") or {}).items()},
                    consumers=frozenset(config.get("consumers") or ()),
                    models=frozenset(config.get("models") or ()),
                    min_prompt_tokens=config.get("min_prompt_tokens"),
                    max_prompt_tokens=config.get("max_prompt_tokens"))
        if (match.min_prompt_tokens is not None and match.max_prompt_tokens is not None
                and match.min_prompt_tokens > match.max_prompt_tokens):
            raise ValueError("match.min_prompt_tokens is above match.max_prompt_tokens")
        return match if match.any else None

    @property
    def any(self) -> bool:
        return bool(self.headers or self.consumers or self.models or self.needs_prompt_tokens)

    @property
    def needs_prompt_tokens(self) -> bool:
        return self.min_prompt_tokens is not None or self.max_prompt_tokens is not None


@dataclass
class TargetSpec:
    """One configured target (templates not yet rendered)."""

    index: int
    id: str                      # stable across restarts and nodes: keys its balancer state
    provider: str
    model: str | None            # None: the client names the model (only where the config leaves it open)
    options: dict[str, Any]
    auth: dict[str, Any]
    weight: int = 100
    description: str | None = None
    priority: int = 1
    match: Match | None = None
    templated: bool = False
    examples: tuple[str, ...] = ()   # algorithm semantic: prompts it should get
    tier: str | None = None          # algorithm complexity: the tier it serves

    @property
    def label(self) -> str:
        """How responses, logs and metrics name the target (never a credential)."""
        return self.description or f"{self.provider}/{self.model or '*'}"

    @property
    def has_meaning(self) -> bool:
        """Algorithm semantic: something to be near (examples or a description); else it is a default target."""
        return bool(self.examples or self.description)

    @property
    def pinned_model(self) -> str | None:
        """The model this target always calls, when no template or client choice is involved."""
        return None if self.templated else self.model

    @property
    def deployment_pinned(self) -> bool:
        """Azure with a deployment id calls that deployment whatever the model field says."""
        return self.provider == "azure" and bool(self.options.get("azure_deployment_id")) \
            and not has_templates(self.options.get("azure_deployment_id"))


@dataclass
class Facts:
    """What the rules look at, for one request."""

    headers: Any
    identity: dict[str, Any]
    requested_model: str | None
    prompt_tokens: Callable[[], int]


def specs_from_config(config: dict[str, Any]) -> list[TargetSpec]:
    """The config's targets; ValueError when the config cannot work (Kong then refuses the instance)."""
    model = config.get("model") or {}
    targets = config.get("targets") or []
    if targets and model.get("provider"):
        raise ValueError("give either model (one target) or targets, not both")
    if targets and _has_credentials(config.get("auth")):
        raise ValueError("with targets, give each target its own auth (the top-level auth belongs to model)")
    if not targets:
        if not model.get("provider"):
            raise ValueError("model.provider is required (or give targets)")
        targets = [{"model": model, "auth": config.get("auth") or {}}]
    specs = []
    seen: set[str] = set()
    for index, entry in enumerate(targets):
        where = f"targets[{index + 1}]" if config.get("targets") else "model"
        target_model = entry.get("model") or {}
        provider = target_model.get("provider")
        if not provider:
            raise ValueError(f"{where}: model.provider is required")
        options = copy.deepcopy(target_model.get("options") or {})
        for name in ("upstream_url",):
            if isinstance(options.get(name), str):
                check_url_template(options[name], f"{where}.model.options.{name}")
        name = target_model.get("name") or None
        templated = has_templates(name) or has_templates(options)
        spec = TargetSpec(index=index, id="", provider=provider, model=name, options=options,
                          auth=dict(entry.get("auth") or {}), weight=int(entry.get("weight") or 100),
                          description=entry.get("description") or None, priority=int(entry.get("priority") or 1),
                          match=Match.from_config(entry.get("match")), templated=templated,
                          examples=tuple(entry.get("examples") or ()), tier=entry.get("tier") or None)
        spec.id = _stable_id(spec, seen)
        specs.append(spec)
    return specs


def kinds_in(specs: Iterable[TargetSpec]) -> set[str]:
    """Which template sources the targets read (``uri_captures`` costs the access phase a PDK call)."""
    used: set[str] = set()
    for spec in specs:
        used |= kinds_used(spec.model) | kinds_used(spec.options)
    return used


def secrets_of(specs: Iterable[TargetSpec], *auths: dict[str, Any] | None) -> list[str]:
    """Every credential the targets (and the other ``auth`` records given) hold, and the token part of
    ``Bearer <token>``, longest first."""
    found = scrub.credentials((auth or {}).get(name) for auth in [*(spec.auth for spec in specs), *auths]
                              for name in _CREDENTIAL_FIELDS)
    return sorted(set(found), key=len, reverse=True)


def rules_hold(match: Match, facts: Facts) -> bool:
    for name, values in match.headers.items():
        value = facts.headers.get(name) if facts.headers is not None else None
        if value is None or (values and value not in values):
            return False
    if match.consumers:
        who = {facts.identity.get(k) for k in ("id", "username", "custom_id")} - {None}
        if not who & match.consumers:
            return False
    if match.models and facts.requested_model not in match.models:
        return False
    if match.needs_prompt_tokens:
        tokens = facts.prompt_tokens()
        if match.min_prompt_tokens is not None and tokens < match.min_prompt_tokens:
            return False
        if match.max_prompt_tokens is not None and tokens > match.max_prompt_tokens:
            return False
    return True


def eligible(specs: list[TargetSpec], facts: Facts) -> tuple[list[TargetSpec], list[TargetSpec]]:
    """(specific targets whose rules hold, default targets without rules)."""
    specific = [s for s in specs if s.match is not None and rules_hold(s.match, facts)]
    defaults = [s for s in specs if s.match is None]
    return specific, defaults


def resolve(spec: TargetSpec, sources: Sources, requested_model: str | None, client: "ClientAuth") -> Target:
    """The driver's Target for this request: templates rendered, the client's own key only where allowed."""
    model = spec.model
    options = spec.options
    if spec.templated:
        model = render(model, sources) if model else None
        options = render_options(options, sources)
    if model is None and not spec.deployment_pinned:
        model = requested_model
    auth = spec.auth
    if auth.get("allow_override"):
        auth = client.override(auth)
    return Target(provider=spec.provider, model=model, options=options, auth=auth)


@dataclass
class ClientAuth:
    """The client's own credential for ``auth.allow_override``: the configured header, query or body parameter."""

    headers: Any
    sources: Sources
    body: dict[str, Any]

    def override(self, auth: dict[str, Any]) -> dict[str, Any]:
        name = auth.get("header_name")
        if name and self.headers is not None and self.headers.get(name):
            return {**auth, "header_value": self.headers.get(name)}
        param = auth.get("param_name")
        if param:
            if auth.get("param_location") == "body":
                value = self.body.get(param)
            else:
                value = self.sources.value("query_params", param)
            if isinstance(value, str) and value:
                return {**auth, "param_value": value}
        return auth


def _has_credentials(auth: dict[str, Any] | None) -> bool:
    return bool(auth) and any(auth.get(name) for name in (*_CREDENTIAL_FIELDS, "header_name", "param_name"))


def _stable_id(spec: TargetSpec, seen: set[str]) -> str:
    options = spec.options
    parts = [spec.provider, spec.model or "", spec.description or "",
             *(str(options.get(name) or "") for name in _IDENTITY_OPTIONS),
             str((options.get("bedrock") or {}).get("aws_region") or ""),
             str((options.get("gemini") or {}).get("project_id") or ""),
             str((options.get("gemini") or {}).get("location_id") or "")]
    ident = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=6).hexdigest()
    if ident in seen:                       # the same target twice (e.g. two keys): keep their state apart
        ident = f"{ident}-{spec.index}"
    seen.add(ident)
    return ident


__all__ = ["ClientAuth", "Facts", "Match", "TargetSpec", "eligible", "kinds_in", "resolve", "rules_hold", "secrets_of",
           "specs_from_config"]

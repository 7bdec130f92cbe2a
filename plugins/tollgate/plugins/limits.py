"""What the limiting plugins share: whose budget a request draws on, the store it lives in,
all-or-nothing reservations across several windows, and what happens when the store is down."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

from .. import log, metrics, runtime
from ..context import BodyError, RequestContext
from ..relay.errors import openai_error
from ..store import Reservation, StoreUnavailable, Window

logger = log.get("limits")

FAIL_OPEN_HEADER = "X-Tollgate-Fail-Open"


class UnknownIdentity(LookupError):
    """The request lacks what the configured identifier keys on (e.g. the named header)."""


def identifier_value(kind: str, ctx: RequestContext, header_name: str | None = None) -> str:
    """The value a limit or budget is keyed on, for one request.

    Consumer falls back to the client IP for anonymous requests, as Kong's rate limiting does.
    The IP comes from X-Real-IP, which Kong always overwrites on the upstream request.
    """
    consumer = ctx.identity.get("id")
    ip = ctx.headers.get("x-real-ip") or ctx.headers.get("x-forwarded-for", "").split(",")[0].strip()
    if kind == "consumer":
        return f"consumer:{consumer}" if consumer else f"ip:{ip}"
    if kind == "credential":
        credential = ctx.headers.get("x-credential-identifier")
        return f"credential:{credential}" if credential else f"ip:{ip}"
    if kind == "consumer-group":
        groups = ctx.headers.get("x-consumer-groups")
        if not groups:
            raise UnknownIdentity("consumer-group needs Kong's X-Consumer-Groups header (Kong Enterprise)")
        return f"group:{groups.split(',')[0].strip()}"
    if kind == "ip":
        return f"ip:{ip}"
    if kind == "header":
        value = ctx.headers.get(header_name or "")
        if not value:
            raise UnknownIdentity(f"header {header_name} is missing")
        return f"header:{header_name}:{value}"
    if kind == "path":
        return f"path:{ctx.path}"
    if kind in ("service", "route"):
        return f"route:{ctx.route_id}"
    return "global"


@dataclass
class Grant:
    """Reservations made for one request, settled once its usage is known."""

    reservations: list[tuple[str, Reservation]]  # (what the group counts, its reservation)

    async def settle(self, store: Any, actual: dict[str, int]) -> None:
        for counts, reservation in self.reservations:
            await store.settle(reservation, actual.get(counts, 0))


async def reserve_groups(store: Any, groups: Sequence[tuple[str, int, list[Window]]], now: float
                         ) -> tuple[Grant | None, Reservation | None]:
    """Reserve each ``(counts, amount, windows)`` group; if one is refused, give back the others.

    One store call per group keeps each group atomic; handing back what earlier groups took
    means a refused request never keeps capacity, so nothing is ever over-admitted.
    """
    taken: list[tuple[str, Reservation]] = []
    for counts, amount, windows in groups:
        reservation = await store.reserve(windows, amount, now)
        if not reservation.allowed:
            for _, earlier in taken:
                await store.settle(earlier, 0)
            return None, reservation
        taken.append((counts, reservation))
    return Grant(taken), None


def store_failure(plugin: str, ctx: RequestContext, config: dict[str, Any], exc: StoreUnavailable) -> Any:
    """Apply ``fail_open``: mark and let the request through, or refuse it; say so either way."""
    opened = bool(config.get("fail_open"))
    log.event(logger, "store unavailable", logging.WARNING, plugin=plugin, fail_open=opened,
              route_id=ctx.route_id, error=str(exc))
    ctx.response_headers[FAIL_OPEN_HEADER] = plugin if opened else "false"
    if opened:
        ctx.meta.setdefault("fail_open", []).append(plugin)
        return None
    count_refusal(plugin, "store_unavailable", ctx)
    return openai_error(503, f"{plugin}: its state store is unavailable and the route fails closed",
                        "api_error", "store_unavailable", headers={FAIL_OPEN_HEADER: "false"})


def count_refusal(plugin: str, reason: str, ctx: RequestContext) -> None:
    metrics.refusals_total.labels(plugin=plugin, reason=reason, route=ctx.route_id or "",
                                  consumer=ctx.identity.get("id") or "").inc()


def now() -> float:
    return runtime.current().clock()


# -- what a limit needs to know about the request (shared by token limit and cost quota) ---------------------

PROXY = "tollgate-proxy"


def proxy_of(ctx: RequestContext) -> Any:
    """The route's tollgate-proxy policy (its ``target``: provider, model, options), or None."""
    return ctx.policies.get(PROXY)


def requested_model(ctx: RequestContext) -> str | None:
    """The model the request body names, if any (a malformed body names none)."""
    try:
        body = ctx.json()
    except BodyError:
        return None
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


def requested_max_tokens(ctx: RequestContext) -> int | None:
    """The client's output cap: ``max_completion_tokens``, else ``max_tokens``; None when it sets none."""
    try:
        body = ctx.json()
    except BodyError:
        return None
    if not isinstance(body, dict):
        return None
    for field in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def candidate_targets(ctx: RequestContext) -> list[tuple[str | None, str | None, dict[str, Any]]]:
    """``(provider, model, options)`` of every target the proxy may call for this request, before it chooses.

    A proxy with several targets (balancing, fallback) may answer from any of them; a target whose model the
    client names (or a template decides) is listed with the model the request names. Without a proxy on the
    route: the request's own model, provider unknown.
    """
    proxy = proxy_of(ctx)
    requested = requested_model(ctx)
    if proxy is None:
        return [(None, requested, {})]
    specs = getattr(proxy, "specs", None)
    if specs:
        return [(spec.provider, getattr(spec, "pinned_model", spec.model) or requested, spec.options or {})
                for spec in specs]
    target = proxy.target
    return [(target.provider, target.model or requested, target.options or {})]


def chosen_target(ctx: RequestContext) -> tuple[str | None, str | None, dict[str, Any]] | None:
    """``(provider, model, options)`` of the target the proxy actually called, once it has (else None)."""
    target = ctx.meta.get("chosen_target")
    if target is None:
        return None
    return target.provider, target.model, target.options or {}

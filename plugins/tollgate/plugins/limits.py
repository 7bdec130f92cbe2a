"""What the limiting plugins share: whose budget a request draws on, the store it lives in,
all-or-nothing reservations across several windows, and what happens when the store is down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .. import log, metrics, runtime
from ..context import RequestContext
from ..relay.errors import openai_error
from ..store import Reservation, StoreError, StoreUnavailable, Window
from .base import Policy
from .journal import JOURNAL

logger = log.get("limits")

FAIL_OPEN_HEADER = "X-Tollgate-Fail-Open"
# Seconds between attempts at a settlement the store could not take when the request ended (about 22 s in all:
# longer than a Sentinel or Cluster failover takes, shorter than the windows a limit counts in).
SETTLE_RETRIES = (0.5, 2.0, 5.0, 15.0)
# Settlements and give-backs retried at once, at most: beyond, a new one is dropped (its reservation stays charged).
MAX_PENDING = 10_000


WINDOW_NAMES = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "month": 2592000}


class InvalidWindow(ValueError):
    """A ``window_size`` that is neither a window name nor a positive number of seconds."""


def window_seconds(size: str) -> int:
    """``"minute"`` or ``"60"`` as seconds."""
    if size in WINDOW_NAMES:
        return WINDOW_NAMES[size]
    try:
        seconds = int(size)
    except ValueError:
        raise InvalidWindow(f"window_size {size!r} is neither a number of seconds nor one of "
                            f"{', '.join(WINDOW_NAMES)}") from None
    if seconds <= 0:
        raise InvalidWindow("window_size must be positive")
    return seconds


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
    journal: int | None = None  # its entry in the process's journal (see journal.py), until settled

    async def settle(self, store: Any, actual: dict[str, int]) -> None:
        actuals = [actual.get(counts, 0) for counts, _ in self.reservations]
        JOURNAL.ended(self.journal, actuals)
        # one store call for all (with the settlements of the request's other limiting plugins, which start in the
        # same loop turn: see Store.settle_all)
        await store.settle_all([(reservation, used) for (_, reservation), used in zip(self.reservations, actuals)])
        JOURNAL.release(self.journal)

    async def settle_or_retry(self, plugin: str, ctx: RequestContext, store: Any, actual: dict[str, int]) -> bool:
        """Settle now (True); when the store fails (restarting, failing over, or an error not known as an outage),
        say so and keep trying in the background.

        Until a settlement lands the reservation stays charged: a limit errs on the side of refusing, never of
        letting through. Each reservation settles at most once (`Store.settle`, and in Redis its ledger), so a retry
        after a partial success, or after a call whose outcome was unknown, corrects only what is left.
        """
        try:
            await self.settle(store, actual)
            return True
        except StoreUnavailable as exc:
            store_failure(plugin, ctx, {"fail_open": True}, exc)
        except StoreError as exc:   # not a known outage, but retried all the same: a settlement lands at most once
            log.event(logger, "settlement failed", logging.ERROR, plugin=plugin, error=str(exc))
        self.settle_later(plugin, store, actual)
        return False

    def settle_later(self, plugin: str, store: Any, actual: dict[str, int]) -> None:
        """Retry the settlement in the background (at most `MAX_PENDING` at once; beyond, it stays charged)."""
        if len(_retries) >= MAX_PENDING:
            JOURNAL.release(self.journal)
            log.event(logger, "settlement dropped (too many pending): the reservation stays charged", logging.ERROR,
                      plugin=plugin, actual=actual)
            return
        task = asyncio.ensure_future(self._retry(plugin, store, actual))
        _retries[task] = (self, plugin, store, actual)
        task.add_done_callback(lambda done: _retries.pop(done, None))

    async def _retry(self, plugin: str, store: Any, actual: dict[str, int]) -> None:
        for delay in SETTLE_RETRIES:
            await asyncio.sleep(delay)
            try:
                await self.settle(store, actual)
            except StoreError:
                continue
            log.event(logger, "settlement retried", logging.INFO, plugin=plugin, actual=actual)
            return
        JOURNAL.release(self.journal)
        log.event(logger, "settlement lost: the reservation stays charged", logging.ERROR, plugin=plugin,
                  actual=actual)


def give_back_doubtful(plugin: str, store: Any, failure: StoreUnavailable) -> None:
    """Give back, in the background, the reservations a failed call may have made (`StoreUnavailable.doubtful`):
    retried like a missed settlement; each applies once if the reservation landed, and not at all if it did not."""
    if failure.doubtful:
        Grant([("", reservation) for reservation in failure.doubtful]).settle_later(plugin, store, {})
        failure.doubtful = []


# Settlements being retried, and what each settles: held here so that the loop keeps them, and so that shutdown
# can make them land (`settle_pending`) instead of dropping them with the process.
_retries: dict[asyncio.Task[None], tuple[Grant, str, Any, dict[str, int]]] = {}


async def settle_pending(timeout: float) -> None:
    """At shutdown: stop waiting between retries and try every pending settlement once more, now, within
    ``timeout`` seconds; what still fails is logged as lost (the reservation stays charged)."""
    pending = list(_retries.items())
    for task, _ in pending:
        task.cancel()

    async def last_try(grant: Grant, plugin: str, store: Any, actual: dict[str, int]) -> None:
        try:
            await grant.settle(store, actual)
        except StoreError:
            log.event(logger, "settlement lost: the reservation stays charged", logging.ERROR, plugin=plugin,
                      actual=actual)
            # left in the journal: the next process on this node settles it

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            if pending:
                await asyncio.gather(*(last_try(*job) for _, job in pending))
            await JOURNAL.flush()  # what is still owed, to what it used: the next process settles it


@dataclass
class Plan:
    """What one limiting plugin reserves for one request, and what it makes of the store's answer.

    Making a plan changes nothing (no store call, header, metric or log line): the plans of the limiting plugins of
    a request are made in priority order, reserved together in one store round trip (`admit`), and read in that
    order, each exactly as if its plugin had reserved alone once the plugins before it had let the request through.
    """

    store: Any
    groups: list[tuple[str, int, list[Window]]]  # (what the group counts, amount, windows), reserved in order
    now: float
    conclude: Callable[[Grant | None, Reservation | None, StoreUnavailable | None], Any]  # -> answer or None
    prelude: Callable[[], None] | None = None  # what the plugin does before reserving, run when it is its turn
    plugin: str = ""  # whose plan it is (for the log)


@dataclass
class Answer:
    """A limiting plugin's answer to a request without reserving anything (``respond`` runs when it is its turn
    and returns the response, or None to let the request go on)."""

    respond: Callable[[], Any]


class LimitPolicy(Policy):
    """A relay-side policy that admits requests through store reservations: it makes a `Plan` (or an `Answer`, or
    None when it has nothing to do) and the relay reserves the plans of consecutive limiting policies together."""

    def plan(self, ctx: RequestContext) -> Plan | Answer | None:
        raise NotImplementedError

    async def before(self, ctx: RequestContext) -> Any:
        return await admit(ctx, [self])


async def admit(ctx: RequestContext, policies: Sequence[LimitPolicy]) -> Any:
    """The ``before`` of consecutive limiting policies, in order: the first refusal (or other answer) wins."""
    batch: list[Plan] = []
    for policy in policies:
        planned = policy.plan(ctx)
        if planned is None:
            continue
        if isinstance(planned, Plan) and (not batch or batch[-1].store is planned.store):
            batch.append(planned)
            continue
        answer = await _reserve(batch)  # the plugins before this one decide first
        batch = []
        if answer is not None:
            return answer
        if isinstance(planned, Plan):
            batch.append(planned)
            continue
        answer = planned.respond()
        if answer is not None:
            return answer
    return await _reserve(batch)


async def _reserve(plans: list[Plan]) -> Any:
    """Reserve ``plans`` (one store) in one call and let each conclude in turn."""
    if not plans:
        return None
    requests = [([(windows, amount) for _, amount, windows in plan.groups], plan.now) for plan in plans]
    try:
        results = await plans[0].store.reserve_in_turn(requests)
    except StoreUnavailable as exc:
        give_back_doubtful(", ".join(plan.plugin for plan in plans), plans[0].store, exc)
        for plan in plans:
            if plan.prelude is not None:
                plan.prelude()
            answer = plan.conclude(None, None, exc)
            if answer is not None:
                return answer
        return None
    for plan, made in zip(plans, results):  # results end at the refused plan, if one was refused
        if plan.prelude is not None:
            plan.prelude()
        if made and not made[-1].allowed:
            return plan.conclude(None, made[-1], None)
        grant = Grant([(counts, r) for (counts, _, _), r in zip(plan.groups, made)])
        grant.journal = JOURNAL.open(plan.store, made)
        answer = plan.conclude(grant, None, None)
        if answer is not None:
            return answer
    return None


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
    ctx.meta["refusal"] = (plugin, reason)   # the usage record's outcome (tollgate.usage.outcome_of)
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
    model = (ctx.json_object() or {}).get("model")
    return model if isinstance(model, str) else None


def requested_max_tokens(ctx: RequestContext) -> int | None:
    """The client's output cap: ``max_completion_tokens``, else ``max_tokens``; None when it sets none."""
    body = ctx.json_object()
    if body is None:
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

"""The relay side of tollgate-cost-quota: admit on the worst-case cost, settle to the exact cost.

Admission prices the request before the provider call: its prompt tokens (counted on the request as it goes
upstream) at the input price plus its ``max_tokens`` (or the proxy's, or ``default_max_tokens``) at the output
price. That worst case is reserved in every budget of the request at once (one atomic store script per
currency: in Redis, across every node), so concurrent requests can never together overspend a budget. Once
the answer is complete (streams included, client disconnects included), the reservation is settled to the
exact cost from the provider's usage: cached prompt tokens at the cached price, reasoning tokens at the
reasoning price. Money is integer micro-units throughout.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Any

import orjson
from ...relay import web

from ... import estimate, log, runtime
from ...attachments import HEADER as ATTACHMENT_HEADER
from ...context import BodyError, RequestContext
from ...pricing import (
    Price,
    as_float,
    cost_numerator,
    format_money,
    micros,
    resolve_price,
    to_decimal,
    to_fraction,
    worst_case_numerator,
)
from ...providers.base import CHAT, EMBEDDINGS
from ...relay.errors import openai_error
from ...store import Reservation, StoreUnavailable, Window, WindowState
from ..limits import (
    Answer,
    Grant,
    LimitPolicy,
    Plan,
    UnknownIdentity,
    candidate_targets,
    chosen_target,
    count_refusal,
    identifier_value,
    now,
    proxy_of,
    requested_max_tokens,
    store_failure,
)
from .budgets import Budget, safe_namespace
from .notify import SoftLimits
from .periods import Span, iso
from .spend import SpendIndex

logger = log.get("cost_quota")

LIMIT_HEADER = "X-AI-Budget-Limit"
REMAINING_HEADER = "X-AI-Budget-Remaining"
RESET_HEADER = "X-AI-Budget-Reset"
WARNING_HEADER = "X-AI-Budget-Warning"
UNPRICED_HEADER = "X-AI-Budget-Unpriced"

# How long the router ids fetched in access wait for their request to reach the relay.
_ROUTER_INFO_TTL = 300.0


@dataclass
class Charge:
    """One budget's part in a request: where it is counted and what was reserved there."""

    budget: Budget
    who: str
    window: Window
    span: Span
    reserved: int  # micro-units of the budget's currency
    state: WindowState | None = None  # after the reservation


@dataclass
class Admission:
    grant: Grant | None  # None: admitted by fail_open, nothing reserved
    price: Price | None  # the dearest candidate's: the price when the proxy does not say which target answered
    charges: list[Charge]


class CostQuotaPolicy(LimitPolicy):
    def __init__(self, config: dict[str, Any], plugin: str):
        super().__init__(config, plugin)
        timezone = config.get("timezone") or "UTC"
        rates = {name.upper(): to_fraction(rate) for name, rate in (config.get("exchange_rates") or {}).items()}
        self.budgets = [Budget.from_config(spec, spec.get("timezone") or timezone, rates)
                        for spec in config["budgets"]]
        idents = [b.ident for b in self.budgets]
        duplicated = {i for i in idents if idents.count(i) > 1}
        if duplicated:
            raise ValueError(f"two budgets with the same scope, period and currency: {', '.join(sorted(duplicated))}"
                             " (keep the smaller one)")
        self.namespace = safe_namespace(str(config.get("namespace") or config.get("__plugin_id") or "default"))
        self.unknown_model = config.get("unknown_model") or "deny"
        default = {k: v for k, v in (config.get("default_price") or {}).items() if v is not None}
        if default and not {"input", "output"} <= set(default):
            raise ValueError("default_price needs input and output (USD per 1M tokens)")
        self.default_price = Price.from_mapping(default, "default") if default else None
        if self.unknown_model == "default_price" and self.default_price is None:
            raise ValueError("unknown_model default_price needs default_price {input, output}")
        self.overrides = config.get("prices") or {}
        self.default_max_tokens = int(config.get("default_max_tokens") or 4096)
        share = config.get("soft_limit_share")
        self.soft = SoftLimits(plugin, self.namespace, Fraction(to_decimal(share)) if share else Fraction(0),
                               config.get("webhook_url"), config.get("webhook_headers"),
                               float(config.get("webhook_timeout") or 5.0))
        self.index = SpendIndex(self.namespace)
        self.hide_headers = bool(config.get("hide_client_headers"))
        # Scopes Kong knows but the request does not carry: fetched in access when the instance is not pinned.
        route = config.get("route_id")
        service = config.get("service_id")
        self.pinned = {"route": route.get("id") if isinstance(route, dict) else route,
                       "service": service.get("id") if isinstance(service, dict) else service}
        self.router_needs = tuple(s for s in ("route", "service")
                                  if any(b.scope == s for b in self.budgets) and not self.pinned[s])
        self._router_info: dict[str, tuple[float, dict[str, str | None]]] = {}
        self._prices: dict[tuple[Any, ...], Price | None] = {}

    # -- Kong side (see handler.py): ids of the matched route and service ---------------------------------------

    async def remember_router(self, token: str, kong: Any) -> None:
        """Fetch what the scopes need from Kong's router, for the request carrying ``token``."""
        info: dict[str, str | None] = {}
        for what in self.router_needs:
            entity = await (kong.router.get_route() if what == "route" else kong.router.get_service())
            info[what] = entity.get("id") if isinstance(entity, dict) else None
        moment = time.monotonic()
        if len(self._router_info) > 10_000:
            for stale in [t for t, (at, _) in self._router_info.items() if at < moment - _ROUTER_INFO_TTL]:
                del self._router_info[stale]
        self._router_info[token] = (moment, info)

    def _router_of(self, ctx: RequestContext) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        if not self.router_needs:
            return found
        for value in ctx.headers.getall(ATTACHMENT_HEADER, []):
            for token in value.split(","):
                entry = self._router_info.pop(token.strip(), None)
                if entry is not None:
                    found.update(entry[1])
        return found

    def _who(self, budget: Budget, ctx: RequestContext, router: dict[str, str | None]) -> str:
        if budget.scope == "route":
            return f"route:{self.pinned['route'] or router.get('route') or ctx.route_id or 'unknown'}"
        if budget.scope == "service":
            return f"service:{self.pinned['service'] or router.get('service') or 'unknown'}"
        return identifier_value(budget.scope, ctx, budget.header_name)

    # -- relay side ---------------------------------------------------------------------------------------------

    def _price_of(self, provider: str | None, model: str | None, options: dict[str, Any]) -> Price | None:
        """One target's price, the unknown-model policy applied (None: unpriced; deny is the caller's to apply)."""
        # The same few targets on every request: resolved once per provider, model and option prices.
        key = (provider, model, options.get("input_cost"), options.get("output_cost"))
        try:
            return self._prices[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable option value: resolve it every time
            return self._resolve_price(provider, model, options)
        price = self._resolve_price(provider, model, options)
        if len(self._prices) >= 1024:
            self._prices.clear()
        self._prices[key] = price
        return price

    def _resolve_price(self, provider: str | None, model: str | None, options: dict[str, Any]) -> Price | None:
        price = resolve_price(provider, model, overrides=self.overrides, proxy_options=options)
        if price is None and self.unknown_model == "default_price":
            return self.default_price
        return price

    def plan(self, ctx: RequestContext) -> Plan | Answer | None:
        router = self._router_of(ctx)
        try:
            whos = [self._who(budget, ctx, router) for budget in self.budgets]
        except UnknownIdentity as exc:
            message = str(exc)
            return Answer(lambda: openai_error(400, message, "invalid_request_error", "missing_identifier"))
        # Every target the proxy may answer from (balancing, fallback): the request must fit the dearest.
        candidates = candidate_targets(ctx)
        priced: list[tuple[Price, dict[str, Any]]] = []
        unpriced: list[str] = []
        for provider, model, options in candidates:
            price = self._price_of(provider, model, options)
            if price is not None:
                priced.append((price, options))
                continue
            if self.unknown_model == "deny":
                return Answer(partial(self._deny_unpriced, ctx, provider, model))
            unpriced.append(f"{provider}/{model}")
        prelude = partial(self._allow_unpriced, ctx, unpriced) if unpriced else None
        proxy = proxy_of(ctx)
        route_type = proxy.route_type if proxy else CHAT
        try:
            prompt = estimate.prompt_tokens(ctx, route_type, candidates[0][1]) if priced else 0
        except BodyError:
            # the proxy answers a malformed body with its own 400
            return Answer(prelude) if prelude is not None else None
        requested_cap = requested_max_tokens(ctx)

        def output_cap(options: dict[str, Any]) -> int:
            if route_type == EMBEDDINGS:
                return 0
            return int(requested_cap or options.get("max_tokens") or self.default_max_tokens)

        worst, dearest = max(((worst_case_numerator(price, prompt, output_cap(options)), price)
                              for price, options in priced), key=lambda pair: pair[0], default=(0, None))
        moment = now()
        charges = []
        groups: dict[str, tuple[int, list[Window]]] = {}
        for budget, who in zip(self.budgets, whos):
            window, span = budget.window(self.namespace, who, moment)
            amount = micros(worst, budget.rate)
            charges.append(Charge(budget, who, window, span, amount))
            groups.setdefault(budget.currency, (amount, []))[1].append(window)
        store = runtime.current().store_for(self.config)
        return Plan(store, [(currency, amount, windows) for currency, (amount, windows) in groups.items()], moment,
                    partial(self._conclude, ctx, store, charges, dearest, moment), prelude, self.plugin)

    def _deny_unpriced(self, ctx: RequestContext, provider: str | None, model: str | None) -> web.Response:
        count_refusal(self.plugin, "unpriced_model", ctx)
        return openai_error(400, f"{self.plugin}: no price is known for model '{model}' of provider "
                                 f"'{provider}', and this route refuses unpriced models (add it to the "
                                 "plugin's prices or set model.options.input_cost/output_cost)",
                            "invalid_request_error", "model_not_priced", param="model")

    def _allow_unpriced(self, ctx: RequestContext, unpriced: list[str]) -> None:
        ctx.response_headers[UNPRICED_HEADER] = ", ".join(unpriced)
        log.event(logger, "unpriced model allowed", logging.WARNING, plugin=self.plugin, models=unpriced,
                  route_id=ctx.route_id)

    def _conclude(self, ctx: RequestContext, store: Any, charges: list[Charge], dearest: Price | None, moment: float,
                  grant: Grant | None, refused: Reservation | None, failure: StoreUnavailable | None) -> Any:
        if failure is not None:
            refusal = store_failure(self.plugin, ctx, self.config, failure)
            if refusal is None:  # fail open: served unmetered, but its cost is still reported
                ctx.meta[self.plugin] = Admission(None, dearest, [])
            return refusal
        by_key = {c.window.key: c for c in charges}
        if refused is not None:
            return self._refuse(ctx, by_key, refused.denied, refused.retry_after, moment)
        assert grant is not None
        for _, reservation in grant.reservations:
            for state in reservation.states:
                by_key[state.key].state = state
        ctx.meta[self.plugin] = Admission(grant, dearest, charges)
        label = ctx.identity.get("username") or ctx.identity.get("custom_id")
        warnings = []
        for charge in charges:
            self.index.register(store, charge.budget, charge.who,
                                label if charge.budget.scope == "consumer" else None, charge.window)
            assert charge.state is not None
            spent_before = charge.state.used - charge.reserved
            if self.soft.reached(charge.window.limit, spent_before):
                warnings.append(self._warning(charge, spent_before))
                self.soft.notify(store, charge.budget, charge.who, charge.window, charge.span, spent_before, moment,
                                 ctx.route_id)
        if not self.hide_headers:
            self._add_headers(ctx.response_headers, [(c, c.state) for c in charges if c.state], moment)
            if warnings:
                ctx.response_headers[WARNING_HEADER] = "; ".join(warnings)
        return None

    async def after(self, ctx: RequestContext) -> None:
        admission: Admission | None = ctx.meta.get(self.plugin)
        if admission is None:
            return
        usage = ctx.usage
        price = admission.price
        chosen = chosen_target(ctx)
        if chosen is not None:
            price = self._price_of(*chosen)
            if price is None and self.unknown_model == "deny":
                price = admission.price  # a model admission did not foresee (a template): the dearest it knew
            if price is None:
                ctx.meta["unpriced_model"] = f"{chosen[0]}/{chosen[1]}"
        numerator = cost_numerator(price, usage) if usage is not None and price is not None else 0
        actual = {c.budget.currency: micros(numerator, c.budget.rate) for c in admission.charges}
        store = runtime.current().store_for(self.config)
        if admission.grant is not None:
            await admission.grant.settle_or_retry(self.plugin, ctx, store, actual)
        if price is not None:
            cost = micros(numerator)  # prices are USD
            ctx.meta["cost"] = as_float(cost)
            ctx.meta["cost_micros"] = cost
        else:
            ctx.meta.setdefault("cost", None)
        overrun = [c.budget.name for c in admission.charges if actual[c.budget.currency] > c.reserved]
        if overrun:  # the prompt counted more upstream than admission estimated: charged anyway (it was spent)
            log.event(logger, "cost above the reserved worst case", logging.WARNING, plugin=self.plugin,
                      budgets=overrun, cost_micros=ctx.meta.get("cost_micros"), route_id=ctx.route_id,
                      prompt_tokens=usage.prompt_tokens if usage is not None else None,
                      prompt_estimate=ctx.meta.get("prompt_estimate"))
        moment = now()
        for charge in admission.charges:
            if charge.state is None:
                continue
            spent_after = charge.state.used - charge.reserved + actual[charge.budget.currency]
            if self.soft.reached(charge.window.limit, spent_after):
                self.soft.notify(store, charge.budget, charge.who, charge.window, charge.span, spent_after, moment,
                                 ctx.route_id)
        if logger.isEnabledFor(logging.DEBUG):  # the price's description costs four formatted amounts
            log.event(logger, "cost charged", logging.DEBUG, plugin=self.plugin,
                      cost_micros=ctx.meta.get("cost_micros"),
                      estimated=bool(usage.estimated) if usage is not None else None,
                      price=price.describe() if price else None, route_id=ctx.route_id)

    # -- answers and headers ------------------------------------------------------------------------------------

    def _refuse(self, ctx: RequestContext, by_key: dict[str, Charge], denied: WindowState | None,
                retry_after: float | None, moment: float) -> web.Response:
        count_refusal(self.plugin, "insufficient_quota", ctx)
        charge = by_key.get(denied.key) if denied is not None else None
        if charge is None or denied is None:  # cannot happen: a refusal names its window
            return openai_error(429, "the request does not fit its budget", "insufficient_quota", "insufficient_quota")
        budget, span = charge.budget, charge.span
        spent = max(0, math.ceil(denied.used - 1e-9))
        cur = budget.currency
        if budget.period == "rolling":
            resets_at = moment + retry_after if retry_after is not None else None
            when = (f"enough of it frees up by {iso(resets_at, budget.tz)}" if resets_at is not None else
                    "it can never cover this request")
        elif span.end is None:
            resets_at = retry_after = None
            when = "it never resets"
        else:
            resets_at = span.end
            when = f"it resets at {iso(span.end, budget.tz)}"
        if charge.reserved > budget.amount:
            why = (f"this request may cost up to {format_money(charge.reserved)} {cur}, more than the whole budget "
                   "(lower max_tokens or the prompt)")
        else:
            why = (f"{format_money(spent)} {cur} is spent and this request may cost up to "
                   f"{format_money(charge.reserved)} {cur}")
        message = f"Insufficient quota: budget '{budget.name}' ({charge.who}) of {budget.describe()}: {why}; {when}."
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        if not self.hide_headers:
            self._add_headers(headers, [(charge, denied)], moment)
        body = {"error": {"message": message, "type": "insufficient_quota", "param": None, "code": "insufficient_quota",
                          "budget": {"name": budget.name, "scope": charge.who, "period": budget.period,
                                     "limit": format_money(budget.amount), "spent": format_money(spent),
                                     "request_worst_case": format_money(charge.reserved), "currency": cur,
                                     "resets_at": iso(resets_at, budget.tz)}}}
        return web.Response(status=429, body=orjson.dumps(body), content_type="application/json", headers=headers)

    def _add_headers(self, headers: dict[str, str], states: list[tuple[Charge, WindowState]], moment: float) -> None:
        if not states:
            return
        # The tightest budget: the least money left (compared in USD across currencies), then the soonest reset.
        if len(states) == 1:
            charge, state = states[0]
        else:
            charge, state = min(states, key=lambda cs: (Fraction(cs[1].remaining) / cs[0].budget.rate,
                                                        cs[0].span.end if cs[0].span.end is not None else math.inf))
        headers[LIMIT_HEADER] = format_money(state.limit)
        headers[REMAINING_HEADER] = format_money(max(0, state.remaining))
        if charge.span.end is not None:
            headers[RESET_HEADER] = str(max(0, math.ceil(charge.span.end - moment)))

    def _warning(self, charge: Charge, spent: float) -> str:
        budget = charge.budget
        share = int(spent * 100 // budget.amount) if budget.amount else 100
        return (f"budget '{budget.name}' ({charge.who}) is at {share}% of {format_money(budget.amount)} "
                f"{budget.currency} (soft limit {float(self.soft.share) * 100:g}%)")

"""The relay side of tollgate-token-limit: admit on estimated tokens, settle on exact usage.

Admission reserves the prompt's tokens (counted with tiktoken on the request as it goes
upstream) plus an expected completion (see expected.py for the rule and the bound it gives)
in every window at once; once the answer is complete, the reservation is corrected to the
provider's usage, so a request is charged in the same request, streams included.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from ... import estimate, runtime
from ...context import BodyError, RequestContext
from ...relay.errors import openai_error
from ...store import Reservation, StoreUnavailable, Window, WindowState
from ..limits import (Answer, Grant, LimitPolicy, Plan, UnknownIdentity, candidate_targets, count_refusal,
                      identifier_value, now, proxy_of, requested_max_tokens, store_failure, window_seconds)
from .expected import ESTIMATES, reservation
from .index import WindowIndex, window_key


class TokenLimitPolicy(LimitPolicy):
    def __init__(self, config: dict[str, Any], plugin: str):
        super().__init__(config, plugin)
        self.limits = [{**limit, "seconds": window_seconds(limit["window_size"])} for limit in config["limits"]]
        if config.get("identifier") == "header" and not config.get("header_name"):
            raise ValueError("identifier header needs header_name")
        self.plugin_id = config.get("__plugin_id") or "default"
        self.index = WindowIndex(self.plugin_id, config, self.limits)

    def plan(self, ctx: RequestContext) -> Plan | Answer | None:
        proxy = proxy_of(ctx)
        candidates = candidate_targets(ctx)
        model = candidates[0][1] if candidates else None
        applicable = [limit for limit in self.limits
                      if any(_applies(limit, provider, name) for provider, name, _ in candidates)]
        if not applicable:
            return None
        try:
            who = identifier_value(self.config.get("identifier", "consumer"), ctx, self.config.get("header_name"))
        except UnknownIdentity as exc:
            message = str(exc)
            return Answer(lambda: openai_error(400, message, "invalid_request_error", "missing_identifier"))
        try:
            prompt = estimate.prompt_tokens(ctx, proxy.route_type if proxy else "llm/v1/chat", model)
        except BodyError:
            return None  # the proxy answers malformed bodies with its own 400
        store = runtime.current().store_for(self.config)
        samples = self._samples_key(ctx, model)
        counted = {limit["tokens_count_strategy"] for limit in applicable}
        completion = 0
        if counted != {"prompt_tokens"}:
            room = min(limit["limit"] - (prompt if limit["tokens_count_strategy"] == "total_tokens" else 0)
                       for limit in applicable if limit["tokens_count_strategy"] != "prompt_tokens")
            completion = reservation(cap=_max_tokens(ctx, candidates), learnt=ESTIMATES.expected(samples, store),
                                     default=self.config.get("default_completion_tokens", 256),
                                     exact=bool(self.config.get("reserve_max_tokens")), room=room)
        ctx.meta[f"{self.plugin}:samples"] = samples
        amounts = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        sliding = self.config.get("window_type", "sliding") == "sliding"
        groups: dict[str, list[Window]] = {}
        named: dict[str, str] = {}
        for limit in applicable:
            key = window_key(self.plugin_id, who, limit["seconds"], limit["tokens_count_strategy"])
            groups.setdefault(limit["tokens_count_strategy"], []).append(
                Window(key, limit["limit"], limit["seconds"], sliding))
            named[key] = limit["window_size"]
        moment = now()
        return Plan(store,
                    [(counts, amounts[counts], windows) for counts, windows in groups.items()], moment,
                    partial(self._conclude, ctx, named, store, who, moment), plugin=self.plugin)

    def _conclude(self, ctx: RequestContext, named: dict[str, str], store: Any, who: str, moment: float,
                  grant: Grant | None, refused: Reservation | None, failure: StoreUnavailable | None) -> Any:
        if failure is not None:
            return store_failure(self.plugin, ctx, self.config, failure)
        consumer = who.startswith("consumer:")   # shown by the consumer's name; other identifiers as they are
        self.index.touch(store, who, ctx.identity.get("username") if consumer else None, moment)
        if refused is not None:
            return self._refuse(ctx, refused.denied, refused.retry_after, refused.states, named)
        assert grant is not None
        ctx.meta[self.plugin] = grant
        self._add_headers(ctx.response_headers,
                          [s for _, r in grant.reservations for s in r.states], named)
        return None

    async def after(self, ctx: RequestContext) -> None:
        grant: Grant | None = ctx.meta.get(self.plugin)
        if grant is None:
            return
        usage = ctx.usage
        actual = ({"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                   "total_tokens": usage.total_tokens} if usage is not None else {})
        store = runtime.current().store_for(self.config)
        settled = await grant.settle_or_retry(self.plugin, ctx, store, actual)
        if settled and usage is not None and ctx.status == 200 and not ctx.meta.get("client_disconnected"):  # whole answers
            try:
                await ESTIMATES.record(ctx.meta[f"{self.plugin}:samples"], store, usage.completion_tokens)
            except StoreUnavailable as exc:  # a lost sample only delays learning
                store_failure(self.plugin, ctx, {"fail_open": True}, exc)

    def _samples_key(self, ctx: RequestContext, model: str | None) -> str:
        return samples_key(self.plugin_id, ctx.route_id, model)

    def _refuse(self, ctx: RequestContext, denied: WindowState | None, retry_after: float | None,
                states: list[WindowState], named: dict[str, str]) -> Any:
        count_refusal(self.plugin, "token_limit", ctx)
        headers: dict[str, str] = {}
        self._add_headers(headers, states, named)
        wait = math.ceil(retry_after if retry_after is not None else max(0.0, (denied.reset_at if denied else 0) - now()))
        headers["Retry-After"] = str(max(1, wait))
        window = named.get(denied.key, "?") if denied else "?"
        counts = denied.key.rsplit(":", 1)[-1] if denied else "tokens"
        message = (f"{self.config.get('error_message') or 'AI token rate limit exceeded'}: the {window} window of "
                   f"{denied.limit if denied else '?'} {counts} is exhausted; retry in {max(1, wait)} s")
        return openai_error(int(self.config.get("error_code") or 429), message, "rate_limit_exceeded",
                            "rate_limit_exceeded", headers)

    def _add_headers(self, headers: dict[str, str], states: list[WindowState], named: dict[str, str]) -> None:
        if self.config.get("hide_client_headers") or not states:
            return
        moment = now()
        for state in states:
            window = named.get(state.key, "")
            headers[f"X-AI-RateLimit-Limit-{window}"] = str(state.limit)
            headers[f"X-AI-RateLimit-Remaining-{window}"] = str(max(0, state.remaining))
            headers[f"X-AI-RateLimit-Reset-{window}"] = str(max(0, math.ceil(state.reset_at - moment)))
        tightest = min(states, key=lambda s: (s.remaining, s.reset_at))
        headers["RateLimit-Limit"] = str(tightest.limit)
        headers["RateLimit-Remaining"] = str(max(0, tightest.remaining))
        headers["RateLimit-Reset"] = str(max(0, math.ceil(tightest.reset_at - moment)))


def window_key(plugin_id: str, who: str, seconds: int, counts: str) -> str:
    """A limit's counter: the windows of one plugin instance and identity share a hash tag (one Cluster slot, so
    one script reserves them all)."""
    return f"{{tl:{plugin_id}:{who}}}:{seconds}:{counts}"


def samples_key(plugin_id: str, route_id: str | None, model: str | None) -> str:
    """Where the completions of a route and model are learnt (one Redis hash slot per plugin instance)."""
    return f"{{tle:{plugin_id}}}:{route_id or ''}:{model or ''}"


def _applies(limit: dict[str, Any], provider: str | None, model: str | None) -> bool:
    return (not limit.get("providers") or provider in limit["providers"]) and \
        (not limit.get("models") or model in limit["models"])


def _max_tokens(ctx: RequestContext, candidates: list) -> int:
    """What the answer may cost at most: the client's cap, else the largest cap a target sets."""
    configured = [options.get("max_tokens") or 0 for _, _, options in candidates]
    return int(requested_max_tokens(ctx) or max(configured, default=0))

"""The relay side of tollgate-proxy: check the request, choose targets, call them with retries and failover, and
answer as OpenAI.

One request goes: ``checks`` (4xx for what the client got wrong) -> ``targets`` (which targets its rules allow) ->
``health`` (shared state: open breakers are skipped, probes claimed) -> ``routing`` (algorithms semantic and
complexity: what the prompt is) -> ``balancer`` (the order to try them in) ->
``attempt`` (one call; a stream counts as answered at its first chunk) -> ``streaming`` (the rest of a stream).
``route_type: preserve`` takes ``preserve`` for the last two: the client's native request, the native answer passed
back byte for byte with its usage read on the way. A client that goes away cancels the handler, and with it the
provider call; what is known by then (usage streamed, else the prompt sent) stays for the after stages.

Failover: a failure that matches ``balancer.failover_criteria`` (by default errors, timeouts, invalid answers, 429
and 5xx; never another 4xx, which is the request's fault and would fail anywhere) moves to the next target at once.
With ``balancer.retries`` larger than the number of targets, the order starts again, after a backoff that honours
the provider's Retry-After (both bounded by ``retry_backoff.max`` and by what is left of ``timeout``). Everything,
retries included, ends within ``timeout`` seconds: then a 504 if the last attempt timed out, else a 502 that
summarises the last provider error. With a single target its own error status reaches the client unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from typing import Any

from ...relay import web
from prometheus_client import Counter

from ... import estimate, log, metrics, runtime, scrub
from ...context import RequestContext
from ...providers import UnknownProvider, driver_for
from ...providers.base import PRESERVE, ProviderError, Target
from ...relay import answers
from ...relay.errors import openai_error
from ..base import Policy
from . import costs, preserve, routing, streaming
from .attempt import Answer, Failure, OpenStream, call
from .balancer import STALE_AFTER, Balancer, Inputs, Snapshot
from .checks import ModelRule, Rejected, check
from .health import TargetState
from .schema import DEFAULT_FAILOVER
from .targets import ClientAuth, Facts, TargetSpec, eligible, kinds_in, resolve, secrets_of, specs_from_config
from .templates import Sources, TemplateError

logger = log.get("proxy")

TARGET_HEADER = "X-Tollgate-Target"
ATTEMPTS_HEADER = "X-Tollgate-Attempts"

attempts_total = Counter("tollgate_ai_proxy_attempts_total", "Provider calls by target and outcome",
                         ("target", "outcome"), registry=metrics.REGISTRY)
_attempt_counters: dict[tuple[str, str], Any] = {}   # the counter's children: ``labels`` costs a lock per call


def count_attempt(target: str, outcome: str) -> None:
    counter = _attempt_counters.get((target, outcome))
    if counter is None:
        if len(_attempt_counters) >= 10_000:
            _attempt_counters.clear()
        counter = _attempt_counters[(target, outcome)] = attempts_total.labels(target=target, outcome=outcome)
    counter.inc()


# Kept alive until done: state writes run after the answer so they never delay it.
_background: set[asyncio.Task[Any]] = set()


class ProxyPolicy(Policy):
    answers_llm_requests = True

    def __init__(self, config: dict[str, Any], plugin: str):
        super().__init__(config, plugin)
        self.route_type: str = config["route_type"]
        self.specs: list[TargetSpec] = specs_from_config(config)
        first = self.specs[0]
        # What other stages read before a target is chosen (token-limit keys on it): the first target.
        self.target = Target(provider=first.provider, model=first.pinned_model, options=first.options,
                             auth=first.auth)
        self.timeout = float(config.get("timeout") or 60)
        balancer = config.get("balancer") or {}
        self.algorithm = balancer.get("algorithm") or "round-robin"
        self.balancer = Balancer(self.algorithm)
        self.latency_strategy = balancer.get("latency_strategy") or "ttft"
        self.tokens_count_strategy = balancer.get("tokens_count_strategy") or "total-tokens"
        self.hash_on_header = balancer.get("hash_on_header")
        self.retries = balancer.get("retries")
        criteria = balancer.get("failover_criteria")
        self.criteria = frozenset(DEFAULT_FAILOVER if criteria is None else criteria)
        self.connect_timeout = (balancer.get("connect_timeout") or 5000) / 1000
        self.read_timeout = (balancer.get("read_timeout") or 60000) / 1000
        backoff = balancer.get("retry_backoff") or {}
        self.backoff_base = _number(backoff.get("base"), 0.1)
        self.backoff_max = _number(backoff.get("max"), 2.0)
        self.honour_retry_after = backoff.get("honour_retry_after") is not False
        breaker = balancer.get("circuit_breaker") or {}
        threshold = breaker.get("failure_threshold")
        self.plugin_id = str(config.get("__plugin_id") or _config_id(self.route_type, self.specs))
        self.state = TargetState(lambda: runtime.current().store_for(config), self.plugin_id,
                                 failure_threshold=5 if threshold is None else int(threshold),
                                 cooldown=float(breaker.get("cooldown") or 30),
                                 usage_window=float(balancer.get("usage_window") or 60),
                                 clock=lambda: runtime.current().clock())
        # One target: no choice to make, nothing to share; the request path skips the store entirely. Several:
        # read the shared state when breakers or the algorithm need it.
        self.shared_state = len(self.specs) > 1
        self.reads_state = self.shared_state and (self.state.failure_threshold > 0
                                                  or self.algorithm in ("lowest-latency", "lowest-usage"))
        self.models = ModelRule.of(self.specs)
        self.router = routing.router_for(config, self.specs)
        scrub.register(secrets_of(self.specs, (config.get("embeddings") or {}).get("auth"),
                                  (balancer.get("complexity") or {}).get("auth")))
        self.needs_uri_captures = "uri_captures" in kinds_in(self.specs)
        # ai.proxy.meta for Kong's log plugins: only when the route asks for Kong's analytics (log_statistics).
        self.access_meta = self._access_meta() if (config.get("logging") or {}).get("log_statistics") else {}

    # -- what Kong's access phase can already say ---------------------------------------------------------------

    def _access_meta(self) -> dict[str, str]:
        """``ai.proxy.meta`` as far as the config alone decides it (set once per request in access)."""
        meta = {"plugin_id": self.plugin_id}
        providers = {s.provider for s in self.specs}
        if len(providers) == 1:
            meta["provider_name"] = next(iter(providers))
        pinned = {s.pinned_model for s in self.specs}
        if len(pinned) == 1 and None not in pinned and not self.models.open:
            meta["request_model"] = next(iter(pinned))  # type: ignore[arg-type]
        return meta

    # -- the relay's hooks --------------------------------------------------------------------------------------

    async def before(self, ctx: RequestContext) -> web.StreamResponse | None:
        try:
            ctx.meta["request"] = check(ctx, self.config, self.route_type, self.models)
        except Rejected as exc:
            return openai_error(exc.status, exc.message, code=exc.code, param=exc.param)
        return None

    async def serve(self, ctx: RequestContext, request: web.Request) -> web.StreamResponse:
        checked = ctx.meta.get("request")
        if checked is None:
            early = await self.before(ctx)
            if early is not None:
                return early
            checked = ctx.meta["request"]
        requested = checked["requested_model"]
        ctx.meta["plugin_id"] = self.plugin_id
        ctx.meta["request_model"] = requested
        facts = Facts(ctx.headers, ctx.identity, requested, lambda: self._prompt_tokens(ctx, requested))
        specific, defaults = eligible(self.specs, facts)
        if not specific and not defaults:
            return openai_error(400, "no target of this route accepts this request (see its match rules)",
                                "invalid_request_error", "no_matching_target")
        candidates = specific + defaults
        snapshot, order, trials = await self._plan(ctx, specific, defaults, requested)
        captures = ((ctx.meta.get("attached") or {}).get(self.plugin) or {}).get("uri_captures") or {}
        sources = Sources(ctx.headers, ctx.query, captures)
        client = ClientAuth(ctx.headers, sources, checked["body"])
        if self.route_type == PRESERVE:
            checked["native"] = preserve.ClientRequest.of(ctx, request)
        return await self._attempts(ctx, request, checked, order, snapshot, trials, sources, client,
                                    single=len(candidates) == 1)

    # -- planning -----------------------------------------------------------------------------------------------

    async def _plan(self, ctx: RequestContext, specific: list[TargetSpec], defaults: list[TargetSpec],
                    requested: str | None) -> tuple[Snapshot, list[TargetSpec], set[str]]:
        """The order this request tries its targets in, and which of them it tries as half-open trials."""
        candidates = specific + defaults
        if not self.shared_state:
            return Snapshot(now=runtime.current().clock()), candidates, set()
        state = self.state
        if self.reads_state:
            snapshot = await state.snapshot([s.id for s in candidates], usage=self.algorithm == "lowest-usage")
        else:
            snapshot = Snapshot(now=runtime.current().clock())
        trials: set[str] = set()
        probing: set[str] = set()
        usable: list[list[TargetSpec]] = []
        for tier in (specific, defaults):
            keep = []
            for spec in tier:
                if snapshot.is_open(spec.id):
                    continue
                if state.half_open(spec.id, snapshot):
                    if not await state.claim(spec.id, "trial", state.cooldown):
                        continue           # another request is the trial; wait for its verdict
                    trials.add(spec.id)
                keep.append(spec)
            usable.append(keep)
        if self.algorithm == "lowest-latency":
            # At most one probe per request, of a target with no recent sample that no other request is probing.
            for spec in usable[0] + usable[1]:
                if not snapshot.latency_known(spec.id) and spec.id not in trials \
                        and await state.claim(spec.id, "probe", min(STALE_AFTER, self.timeout)):
                    probing.add(spec.id)
                    break
        decision = await self._route(ctx) if self.router is not None else None
        inputs = Inputs(snapshot=snapshot, hash_key=self._hash_key(ctx), probing=frozenset(probing),
                        cost_of=lambda spec: self._estimated_cost(ctx, spec, requested), decision=decision)
        order = self.balancer.order(usable[0], inputs) + self.balancer.order(usable[1], inputs)
        if not order:
            # Every breaker is open: with nothing to route around to, try them anyway (soonest to close first)
            # rather than fail requests that a recovered provider could answer.
            order = sorted(candidates, key=lambda s: snapshot.open_until.get(s.id, 0.0))
            log.event(logger, "every target's circuit is open; trying them anyway", logging.WARNING,
                      route_id=ctx.route_id, targets=[s.label for s in order])
        return snapshot, order, trials

    async def _route(self, ctx: RequestContext) -> routing.Decision:
        """What the prompt is (algorithms semantic, complexity), said in a header and the log line."""
        assert self.router is not None
        decision = await self.router.decide(ctx.meta["request"]["body"])
        ctx.meta["route_reason"] = decision.header()
        ctx.meta.setdefault("ai_log", {})["routing"] = decision.log()
        routing.decisions_total.labels(self.algorithm, decision.label).inc()
        return decision

    def _hash_key(self, ctx: RequestContext) -> str | None:
        if self.algorithm != "consistent-hashing":
            return None
        if self.hash_on_header:
            value = ctx.headers.get(self.hash_on_header)
            if value:
                return value
        consumer = ctx.identity.get("id")
        if consumer:
            return f"consumer:{consumer}"
        ip = ctx.headers.get("x-real-ip") or ctx.headers.get("x-forwarded-for", "").split(",")[0].strip()
        return f"ip:{ip}" if ip else None

    def _prompt_tokens(self, ctx: RequestContext, requested: str | None) -> int:
        return estimate.prompt_tokens(ctx, self.route_type, self.target.model or requested)

    def _estimated_cost(self, ctx: RequestContext, spec: TargetSpec, requested: str | None) -> float | None:
        unit = costs.prices(spec.provider, spec.pinned_model or requested, spec.options)
        if unit is None:
            return None
        prompt = self._prompt_tokens(ctx, requested)
        body = ctx.meta["request"]["body"]
        expected = body.get("max_completion_tokens") or body.get("max_tokens") or spec.options.get("max_tokens")
        completion = int(expected) if isinstance(expected, int) and expected > 0 else prompt
        return costs.estimate(unit, prompt, completion)

    # -- attempts -----------------------------------------------------------------------------------------------

    async def _attempts(self, ctx: RequestContext, request: web.Request, checked: dict[str, Any],
                        order: list[TargetSpec], snapshot: Snapshot, trials: set[str], sources: Sources,
                        client: ClientAuth, single: bool) -> web.StreamResponse:
        deadline = time.monotonic() + self.timeout
        budget = (1 + self.retries) if self.retries is not None else len(order)
        failures: list[tuple[TargetSpec, Failure]] = []
        unusable: list[tuple[int, str, str]] = []    # why targets could not serve it: (status, code, message)
        prepared: dict[str, tuple[Target, Any, Any] | None] = {}
        tried: dict[str, int] = {}
        made = 0
        while made < budget:
            progressed = False
            for spec in order:
                if made >= budget:
                    break
                if spec.id not in prepared:
                    prepared[spec.id] = self._prepare(spec, checked, sources, client, unusable)
                ready = prepared[spec.id]
                if ready is None:
                    continue
                if spec.id in tried:          # another round on the same target: back off first
                    delay = self._backoff(tried[spec.id], failures, spec)
                    if delay >= deadline - time.monotonic():
                        return self._all_failed(ctx, failures, made, single)
                    if delay > 0:
                        await asyncio.sleep(delay)
                target, driver, upstream_request = ready
                tried[spec.id] = tried.get(spec.id, 0) + 1
                made += 1
                progressed = True
                self.balancer.in_flight[spec.id] += 1
                try:
                    if self.route_type == PRESERVE:
                        outcome = await preserve.call(driver, upstream_request, stream=checked["stream"],
                                                      connect_timeout=self.connect_timeout,
                                                      read_timeout=self.read_timeout, deadline=deadline)
                    else:
                        outcome = await call(driver, self.route_type, target, upstream_request,
                                             stream=checked["stream"], connect_timeout=self.connect_timeout,
                                             read_timeout=self.read_timeout, deadline=deadline)
                    if isinstance(outcome, Failure):
                        failures.append((spec, outcome))
                        self._failed(ctx, spec, outcome, snapshot, trial=spec.id in trials, attempt=made)
                        if outcome.criterion not in self.criteria:
                            # Not a failover case (a 4xx about the request would fail anywhere): pass it on.
                            return self._provider_error(ctx, outcome, made, spec)
                        if time.monotonic() >= deadline:
                            return self._all_failed(ctx, failures, made, single)
                        continue
                    self._describe(ctx, spec, target, made)
                    if isinstance(outcome, Answer):
                        return await self._answer(ctx, spec, target, outcome, snapshot, made)
                    if isinstance(outcome, preserve.Opened):
                        return await self._passthrough(ctx, request, spec, target, driver, outcome, snapshot, made)
                    return await self._stream(ctx, request, spec, target, outcome, checked, snapshot, made)
                except asyncio.CancelledError:
                    self._cancelled(ctx, spec, target, made)
                    raise
                finally:
                    self.balancer.in_flight[spec.id] -= 1
            if not progressed:
                break
        if not failures:
            # Nothing was called. The request's own fault (a template, a model to name) before the config's.
            status, code, message = min(unusable or [(400, "no_usable_target", "no target could serve this request")])
            return openai_error(status, message, None, code)
        return self._all_failed(ctx, failures, made, single)

    def _prepare(self, spec: TargetSpec, checked: dict[str, Any], sources: Sources, client: ClientAuth,
                 unusable: list[tuple[int, str, str]]) -> tuple[Target, Any, Any] | None:
        """The target's driver request for this request, or None (with the reason) when it cannot serve it."""
        try:
            target = resolve(spec, sources, checked["requested_model"], client)
            if self.route_type == PRESERVE:
                # The native request names its model itself (in the body, or in the path for Gemini and Bedrock).
                driver = driver_for(spec.provider)
                target, native_request = preserve.request_for(driver, checked["native"], target)
                return target, driver, native_request
            if target.model is None and not spec.deployment_pinned:
                unusable.append((400, "model_required", "the request must name a model"))
                return None
            driver = driver_for(spec.provider)
            return target, driver, driver.build_request(self.route_type, checked["body"], target, checked["stream"])
        except TemplateError as exc:
            unusable.append((400, "invalid_template_value", str(exc)))
        except UnknownProvider as exc:
            unusable.append((500, "misconfigured", f"target {spec.label} is not usable: {exc}"))
        except ProviderError as exc:
            if exc.status < 500:
                unusable.append((exc.status, exc.code or "unsupported_request", self._redact(exc.message)))
            else:
                unusable.append((500, "misconfigured",
                                 f"target {spec.label} is misconfigured: {self._redact(exc.message)}"))
            log.event(logger, "target cannot serve the request", logging.INFO, target=spec.label,
                      error=self._redact(exc.message))
        return None

    def _backoff(self, rounds: int, failures: list[tuple[TargetSpec, Failure]], spec: TargetSpec) -> float:
        last = next((f for s, f in reversed(failures) if s.id == spec.id), None)
        if last is not None and last.retry_after is not None and self.honour_retry_after:
            return min(max(0.0, last.retry_after), self.backoff_max)
        delay = self.backoff_base * (2 ** (rounds - 1))
        return min(self.backoff_max, delay * random.uniform(0.5, 1.0))

    # -- outcomes -----------------------------------------------------------------------------------------------

    def _describe(self, ctx: RequestContext, spec: TargetSpec, target: Target, attempts: int) -> None:
        model = target.model or target.options.get("azure_deployment_id")   # Azure: the deployment decides
        ctx.meta["provider"] = target.provider
        ctx.meta["model"] = model
        ctx.meta["target"] = spec.description or f"{target.provider}/{model}"
        ctx.meta["target_id"] = spec.id
        ctx.meta["attempts"] = attempts
        ctx.meta["chosen_target"] = target       # for later stages (cost, limits) that need the real model

    def _headers(self, ctx: RequestContext, attempts: int) -> dict[str, str]:
        headers = dict(ctx.response_headers)
        if attempts > 1:
            headers[ATTEMPTS_HEADER] = str(attempts)
        if self.config.get("model_name_header", True) is not False and ctx.meta.get("provider"):
            headers["X-Kong-LLM-Model"] = f"{ctx.meta['provider']}/{ctx.meta['model']}"
            headers[TARGET_HEADER] = ctx.meta["target"]
            if ctx.meta.get("route_reason"):
                headers[routing.REASON_HEADER] = ctx.meta["route_reason"]
        return headers

    async def _answer(self, ctx: RequestContext, spec: TargetSpec, target: Target, answer: Answer,
                      snapshot: Snapshot, attempts: int) -> web.Response:
        usage = answer.usage
        if usage is None:   # none reported, or none readable: our count, marked as such, is charged and shown
            usage = estimate.usage_from_text(ctx, self.route_type, target.model, estimate.generated_text(answer.data))
            answer.data["usage"] = estimate.usage_field(self.route_type, usage)
        ctx.usage = usage
        ctx.meta["latency_ms"] = answer.elapsed_ms
        self._settled(ctx, spec, target, snapshot, ttft_ms=answer.elapsed_ms, e2e_ms=answer.elapsed_ms)
        count_attempt(spec.label, "ok")
        return await answers.json(ctx, answer.data, self._headers(ctx, attempts))

    async def _stream(self, ctx: RequestContext, request: web.Request, spec: TargetSpec, target: Target,
                      opened: OpenStream, checked: dict[str, Any], snapshot: Snapshot,
                      attempts: int) -> web.StreamResponse:
        count_attempt(spec.label, "ok")
        response, _ = await streaming.relay(ctx, request, opened, self.route_type, target.model,
                                            self._headers(ctx, attempts), checked["client_wants_usage"],
                                            self._redact)
        self._settled(ctx, spec, target, snapshot, ttft_ms=opened.ttft_ms, e2e_ms=ctx.meta["latency_ms"])
        return response

    async def _passthrough(self, ctx: RequestContext, request: web.Request, spec: TargetSpec, target: Target,
                           driver: Any, opened: preserve.Opened, snapshot: Snapshot,
                           attempts: int) -> web.StreamResponse:
        """route_type preserve: the provider's native answer, byte for byte, as it arrives (usage read on the way)."""
        count_attempt(spec.label, "ok")
        response, _ = await preserve.relay(ctx, request, opened, driver, target, self._headers(ctx, attempts))
        self._settled(ctx, spec, target, snapshot, ttft_ms=opened.ttft_ms, e2e_ms=ctx.meta["latency_ms"])
        return response

    def _cancelled(self, ctx: RequestContext, spec: TargetSpec, target: Target, attempt: int) -> None:
        """The client went away (the relay's handler was cancelled), or a gate closed (an input guard blocked while
        the call ran, relay/pipeline.py), while this attempt was under way: the provider call is dropped with it.
        What is known stays for the after stages (limits, budgets settle on it): the usage the provider reported,
        else the prompt sent (an estimate: the provider has seen it)."""
        why = "gate closed" if ctx.meta.get("cancelled_by") == "gate" else "client disconnected"
        if why == "client disconnected":
            ctx.meta["client_disconnected"] = True
        if ctx.meta.get("provider") is None:
            self._describe(ctx, spec, target, attempt)
        if ctx.usage is None and self.route_type != PRESERVE:
            ctx.usage = estimate.usage_from_text(ctx, self.route_type, target.model, "")
        log.event(logger, f"{why}; provider call cancelled", logging.INFO, route_id=ctx.route_id,
                  request_id=ctx.id, target=spec.label, attempt=attempt)

    def _settled(self, ctx: RequestContext, spec: TargetSpec, target: Target, snapshot: Snapshot, *,
                 ttft_ms: float, e2e_ms: float) -> None:
        """Usage and cost for analytics; latency, usage and breaker state for the balancer (in the background)."""
        usage = ctx.usage
        options = target.options
        if options.get("input_cost") is not None and options.get("output_cost") is not None:
            # Kong's ai-proxy reports a cost when the target is priced in its options; cost-quota, when on the
            # route, replaces it with its exact charge.
            ctx.meta.setdefault("cost", costs.of_usage((options["input_cost"], options["output_cost"]), usage))
        if not self.shared_state:
            return
        sample: float | None = None
        if self.algorithm == "lowest-latency":
            if self.latency_strategy == "e2e":
                sample = e2e_ms
            elif self.latency_strategy == "tpot":
                sample = e2e_ms / max(1, usage.completion_tokens if usage else 1)
            else:
                sample = ttft_ms
        amount = 0
        if self.algorithm == "lowest-usage" and usage is not None:
            amount = {"prompt-tokens": usage.prompt_tokens, "completion-tokens": usage.completion_tokens,
                      "cost": round((costs.of_usage(costs.prices(target.provider, target.model, options), usage)
                                     or 0.0) * 1_000_000)}.get(self.tokens_count_strategy, usage.total_tokens)
        _spawn(self._record_success(spec.id, snapshot, sample, amount))

    async def _record_success(self, tid: str, snapshot: Snapshot, sample: float | None, amount: int) -> None:
        await self.state.success(tid, snapshot, sample)
        if amount:
            await self.state.charge(tid, amount)

    def _failed(self, ctx: RequestContext, spec: TargetSpec, failure: Failure, snapshot: Snapshot, *, trial: bool,
                attempt: int) -> None:
        count_attempt(spec.label, failure.criterion)
        ctx.meta["failed_provider"] = spec.provider   # whose error it is, when no target answers (usage record)
        log.event(logger, "target failed", logging.WARNING, route_id=ctx.route_id, request_id=ctx.id,
                  target=spec.label, attempt=attempt, outcome=failure.criterion, status=failure.status,
                  error=self._redact(failure.message)[:300])
        if not self.shared_state:
            return
        if _counts_against_target(failure):
            _spawn(self.state.failure(spec.id, trial=trial))
        if failure.is_timeout and self.algorithm == "lowest-latency" and failure.elapsed_ms > 0:
            _spawn(self.state.penalty(spec.id, snapshot, failure.elapsed_ms))

    def _error_headers(self, ctx: RequestContext, attempts: int) -> dict[str, str]:
        """What an error answer says of the attempts and of the routing decision."""
        headers = {ATTEMPTS_HEADER: str(attempts)} if attempts > 1 else {}
        if ctx.meta.get("route_reason") and self.config.get("model_name_header", True) is not False:
            headers[routing.REASON_HEADER] = ctx.meta["route_reason"]
        return headers

    def _provider_error(self, ctx: RequestContext, failure: Failure, attempts: int,
                        spec: TargetSpec) -> web.Response:
        """The provider's own error, as OpenAI's (a 4xx about the request, or a lone target's failure); on a
        preserve route, the provider's own answer as it came."""
        headers = self._error_headers(ctx, attempts)
        if self.config.get("model_name_header", True) is not False:
            headers[TARGET_HEADER] = spec.label
        if isinstance(failure, preserve.NativeFailure) and failure.answer is not None:
            return preserve.native_error(failure, headers, self._redact)
        if failure.retry_after is not None:
            headers["Retry-After"] = f"{failure.retry_after:g}"
        return openai_error(failure.status, self._redact(failure.message), failure.type, failure.code,
                            headers or None)

    def _all_failed(self, ctx: RequestContext, failures: list[tuple[TargetSpec, Failure]], attempts: int,
                    single: bool) -> web.Response:
        spec, last = failures[-1]
        ctx.meta["attempts"] = attempts
        headers = self._error_headers(ctx, attempts) or None
        if last.is_timeout:
            return openai_error(504, self._summary(failures), "timeout", "upstream_timeout", headers)
        if single:
            if last.criterion.startswith("http_"):
                # One target: its own answer (a 429 with its Retry-After, a 503...) is the most useful to pass on.
                return self._provider_error(ctx, last, attempts, spec)
            return openai_error(502, self._redact(last.message), last.type, last.code, headers)
        return openai_error(502, self._summary(failures), "api_error", "all_targets_failed", headers)

    def _summary(self, failures: list[tuple[TargetSpec, Failure]]) -> str:
        spec, last = failures[-1]
        distinct = len({s.id for s, _ in failures})
        what = f"{last.status} {last.message}" if last.criterion.startswith("http_") else last.message
        if distinct == 1 and len(failures) == 1:
            return self._redact(f"{spec.label}: {what}")
        return self._redact(f"every target failed ({len(failures)} attempts on {distinct} "
                            f"target{'s' if distinct > 1 else ''}); last error from {spec.label}: {what}")

    @staticmethod
    def _redact(text: str) -> str:
        return scrub.redact(text)


def _counts_against_target(failure: Failure) -> bool:
    """Failures that say the target is unwell (not that the request was wrong) feed its circuit breaker."""
    criterion = failure.criterion
    return criterion in ("error", "timeout", "invalid_header", "http_429") or criterion.startswith("http_5")


def _number(value: Any, default: float) -> float:
    return default if value is None else float(value)


def _spawn(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


def _config_id(route_type: str, specs: list[TargetSpec]) -> str:
    """A stable id for a config that came without Kong's ``__plugin_id`` (tests, tools)."""
    text = route_type + "|" + "|".join(s.id for s in specs)
    return "cfg-" + hashlib.blake2b(text.encode(), digest_size=6).hexdigest()

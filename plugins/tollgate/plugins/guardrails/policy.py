"""The relay side of tollgate-guardrails.

Request stage, in Kong's order: templates (ai-prompt-template) -> decorator (ai-prompt-decorator) -> allow/deny
rules (ai-prompt-guard) -> PII redaction (ai-sanitizer's job, with Presidio) -> guard services (screening.py). Each
works on the body the relay already parsed; the rewritten request goes on with ``ctx.set_json``. The guard services
come last: the local rules refuse what they can without a call out, and the services see the prompt as the provider
will, with its PII already redacted (never sent to a third party). A refusal is an OpenAI-style error: 400
``prompt_blocked`` for a rule or a blocked entity, 400 ``content_blocked`` for a guard service's block, 400
``template_error`` for a bad template call, 500 ``guardrail_failed`` when the PII analyzer or a guard service fails
(fail-closed; with ``fail_open`` the request goes on unchecked and says so in ``X-Tollgate-Guardrails``).

Answer side: the output guard services judge the answer first (screening.py), so a service never sees the values
the PII restore puts back; then PII the model wrote is redacted, and this request's placeholders restored
(answer.py).

Audit: ``ai.guardrails`` in the request's log line names the rule, the entity types and their counts and the
action, never the text or the values.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from ...relay import web

from ... import log
from ...context import BodyError, RequestContext
from ...providers.base import PRESERVE
from ...relay.errors import openai_error
from ...relay.pipeline import AnswerFilter, Chunk, Filters, Gate
from ..base import Policy
from .answer import GuardrailsFilter, OutputRules
from .decorator import Decorator
from .guards import build as build_guards
from .pii import entities
from .pii.pool import AnalyzerFailed, analyze_all, engine_future
from .pii.redact import PiiBlocked, Redactor, Vault
from .prompt_guard import PromptGuard
from .screening import screen_input
from .templates import TemplateError, Templates
from .texts import rewrite_request
from .window import WindowedGuardsFilter

if TYPE_CHECKING:
    from .pii.engine import PiiEngine

logger = log.get("guardrails")

HEADER = "X-Tollgate-Guardrails"
_VAULT = "guardrails.vault"       # ctx.meta key: this request's placeholders (never logged)
_AUDIT = "guardrails"             # ctx.meta["ai_log"] key: what the log line says
_HIDE_PAYLOAD = "hide_payload"    # ctx.meta key analytics reads: the request's payload must not be logged


class GuardrailsPolicy(Policy):
    def __init__(self, config: dict[str, Any], plugin: str):
        super().__init__(config, plugin)
        self.templates = Templates(config)
        self.decorator = Decorator(config)
        self.guard = PromptGuard(config)
        self.fail_open = bool(config.get("fail_open"))
        self.guards = build_guards(config)           # a guard that cannot work is refused when the instance starts
        self.input_guards = any(g.guards("input") for g in self.guards)
        self.output_guards = any(g.guards("output") for g in self.guards)
        self.during_call = bool(config.get("during_call"))   # input guards run while the provider call does
        pii = config.get("pii") or {}
        self.engine: PiiEngine | None = None
        self._building = None
        if pii.get("enabled"):
            entities.check(pii)                      # a bad PII config is refused when the instance starts
            self._building = engine_future(pii)      # Presidio loads in the background meanwhile
        self.redactor = Redactor(pii)
        mode = pii.get("mode") or "INPUT"
        self.redact_input = self._building is not None and mode in ("INPUT", "BOTH")
        self.restore = self.redact_input and pii.get("restore") is not False
        self.scan_output = self._building is not None and mode in ("OUTPUT", "BOTH")
        self.lookbehind = int(pii.get("stream_lookbehind") or 64)

    # -- the request --------------------------------------------------------------------------------------------

    async def before(self, ctx: RequestContext) -> web.StreamResponse | None:
        proxy = ctx.policies.get("tollgate-proxy")
        if getattr(proxy, "route_type", None) == PRESERVE:
            return openai_error(500, "tollgate-guardrails cannot check route_type 'preserve' (native provider "
                                "bodies); use an OpenAI-format route_type on this route", "server_error",
                                "unsupported_route_type")
        try:
            body = ctx.json()
        except BodyError as exc:
            return openai_error(400, str(exc), code="invalid_json")  # the proxy's code for the same refusal
        if not isinstance(body, dict):
            return openai_error(400, "the request body must be a JSON object", code="invalid_json")
        audit = self._audit(ctx)
        if self.redact_input:
            ctx.meta[_HIDE_PAYLOAD] = True     # until the body is redacted, no payload log may show it
        original = body
        if self.templates:
            try:
                body = self.templates.apply(body) or body
            except TemplateError as exc:
                audit.update(rule="templates", action="block")
                return openai_error(400, str(exc), code="template_error")
            if body is not original:
                audit["template"] = "applied"
        if self.decorator:
            body = self.decorator.apply(body) or body
        if self.guard:
            blocked = self.guard.check(body)
            if blocked is not None:
                audit.update(rule=blocked.rule, action="block")
                return openai_error(400, "the prompt was blocked by a guardrail rule", code="prompt_blocked")
        if self._building is not None:
            try:
                engine = await self._engine()
                if self.redact_input:
                    body = await self._redact(ctx, engine, body, audit)
                    ctx.meta.pop(_HIDE_PAYLOAD, None)
            except PiiBlocked as exc:
                audit.update(rule="pii", action="block", entities=exc.entities)
                return openai_error(400, "the prompt contains personal data this route does not accept: "
                                    + ", ".join(exc.entities), code="prompt_blocked")
            except AnalyzerFailed as exc:
                audit["pii_error"] = "analyzer_failed"
                log.event(logger, "PII analyzer failed", logging.ERROR, route_id=ctx.route_id, error=str(exc),
                          fail_open=self.fail_open)
                if not self.fail_open:
                    return openai_error(500, "the PII analyzer failed; the request was not sent",
                                        "server_error", "guardrail_failed")
                ctx.response_headers[HEADER] = "failed-open"
        if self.input_guards and self.during_call:
            if body is not original:
                ctx.set_json(body)
            headers: dict[str, str] = {}
            ctx.gate = Gate(asyncio.ensure_future(self._screen_during_call(body, audit, headers)), headers)
            return None
        if self.input_guards:
            screened = await screen_input(self.guards, body, audit)
            if screened.refusal is not None:
                return screened.refusal
            body = screened.body
            if screened.failed_open:
                ctx.response_headers[HEADER] = "failed-open"
        if body is not original:
            ctx.set_json(body)
        return None

    async def _screen_during_call(self, body: dict[str, Any], audit: dict[str, Any],
                                  headers: dict[str, str]) -> web.Response | None:
        """The input guards while the provider call runs (``during_call``): the refusal, or None (and the answer's
        ``headers``). A mask cannot be applied to a prompt already sent, so a masking verdict refuses, like a
        block."""
        screened = await screen_input(self.guards, body, audit)
        if screened.refusal is not None:
            return screened.refusal
        if screened.body is not body:
            audit.update(action="block", masking="during_call")
            return openai_error(400, "the prompt was blocked by a content guard: its masked text could not be "
                                "applied (the prompt was already sent, during_call)", code="content_blocked")
        if screened.failed_open:
            headers[HEADER] = "failed-open"
        return None

    async def _engine(self) -> PiiEngine:
        """The PII engine, once Presidio has loaded (the first requests may wait for it)."""
        if self.engine is None:
            assert self._building is not None
            try:
                self.engine = self._building.result() if self._building.done() \
                    else await asyncio.wrap_future(self._building)
            except Exception as exc:
                raise AnalyzerFailed(f"the PII engine could not be built: {type(exc).__name__}") from exc
        return self.engine

    async def _redact(self, ctx: RequestContext, engine: PiiEngine, body: dict[str, Any],
                      audit: dict[str, Any]) -> dict[str, Any]:
        texts: list[str] = []
        rewrite_request(body, lambda t: texts.append(t) or t)
        found = await analyze_all(engine, texts)
        if not any(found):
            return body
        vault = Vault()
        counts: Counter[str] = Counter()
        redacted = {t: self.redactor.apply(t, f, vault, counts) for t, f in zip(texts, found) if f}
        audit["pii_input"] = dict(counts)
        audit["pii_action"] = {e: self.redactor.action(e) for e in counts}
        if vault and self.restore:
            ctx.meta[_VAULT] = vault
        return rewrite_request(body, lambda t: redacted.get(t, t))

    @staticmethod
    def _audit(ctx: RequestContext) -> dict[str, Any]:
        return ctx.meta.setdefault("ai_log", {}).setdefault(_AUDIT, {})

    # -- the answer ---------------------------------------------------------------------------------------------

    def answer_filter(self, ctx: RequestContext) -> AnswerFilter | None:
        vault = ctx.meta.get(_VAULT)
        output = OutputRules(self.engine, self.redactor, self.lookbehind, self.fail_open) \
            if self.scan_output and self.engine is not None else None
        stages: list[AnswerFilter] = []
        if self.output_guards:
            stages.append(WindowedGuardsFilter(self.guards, self._audit(ctx)))
        if vault is not None or output is not None:
            stages.append(GuardrailsFilter(vault, output, self._audit(ctx)))
        if len(stages) > 1:
            return _Stacked(Filters(stages))
        return stages[0] if stages else None             # nothing to do: the answer passes at no cost


class _Stacked(AnswerFilter):
    """Several of this policy's answer filters as the one the pipeline takes, in order."""

    def __init__(self, filters: Filters):
        self.filters = filters

    async def feed(self, chunk: Chunk) -> list[Chunk]:
        return await self.filters.feed([chunk])

    async def flush(self) -> list[Chunk]:
        return await self.filters.flush()

    async def answer(self, body: Chunk) -> Chunk:
        return await self.filters.answer(body)

"""tollgate-cost-quota: budgets in real money, charged exactly, never overspent across nodes.

Kong side: handler.py (attach the policy; ask Kong's router for route/service ids when a budget needs them).
Relay side: policy.py (admission, settlement, headers, errors). Config: schema.py. Periods: periods.py, budgets:
budgets.py, soft-limit notices: notify.py, ``tollgate spend``: spend.py. Prices: ``tollgate.pricing``.

Behaviour, in short:

* **Prices** (USD per 1M tokens): the proxy target's ``model.options.input_cost``/``output_cost``, then the
  plugin's ``prices`` (keyed ``provider/model`` or ``model``), then the shipped table (cached-input and reasoning
  prices included). An unpriced model is refused (``unknown_model: deny``, 400 ``model_not_priced``), priced at
  ``default_price``, or let through at no cost with ``X-AI-Budget-Unpriced: <provider>/<model>``
  (``allow_unpriced``; still refused once a budget is used up).
* **Budgets**: each ``{amount, currency, period, scope}``; all of a request's budgets are checked and charged
  together. Periods ``day``, ``week`` (from Monday), ``month`` start at local midnight in ``timezone`` (an IANA
  name; a budget may name its own); ``total`` never resets; ``rolling`` with ``rolling_seconds`` is a sliding
  window (the previous window's spend counts in proportion to its share still inside the window, as Kong's
  sliding rate limits do). Scopes: consumer (anonymous requests: their IP), consumer-group, credential, route,
  service, header (``header_name``), global. Budgets in another currency than USD need ``exchange_rates``
  (units of that currency per USD). Instances sharing a ``namespace`` share spend (default: the instance's id).
* **Admission**: the worst case (prompt tokens as counted on the request x input price + ``max_tokens``, else the
  proxy's ``max_tokens``, else ``default_max_tokens``, x output price) is reserved atomically in every budget
  (one Lua script per currency in Redis). **Settlement** after the answer (streams and client disconnects too)
  corrects each reservation to the exact cost, rounded up to the micro-unit once per request.
* **Refusal**: 429 ``{"error": {"type": "insufficient_quota", "code": "insufficient_quota", "message": ...,
  "budget": {name, scope, period, limit, spent, request_worst_case, currency, resets_at}}}``, with
  ``Retry-After`` when waiting helps.
* **Headers** (unless ``hide_client_headers``) for the tightest budget (least money left): ``X-AI-Budget-Limit``
  and ``X-AI-Budget-Remaining`` (decimal amounts; remaining after this request's worst-case reservation) and
  ``X-AI-Budget-Reset`` (seconds until the period ends; absent for ``total``). ``X-AI-Budget-Warning`` names the
  budgets whose spend before the request is at ``soft_limit_share`` or more (0 disables soft limits).
* **Soft limit**: a warning log event ``budget soft limit reached`` and, with ``webhook_url``, a JSON POST
  (``event: budget.soft_limit_reached``) once per budget, scope value and period across all nodes, in the
  background.
* **fail_open**: as the token limit: when the store is unreachable, let the request through (marked
  ``X-Tollgate-Fail-Open``) or refuse it with 503.
* **Visibility**: the request's cost in USD goes to ``ai.proxy.usage.cost`` in the analytics log line and to
  ``tollgate_ai_llm_cost_total``; ``tollgate spend`` lists spend per budget, scope and period.
"""

from ... import __version__ as version
from .handler import Plugin
from .schema import Schema

priority = 904
error_format = "openai"

__all__ = ["Plugin", "Schema", "version", "priority", "error_format"]

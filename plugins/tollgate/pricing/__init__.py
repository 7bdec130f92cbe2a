"""Model prices and money arithmetic for the cost plugins.

``default_table()`` is the shipped table (``prices.json``: USD per 1M tokens, with the date and source of
every price; regenerate it with ``scripts/regenerate_prices.py``). ``resolve_price`` layers a plugin's own
price overrides and a proxy target's ``input_cost``/``output_cost`` over it. Money is integer micro-units
throughout (`money`).
"""

from __future__ import annotations

from typing import Any, Mapping

from .money import MICRO, as_float, ceil_div, format_money, to_decimal, to_fraction, to_micros
from .table import (
    Price,
    PriceTable,
    candidate_names,
    cost_numerator,
    default_table,
    micros,
    worst_case_numerator,
)

__all__ = ["MICRO", "Price", "PriceTable", "as_float", "candidate_names", "ceil_div", "cost_numerator",
           "default_table", "format_money", "micros", "resolve_price", "to_decimal", "to_fraction", "to_micros",
           "worst_case_numerator"]


def resolve_price(provider: str | None, model: str | None, *, overrides: Mapping[str, Mapping[str, Any]] | None = None,
                  proxy_options: Mapping[str, Any] | None = None, table: PriceTable | None = None) -> Price | None:
    """The price of one model for one request, field by field from the most specific source.

    1. the proxy target's ``model.options.input_cost`` / ``output_cost`` (Kong ai-proxy's fields, USD per 1M
       tokens): input and output only;
    2. ``overrides`` (a plugin's ``prices``), keyed ``"<provider>/<model>"`` or ``"<model>"``;
    3. the table.

    A field no source sets falls back as the table does (cached_input to input, reasoning to output). None
    when the input or the output price is still unknown.
    """
    table = table if table is not None else default_table()
    base: Price | None = None
    if overrides and provider and model:
        lowered = {key.lower(): value for key, value in overrides.items()}
        for name in candidate_names(provider.lower(), model):
            entry = lowered.get(f"{provider.lower()}/{name}") or lowered.get(name)
            if entry is not None:
                base = Price.from_mapping(entry, "config")
                break
    if base is None:
        base = table.lookup(provider, model)
    options = proxy_options or {}
    input_cost, output_cost = options.get("input_cost"), options.get("output_cost")
    if base is None:
        if input_cost is None or output_cost is None:
            return None
        return Price.from_mapping({"input": input_cost, "output": output_cost}, "proxy")
    return base.overridden("proxy", input=None if input_cost is None else to_micros(input_cost),
                           output=None if output_cost is None else to_micros(output_cost))

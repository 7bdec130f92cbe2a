"""Prices of a target, for the ``cost`` algorithm and for ``ai.proxy.usage.cost``.

A target's own ``model.options.input_cost``/``output_cost`` (USD per million tokens, as in Kong) come first, then
the shared pricing table (``tollgate.pricing``) for the target's provider and model. A target with no known price
is ranked after every priced one. Without the pricing package (an older or trimmed install) only the options count.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from ... import log
from ...providers.base import Usage

logger = log.get("proxy")

Prices = tuple[float, float]   # (input, output) in currency units per million tokens


def prices(provider: str, model: str | None, options: dict[str, Any]) -> Prices | None:
    given_in, given_out = options.get("input_cost"), options.get("output_cost")
    table = table_prices(provider, model) if model else None
    if given_in is None and given_out is None:
        return table
    if table is None and (given_in is None or given_out is None):
        return None
    return (float(given_in) if given_in is not None else table[0],      # type: ignore[index]
            float(given_out) if given_out is not None else table[1])    # type: ignore[index]


def estimate(unit: Prices | None, prompt_tokens: int, completion_tokens: int) -> float | None:
    if unit is None:
        return None
    return (prompt_tokens * unit[0] + completion_tokens * unit[1]) / 1_000_000


def of_usage(unit: Prices | None, usage: Usage | None) -> float | None:
    if unit is None or usage is None:
        return None
    return estimate(unit, usage.prompt_tokens, usage.completion_tokens)


@lru_cache(maxsize=1024)
def table_prices(provider: str, model: str) -> Prices | None:
    """The shipped table's (input, output) price per million tokens for ``provider``/``model``."""
    try:
        from ...pricing import MICRO, default_table
    except ImportError:
        return None
    try:
        price = default_table().lookup(provider, model)
    except Exception as exc:  # a table that cannot answer must not break routing
        log.event(logger, "pricing table lookup failed", logging.WARNING, error=repr(exc))
        return None
    if price is None:
        return None
    return price.input / MICRO, price.output / MICRO

"""Model prices: the shipped table (``prices.json``), lookups by provider and model, and exact costs.

Prices are held as integer micro-units of the currency per 1M tokens (USD 2.50 per 1M tokens is
``2_500_000``), so the cost of a request is an integer sum of ``tokens x price`` divided by 1M once, rounded
up to the micro-unit: a request is never charged less than it cost, and never more than one micro-unit over.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from importlib import resources
from typing import Any, Mapping

from .money import ceil_div, format_money, to_micros

TOKENS_PER_PRICE = 1_000_000  # prices are per 1M tokens

# Bedrock's cross-region inference profiles prefix the model id with a geography.
_BEDROCK_GEOGRAPHIES = ("us-gov.", "global.", "apac.", "us.", "eu.", "au.", "jp.", "ca.", "in.")


@dataclass(frozen=True)
class Price:
    """What one model costs, in micro-units of ``currency`` per 1M tokens."""

    input: int
    output: int
    cached_input: int
    reasoning: int
    cache_write_input: int
    currency: str = "USD"
    origin: str = "table"  # table | config | proxy | default
    as_of: str | None = None
    source: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], origin: str, **meta: Any) -> Price:
        """From USD-per-1M decimals ``{input, output, cached_input?, reasoning?, cache_write_input?}``."""
        input_price, output_price = to_micros(data["input"]), to_micros(data["output"])
        cached = data.get("cached_input")
        reasoning = data.get("reasoning")
        cache_write = data.get("cache_write_input")
        price = cls(input=input_price, output=output_price,
                    cached_input=input_price if cached is None else to_micros(cached),
                    reasoning=output_price if reasoning is None else to_micros(reasoning),
                    cache_write_input=input_price if cache_write is None else to_micros(cache_write),
                    origin=origin, as_of=meta.get("as_of") or data.get("as_of"),
                    source=meta.get("source") or data.get("source"))
        for name in ("input", "output", "cached_input", "reasoning", "cache_write_input"):
            if getattr(price, name) < 0:
                raise ValueError(f"price {name} must not be negative")
        return price

    def overridden(self, origin: str, **prices: int | None) -> Price:
        """This price with some fields replaced (None leaves a field as it is)."""
        changes = {name: value for name, value in prices.items() if value is not None}
        return replace(self, origin=origin, **changes) if changes else self

    def describe(self) -> dict[str, Any]:
        """For logs: the prices per 1M tokens as exact decimal strings, and where they came from."""
        return {"input": format_money(self.input), "output": format_money(self.output),
                "cached_input": format_money(self.cached_input), "reasoning": format_money(self.reasoning),
                "currency": self.currency, "origin": self.origin, "as_of": self.as_of, "source": self.source}


def cost_numerator(price: Price, usage: Any) -> int:
    """``sum(tokens x price per 1M)`` for a provider's usage report; the cost is this / 1M, rounded up.

    Prompt tokens read from the provider's cache are priced at ``cached_input``, written to it at
    ``cache_write_input`` (when the usage says how many), the rest at ``input``. Reasoning tokens (a part of the
    completion tokens) are priced at ``reasoning``, the rest of the completion at ``output``.
    """
    prompt = max(0, int(usage.prompt_tokens or 0))
    cached = min(max(0, int(getattr(usage, "cached_tokens", 0) or 0)), prompt)
    written = min(max(0, int(getattr(usage, "cache_write_tokens", 0) or 0)), prompt - cached)
    completion = max(0, int(usage.completion_tokens or 0))
    reasoning = min(max(0, int(getattr(usage, "reasoning_tokens", 0) or 0)), completion)
    return ((prompt - cached - written) * price.input + cached * price.cached_input
            + written * price.cache_write_input + (completion - reasoning) * price.output
            + reasoning * price.reasoning)


def worst_case_numerator(price: Price, prompt_tokens: int, max_tokens: int) -> int:
    """The most a request can cost: every prompt token at the dearest prompt price, ``max_tokens`` at the
    dearest completion price (input and output, unless cached or reasoning tokens are priced above them)."""
    return (max(0, prompt_tokens) * max(price.input, price.cached_input)
            + max(0, max_tokens) * max(price.output, price.reasoning))


def micros(numerator: int, rate: Fraction | int = 1) -> int:
    """A cost numerator as micro-units, converted at ``rate`` (units of the target currency per price unit),
    rounded up."""
    if type(numerator) is int:  # integer arithmetic, exact: ceil(numerator * p / (q * TOKENS_PER_PRICE))
        if type(rate) is int:
            return -((-numerator * rate) // TOKENS_PER_PRICE)
        if type(rate) is not Fraction:   # (Fraction() of a Fraction is a slow no-op: budgets hold Fractions)
            rate = Fraction(rate)
        return -((-numerator * rate.numerator) // (rate.denominator * TOKENS_PER_PRICE))
    return ceil_div(numerator * Fraction(rate), TOKENS_PER_PRICE)


class PriceTable:
    """Prices by provider and model name; ``aliases`` price one provider as another (azure as openai)."""

    def __init__(self, providers: Mapping[str, Mapping[str, Price]], aliases: Mapping[str, str] | None = None,
                 currency: str = "USD", about: Mapping[str, Any] | None = None):
        self.providers = {name.lower(): {model.lower(): price for model, price in models.items()}
                          for name, models in providers.items()}
        self.aliases = {k.lower(): v.lower() for k, v in (aliases or {}).items()}
        self.currency = currency
        self.about = dict(about or {})

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> PriceTable:
        currency = document.get("currency", "USD")
        providers = {
            provider: {model: replace(Price.from_mapping(entry, "table"), currency=currency)
                       for model, entry in models.items()}
            for provider, models in document.get("providers", {}).items()
        }
        return cls(providers, document.get("aliases"), currency, document.get("about"))

    def __len__(self) -> int:
        return sum(len(models) for models in self.providers.values())

    def lookup(self, provider: str | None, model: str | None) -> Price | None:
        """The price of ``model`` served by ``provider``, or None when the table does not know it.

        Tries the name as given (case-insensitive), then without a ``models/`` or ``<provider>/`` prefix, and for
        Bedrock the model id of an ARN and the model without its cross-region profile prefix (``us.``...), which
        is priced like the base model where no regional price is listed.
        """
        if not provider or not model:
            return None
        provider = provider.lower()
        tables = [self.providers.get(provider)]
        if provider in self.aliases:
            tables.append(self.providers.get(self.aliases[provider]))
        for name in candidate_names(provider, model):
            for table in tables:
                if table and name in table:
                    return table[name]
        return None


def candidate_names(provider: str, model: str) -> list[str]:
    """The names a model may be listed under, most specific first."""
    name = model.strip().lower()
    names = [name]
    for prefix in ("models/", f"{provider}/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            names.append(name)
    if provider == "bedrock":
        if name.startswith("arn:"):
            name = name.rsplit("/", 1)[-1]
            names.append(name)
        for geography in _BEDROCK_GEOGRAPHIES:
            if name.startswith(geography):
                names.append(name[len(geography):])
                break
    return names


@functools.lru_cache(maxsize=1)
def default_table() -> PriceTable:
    """The table shipped with Tollgate (``tollgate/pricing/prices.json``), loaded once."""
    text = resources.files(__package__).joinpath("prices.json").read_text(encoding="utf-8")
    return PriceTable.from_document(json.loads(text, parse_float=Decimal))

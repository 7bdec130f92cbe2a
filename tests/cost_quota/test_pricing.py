"""The pricing table, price resolution, exact integer costs, and the table's regeneration script."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
from decimal import Decimal
from fractions import Fraction
from importlib import resources
from types import SimpleNamespace

import pytest

import tollgate.pricing as pricing
from tollgate.pricing import (
    Price,
    cost_numerator,
    default_table,
    format_money,
    micros,
    resolve_price,
    to_micros,
    worst_case_numerator,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROVIDERS = ("openai", "azure", "anthropic", "cohere", "mistral", "gemini", "bedrock")


def document() -> dict:
    return json.loads(resources.files(pricing).joinpath("prices.json").read_text(), parse_float=Decimal)


def usage(prompt: int = 0, completion: int = 0, cached: int = 0, reasoning: int = 0, **extra: int) -> SimpleNamespace:
    return SimpleNamespace(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached,
                           reasoning_tokens=reasoning, **extra)


# ----------------------------------------------------------------------------------------------------- the table


def test_the_table_covers_every_provider_the_proxy_speaks_with_dated_sourced_exact_prices():
    doc = document()
    assert doc["currency"] == "USD" and doc["unit"] == "per_1m_tokens"
    assert "litellm" in doc["about"]["derived_from"] and "MIT" in doc["about"]["derived_from"]
    assert doc["aliases"] == {"azure": "openai"}
    for provider in PROVIDERS:
        assert doc["providers"][provider], provider
    assert sum(len(models) for models in doc["providers"].values()) > 400
    for provider, models in doc["providers"].items():
        for model, entry in models.items():
            dt.date.fromisoformat(entry["as_of"])
            assert entry["source"].startswith("https://"), (provider, model)
            for field in ("input", "output", "cached_input", "reasoning"):
                value = entry[field]
                assert value >= 0, (provider, model, field)
                # Exact at the table's resolution: a micro-unit per 1M tokens.
                assert Decimal(to_micros(value)) / 1_000_000 == value, (provider, model, field)


@pytest.mark.parametrize("provider, model", [
    ("openai", "gpt-4o-mini"), ("openai", "gpt-5"), ("openai", "o3"), ("openai", "text-embedding-3-small"),
    ("azure", "gpt-4o"), ("azure", "gpt-35-turbo"), ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-haiku-4-5"), ("cohere", "command-a-03-2025"), ("cohere", "embed-english-v3.0"),
    ("mistral", "mistral-large-latest"), ("mistral", "mistral-small-latest"), ("gemini", "gemini-2.5-pro"),
    ("gemini", "gemini-2.5-flash"), ("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ("bedrock", "amazon.nova-pro-v1:0"), ("bedrock", "meta.llama3-3-70b-instruct-v1:0"),
])
def test_current_models_are_priced(provider, model):
    price = default_table().lookup(provider, model)
    assert price is not None and price.input > 0 and price.origin == "table" and price.as_of and price.source


def test_known_prices_in_micro_units_per_million_tokens():
    price = default_table().lookup("openai", "gpt-4o-mini")
    assert (price.input, price.output, price.cached_input, price.reasoning) == (150_000, 600_000, 75_000, 600_000)
    claude = default_table().lookup("anthropic", "claude-sonnet-4-5")
    assert (claude.input, claude.cached_input, claude.cache_write_input, claude.output) == (
        3_000_000, 300_000, 3_750_000, 15_000_000)


def test_lookup_names():
    table = default_table()
    openai_price = table.lookup("openai", "gpt-4o-mini")
    assert table.lookup("azure", "gpt-4o-mini") == openai_price  # Azure OpenAI is priced as OpenAI
    assert table.lookup("openai", "GPT-4o-Mini") == openai_price
    assert table.lookup("openai", "openai/gpt-4o-mini") == openai_price
    assert table.lookup("gemini", "models/gemini-2.5-flash") == table.lookup("gemini", "gemini-2.5-flash")
    base = table.lookup("bedrock", "amazon.nova-pro-v1:0")
    assert table.lookup("bedrock", "ca.amazon.nova-pro-v1:0") == base  # a geography without its own price
    assert table.lookup("bedrock", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
                                   "ca.amazon.nova-pro-v1:0") == base
    # A geography with its own (regional) price keeps it.
    regional = table.lookup("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert regional is not None and regional.input > table.lookup(
        "bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0").input
    assert table.lookup("openai", "no-such-model") is None
    assert table.lookup("openai-compatible", "llama3") is None
    assert table.lookup(None, "gpt-4o") is None and table.lookup("openai", None) is None


def test_resolution_order_proxy_then_config_then_table():
    table_price = resolve_price("openai", "gpt-4o-mini")
    assert table_price.origin == "table"
    overrides = {"gpt-4o-mini": {"input": 1, "output": 2}, "openai/gpt-4o": {"input": 3, "output": 4,
                                                                              "cached_input": 0.5}}
    config = resolve_price("openai", "gpt-4o-mini", overrides=overrides)
    assert (config.origin, config.input, config.output, config.cached_input, config.reasoning) == (
        "config", 1_000_000, 2_000_000, 1_000_000, 2_000_000)
    assert resolve_price("openai", "gpt-4o", overrides=overrides).cached_input == 500_000
    assert resolve_price("azure", "gpt-4o", overrides=overrides).origin == "table"  # keyed for openai only
    proxy = resolve_price("openai", "gpt-4o-mini", overrides=overrides, proxy_options={"input_cost": 0.25})
    assert (proxy.origin, proxy.input, proxy.output) == ("proxy", 250_000, 2_000_000)
    # An unknown model is priced only when the proxy gives both prices.
    assert resolve_price("openai-compatible", "llama3", proxy_options={"input_cost": 1}) is None
    both = resolve_price("openai-compatible", "llama3", proxy_options={"input_cost": 1, "output_cost": 2.5})
    assert (both.input, both.output, both.cached_input, both.reasoning) == (1_000_000, 2_500_000, 1_000_000,
                                                                           2_500_000)


# ----------------------------------------------------------------------------------------------------------- cost


def test_exact_cost_with_cached_and_reasoning_tokens():
    price = Price.from_mapping({"input": 2.5, "output": 10, "cached_input": 1.25, "reasoning": 12}, "config")
    n = cost_numerator(price, usage(prompt=1000, completion=500, cached=400, reasoning=200))
    # 600 x 2.5 + 400 x 1.25 + 300 x 10 + 200 x 12 micro-USD
    assert n == (600 * 2_500_000 + 400 * 1_250_000 + 300 * 10_000_000 + 200 * 12_000_000)
    assert micros(n) == 1500 + 500 + 3000 + 2400
    assert micros(n, Fraction(9, 10)) == 6660  # in a currency worth 0.9 per USD


def test_cost_rounds_up_to_the_micro_unit_once_per_request():
    price = Price.from_mapping({"input": 0.15, "output": 0.6}, "config")
    assert micros(cost_numerator(price, usage(prompt=1))) == 1  # 0.15 micro-USD is charged as 1
    assert micros(cost_numerator(price, usage(prompt=20))) == 3
    assert micros(cost_numerator(price, usage(prompt=7, completion=3))) == 3  # 1.05 + 1.8 = 2.85 -> 3


def test_cost_of_cache_writes_and_odd_usage():
    price = Price.from_mapping({"input": 3, "output": 15, "cached_input": 0.3, "cache_write_input": 3.75},
                               "config")
    n = cost_numerator(price, usage(prompt=1000, cached=500, cache_write_tokens=300, completion=10))
    assert micros(n) == 200 * 3 + 150 + 1125 + 150
    # Counts a provider reports inconsistently are clamped, never priced twice or negatively.
    assert cost_numerator(price, usage(prompt=10, cached=50, completion=5, reasoning=9)) == \
        10 * 300_000 + 5 * 15_000_000


def test_worst_case():
    price = Price.from_mapping({"input": 0.15, "output": 0.6, "cached_input": 0.075}, "config")
    assert micros(worst_case_numerator(price, 100, 1000)) == 15 + 600
    dearer_reasoning = Price.from_mapping({"input": 1, "output": 2, "reasoning": 5}, "config")
    assert micros(worst_case_numerator(dearer_reasoning, 0, 10)) == 50


def test_money():
    assert to_micros(0.01) == 10_000 and to_micros("5000") == 5_000_000_000 and to_micros(0.1 + 0.2) == 300_000
    assert to_micros(Decimal("0.0000005")) == 1  # half a micro-unit rounds up
    assert format_money(10_000) == "0.01" and format_money(1_234_567) == "1.234567"
    assert format_money(5_000_000) == "5.00" and format_money(0) == "0.00" and format_money(-5) == "-0.000005"
    with pytest.raises(TypeError):
        to_micros(True)
    with pytest.raises(ValueError):
        to_micros(float("inf"))


# ------------------------------------------------------------------------------------------ the regeneration script


def load_script():
    spec = importlib.util.spec_from_file_location("regenerate_prices", os.path.join(ROOT, "scripts",
                                                                                   "regenerate_prices.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regeneration_from_litellm_style_data():
    script = load_script()
    data = {
        "sample_spec": {"litellm_provider": "one of ..."},
        "gpt-new": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06,
                    "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 1.25e-06,
                    "source": "https://example.com/openai-prices"},
        "gpt-old": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-06,
                    "output_cost_per_token": 2e-06, "deprecation_date": "2026-01-01"},
        "ft:gpt-new": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-06,
                       "output_cost_per_token": 2e-06},
        "dall-e-9": {"litellm_provider": "openai", "mode": "image_generation", "input_cost_per_token": 1e-06},
        "azure/gpt-new": {"litellm_provider": "azure", "mode": "chat", "input_cost_per_token": 9e-06,
                          "output_cost_per_token": 9e-06},
        "azure/gpt-35-turbo": {"litellm_provider": "azure", "mode": "chat", "input_cost_per_token": 5e-07,
                               "output_cost_per_token": 1.5e-06},
        "azure/eu/gpt-new": {"litellm_provider": "azure", "mode": "chat", "input_cost_per_token": 1e-06,
                             "output_cost_per_token": 2e-06},
        "mistral/mistral-large-latest": {"litellm_provider": "mistral", "mode": "chat",
                                         "input_cost_per_token": 2e-06, "output_cost_per_token": 6e-06},
        "claude-x": {"litellm_provider": "anthropic", "mode": "chat", "input_cost_per_token": 3e-06,
                     "output_cost_per_token": 1.5e-05, "cache_read_input_token_cost": 3e-07,
                     "cache_creation_input_token_cost": 3.75e-06},
        "o-think": {"litellm_provider": "openai", "mode": "responses", "input_cost_per_token": 1e-06,
                    "output_cost_per_token": 4e-06, "output_cost_per_reasoning_token": 8e-06},
        "text-embedding-z": {"litellm_provider": "openai", "mode": "embedding", "input_cost_per_token": 2e-08},
    }
    table = script.build(data, "2026-06-01", "9.9.9")
    openai_models = table["providers"]["openai"]
    assert set(openai_models) == {"gpt-new", "o-think", "text-embedding-z"}
    assert openai_models["gpt-new"] == {"input": 2.5, "output": 10, "cached_input": 1.25, "reasoning": 10,
                                        "mode": "chat", "as_of": "2026-06-01",
                                        "source": "https://example.com/openai-prices"}
    assert openai_models["o-think"]["reasoning"] == 8
    assert openai_models["text-embedding-z"]["input"] == 0.02 and openai_models["text-embedding-z"]["output"] == 0
    assert set(table["providers"]["azure"]) == {"gpt-35-turbo"}  # the rest is priced as OpenAI
    assert table["providers"]["mistral"]["mistral-large-latest"]["source"] == script.PRICE_PAGES["mistral"]
    assert table["providers"]["anthropic"]["claude-x"]["cache_write_input"] == 3.75
    assert "9.9.9" in table["about"]["derived_from"]
    loaded = pricing.PriceTable.from_document(json.loads(json.dumps(table), parse_float=Decimal))
    assert loaded.lookup("azure", "gpt-new").input == 2_500_000

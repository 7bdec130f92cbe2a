"""Regenerate Tollgate's pricing table (plugins/tollgate/pricing/prices.json) from published price data.

    python scripts/regenerate_prices.py                      # pip-downloads the litellm wheel named below
    python scripts/regenerate_prices.py --litellm-version 1.110.2 --as-of 2026-11-25
    python scripts/regenerate_prices.py --source model_prices_and_context_window_backup.json

The prices come from ``model_prices_and_context_window_backup.json``, the model price list that BerriAI's
litellm project (MIT License) compiles from the providers' pricing pages and ships in its wheel. Only that data
file is read (prices are facts); no litellm code is used or installed: the wheel is downloaded into a temporary
directory with ``pip download --no-deps`` and the one JSON file is extracted from it.

What is kept: the chat, completion, responses and embedding models of the providers tollgate-proxy speaks
(openai, azure, anthropic, cohere, mistral, gemini, bedrock), minus models whose deprecation date has passed
on ``--as-of``. Prices become USD per 1M tokens (input, output, cached_input, reasoning, and cache_write_input
where the provider charges prompt-cache writes apart), exact to the micro-dollar per 1M tokens. Azure
OpenAI is priced as OpenAI (the table says so with an alias); only Azure's own names (gpt-35-turbo...) get
entries of their own. Long-context tiers (prices above 200k/272k prompt tokens), batch, flex and priority
prices are not carried over: the table holds the standard on-demand price.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from decimal import Decimal
from typing import Any

DEFAULT_LITELLM_VERSION = "1.110.2"
DATA_FILE = "litellm/model_prices_and_context_window_backup.json"
OUTPUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "plugins", "tollgate", "pricing", "prices.json")

MODES = {"chat", "completion", "responses", "embedding"}

# Tollgate provider -> (litellm provider names in order of preference, name prefixes to strip)
PROVIDERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "openai": (("openai", "text-completion-openai"), ("openai/",)),
    "azure": (("azure", "azure_text"), ("azure/",)),
    "anthropic": (("anthropic",), ("anthropic/",)),
    "cohere": (("cohere_chat", "cohere"), ("cohere/", "cohere_chat/")),
    "mistral": (("mistral",), ("mistral/",)),
    "gemini": (("gemini", "vertex_ai-language-models", "vertex_ai-embedding-models"),
               ("gemini/", "vertex_ai/")),
    "bedrock": (("bedrock_converse", "bedrock"), ("bedrock/", "converse/")),
}

# Where each provider publishes its prices (used when an entry names no page of its own).
PRICE_PAGES = {
    "openai": "https://openai.com/api/pricing/",
    "azure": "https://azure.microsoft.com/en-us/pricing/details/cognitive-services/openai-service/",
    "anthropic": "https://www.anthropic.com/pricing#api",
    "cohere": "https://cohere.com/pricing",
    "mistral": "https://mistral.ai/pricing#api-pricing",
    "gemini": "https://ai.google.dev/gemini-api/docs/pricing",
    "bedrock": "https://aws.amazon.com/bedrock/pricing/",
}

MILLION = Decimal(1_000_000)


def per_million(value: Any) -> Decimal | None:
    """A per-token USD price as USD per 1M tokens, exact to 1e-6 (the table's resolution)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    price = Decimal(repr(value) if isinstance(value, float) else str(value)) * MILLION
    rounded = price.quantize(Decimal("0.000001"))
    if rounded != price and abs(rounded - price) > Decimal("0.0000005"):
        print(f"warning: {value} per token rounds to {rounded} per 1M", file=sys.stderr)
    return rounded.normalize() if rounded else Decimal(0)


def number(value: Decimal) -> int | float:
    """JSON number for a price: ints stay ints, others print with their shortest exact decimal."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def entry_of(spec: dict[str, Any], provider: str, as_of: str) -> dict[str, Any] | None:
    if spec.get("mode") not in MODES:
        return None
    deprecated = spec.get("deprecation_date")
    if isinstance(deprecated, str) and deprecated[:10] < as_of:
        return None
    input_price = per_million(spec.get("input_cost_per_token"))
    if input_price is None:
        return None
    output_price = per_million(spec.get("output_cost_per_token"))
    if output_price is None:
        if spec.get("mode") != "embedding":
            return None
        output_price = Decimal(0)
    cached = per_million(spec.get("cache_read_input_token_cost"))
    reasoning = per_million(spec.get("output_cost_per_reasoning_token"))
    cache_write = per_million(spec.get("cache_creation_input_token_cost"))
    source = spec.get("source")
    if not (isinstance(source, str) and source.startswith("https://")) or "subscriptions/" in source:
        source = PRICE_PAGES[provider]
    entry: dict[str, Any] = {
        "input": number(input_price),
        "output": number(output_price),
        "cached_input": number(cached if cached is not None else input_price),
        "reasoning": number(reasoning if reasoning is not None else output_price),
    }
    if cache_write is not None and cache_write != input_price:
        entry["cache_write_input"] = number(cache_write)
    entry["mode"] = spec["mode"]
    entry["as_of"] = as_of
    entry["source"] = source
    return entry


def model_name(key: str, prefixes: tuple[str, ...]) -> str | None:
    for prefix in prefixes:
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    if "/" in key or key.startswith("ft:") or not key:
        return None  # region- or deployment-specific variants, fine-tune templates
    return key.lower()


def build(data: dict[str, Any], as_of: str, version: str) -> dict[str, Any]:
    providers: dict[str, dict[str, Any]] = {}
    for provider, (sources, prefixes) in PROVIDERS.items():
        table: dict[str, Any] = {}
        for source in sources:  # earlier sources win
            for key, spec in data.items():
                if not isinstance(spec, dict) or spec.get("litellm_provider") != source:
                    continue
                name = model_name(key, prefixes)
                if name is None or name in table:
                    continue
                entry = entry_of(spec, provider, as_of)
                if entry is not None:
                    table[name] = entry
        providers[provider] = dict(sorted(table.items()))
    # Azure OpenAI is priced as OpenAI; keep only Azure's own names.
    providers["azure"] = {name: e for name, e in providers["azure"].items() if name not in providers["openai"]}
    return {
        "about": {
            "description": "Tollgate's model prices: USD per 1M tokens, standard on-demand tier.",
            "fields": {
                "input": "uncached prompt tokens", "output": "completion tokens",
                "cached_input": "prompt tokens read from the provider's prompt cache",
                "reasoning": "reasoning/thinking tokens (equal to output where the provider does not price them apart)",
                "cache_write_input": "prompt tokens written to the prompt cache, where priced apart from input",
                "as_of": "date the price was taken from the source data", "source": "the provider's price page",
            },
            "derived_from": f"model_prices_and_context_window_backup.json of litellm {version} "
                            "(https://github.com/BerriAI/litellm, MIT License, Copyright (c) 2023 Berri AI), "
                            "which compiles the providers' published prices",
            "generated_by": "scripts/regenerate_prices.py",
            "as_of": as_of,
        },
        "currency": "USD",
        "unit": "per_1m_tokens",
        "aliases": {"azure": "openai"},
        "providers": providers,
    }


def download(version: str, workdir: str) -> str:
    subprocess.run([sys.executable, "-m", "pip", "download", f"litellm=={version}", "--no-deps", "--only-binary",
                    ":all:", "-d", workdir, "-q"], check=True)
    wheel = next(os.path.join(workdir, f) for f in os.listdir(workdir) if f.endswith(".whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(DATA_FILE, workdir)
    return os.path.join(workdir, DATA_FILE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", help="a model_prices_and_context_window_backup.json already on disk")
    parser.add_argument("--litellm-version", default=DEFAULT_LITELLM_VERSION)
    parser.add_argument("--as-of", default=dt.date.today().isoformat(), help="date of the prices (YYYY-MM-DD)")
    parser.add_argument("--output", default=OUTPUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        path = args.source or download(args.litellm_version, workdir)
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    table = build(data, args.as_of, args.litellm_version)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1, ensure_ascii=False)
        f.write("\n")
    counts = {name: len(models) for name, models in table["providers"].items()}
    print(f"wrote {args.output}: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What Codex usage costs: a small per-model price table and the cost formula.

Codex reports tokens, never dollars, so corral prices them itself. Prices are
USD per one million tokens, split three ways as OpenAI bills them:

* ``input`` — input tokens not served from the prompt cache,
* ``cached_input`` — input tokens served from the prompt cache,
* ``output`` — output tokens, reasoning tokens included (OpenAI counts
  reasoning inside ``output_tokens`` and bills it at the output rate).

The built-in table holds OpenAI's published list prices for the models Codex
commonly runs, as known when this table was written; they change, and newer
models are missing. The operator overrides or extends it with
``provider_settings.codex.config.prices``::

    {"gpt-5.5": {"input": 1.25, "cached_input": 0.125, "output": 10.0}}

A model is looked up exactly, then without a dated snapshot suffix
(``gpt-5-2025-08-07`` → ``gpt-5``). A model found nowhere costs 0 and
:func:`price_usage` says so in its note, so the session can tell the user why
the cost stays at $0 and how to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BUILTIN_PRICES",
    "Price",
    "TokenCounts",
    "find_price",
    "parse_prices",
    "price_usage",
]


@dataclass(frozen=True)
class Price:
    """USD per one million tokens."""

    input: float
    cached_input: float
    output: float


@dataclass(frozen=True)
class TokenCounts:
    """Token counts in OpenAI semantics: ``cached_input`` ⊂ ``input`` and
    ``reasoning_output`` ⊂ ``output``."""

    input: int = 0
    cached_input: int = 0
    output: int = 0
    reasoning_output: int = 0


#: OpenAI list prices (USD per 1M tokens: input, cached input, output).
BUILTIN_PRICES: dict[str, Price] = {
    "gpt-5": Price(1.25, 0.125, 10.00),
    "gpt-5-codex": Price(1.25, 0.125, 10.00),
    "gpt-5-mini": Price(0.25, 0.025, 2.00),
    "gpt-5-nano": Price(0.05, 0.005, 0.40),
    "gpt-5.1": Price(1.25, 0.125, 10.00),
    "gpt-5.1-codex": Price(1.25, 0.125, 10.00),
    "gpt-5.1-codex-max": Price(1.25, 0.125, 10.00),
    "gpt-5.1-codex-mini": Price(0.25, 0.025, 2.00),
    "gpt-5.2": Price(1.75, 0.175, 14.00),
    "gpt-5.2-codex": Price(1.75, 0.175, 14.00),
    "gpt-4.1": Price(2.00, 0.50, 8.00),
    "gpt-4.1-mini": Price(0.40, 0.10, 1.60),
    "o3": Price(2.00, 0.50, 8.00),
    "o4-mini": Price(1.10, 0.275, 4.40),
    "codex-mini-latest": Price(1.50, 0.375, 6.00),
}

_SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")
_PRICE_KEYS = ("input", "cached_input", "output")


def _rate(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    rate = float(value)
    if rate != rate or rate < 0 or rate == float("inf"):
        return None
    return rate


def parse_prices(raw: object) -> dict[str, Price]:
    """The operator's ``prices`` setting as a table; raises ValueError when malformed.

    Each entry needs ``input`` and ``output``; ``cached_input`` defaults to
    ``input`` (no cache discount) when absent.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("prices must map model names to {input, cached_input, output}")
    table: dict[str, Price] = {}
    for model, entry in raw.items():
        if not isinstance(model, str) or not model:
            raise ValueError("prices: model names must be non-empty strings")
        if not isinstance(entry, dict):
            raise ValueError(f"prices.{model}: must be an object")
        unknown = set(entry) - set(_PRICE_KEYS)
        if unknown:
            raise ValueError(f"prices.{model}: unknown key {sorted(unknown)[0]!r}")
        rates = {key: _rate(entry.get(key)) for key in _PRICE_KEYS if key in entry}
        for key, rate in rates.items():
            if rate is None:
                raise ValueError(f"prices.{model}.{key}: must be a number >= 0")
        if "input" not in rates or "output" not in rates:
            raise ValueError(f"prices.{model}: needs input and output")
        table[model] = Price(
            input=rates["input"] or 0.0,
            cached_input=rates.get("cached_input", rates["input"]) or 0.0,
            output=rates["output"] or 0.0,
        )
    return table


def find_price(model: str | None, overrides: Mapping[str, Price] | None = None) -> Price | None:
    """The price of ``model``: the operator's table first, then the built-in one."""
    if not model:
        return None
    tables = [overrides or {}, BUILTIN_PRICES]
    candidates = [model]
    base = _SNAPSHOT_SUFFIX.sub("", model)
    if base != model:
        candidates.append(base)
    for table in tables:
        for name in candidates:
            found = table.get(name)
            if found is not None:
                return found
    return None


def price_usage(
    model: str | None, tokens: TokenCounts, overrides: Mapping[str, Price] | None = None
) -> tuple[float, str | None]:
    """(cost in USD, note). The note is set when the model has no known price."""
    price = find_price(model, overrides)
    if price is None:
        shown = model or "(unknown model)"
        return 0.0, (
            f"No price is known for Codex model {shown}; its cost shows as $0. "
            "Set provider_settings.codex.config.prices to price it."
        )
    cached = max(0, min(tokens.cached_input, tokens.input))
    uncached = max(0, tokens.input - cached)
    cost = (
        uncached * price.input + cached * price.cached_input + max(0, tokens.output) * price.output
    ) / 1_000_000
    return round(cost, 10), None


def describe(table: Mapping[str, Price]) -> dict[str, Any]:
    """A JSON-able view of a price table (for docs and diagnostics)."""
    return {
        model: {"input": p.input, "cached_input": p.cached_input, "output": p.output}
        for model, p in sorted(table.items())
    }

"""Context limits: how many tokens of context each model takes, for Health's ``contextLimit``.

:func:`context_limit` looks a model name up in the operator's overrides
(``provider_settings.<provider>.config.contextLimits``, read with
:func:`overrides_from`), then in :data:`MODELS`, then takes the window the
provider reported, else :data:`DEFAULT_LIMIT`.

Lookup rules, in order, case-insensitive: the exact name; the name without a
namespace (``library/``, ``openai/``), a Bedrock prefix (``us.anthropic.``), a
Vertex ``@snapshot``, a Bedrock ``-v1:0``, an ollama ``:tag`` (``llama3.1:8b``)
and snapshot suffixes (``-20250514``, ``-2024-08-06``, ``-latest``); then the
longest table key that is a prefix of one of those names and ends at a ``-``,
``.``, ``:`` or ``_`` of it (``claude-sonnet-4-5`` is found by
``claude-sonnet-4``, ``gpt-5.1-codex`` by ``gpt-5``, never ``o3x`` by ``o3``).
A Claude Code name ending in ``[1m]`` (``sonnet[1m]``) has 1,000,000 tokens.

The ollama figures are what the models were trained for; an ollama server runs
a model with its own ``num_ctx``, often smaller: set ``contextLimits`` to match.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["DEFAULT_LIMIT", "MODELS", "context_limit", "overrides_from"]

DEFAULT_LIMIT = 200_000
"""The context limit of a model nobody knows."""

ONE_MILLION = 1_000_000

MODELS: dict[str, int] = {
    # Anthropic (Claude Code also takes the aliases)
    "claude": 200_000,
    "opus": 200_000,
    "sonnet": 200_000,
    "haiku": 200_000,
    "opusplan": 200_000,
    "claude-opus-4": 200_000,
    "claude-sonnet-4": 200_000,
    "claude-haiku-4": 200_000,
    "claude-3-7-sonnet": 200_000,
    "claude-3-5-sonnet": 200_000,
    "claude-3-5-haiku": 200_000,
    "claude-3-opus": 200_000,
    "claude-3-haiku": 200_000,
    # OpenAI; the gpt-5 family as Codex counts it (input tokens)
    "gpt-5": 272_000,
    "codex-mini": 200_000,
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "o1": 200_000,
    "o1-mini": 128_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "gpt-oss": 131_072,
    # common ollama models
    "llama2": 4_096,
    "llama3": 8_192,
    "llama3.1": 131_072,
    "llama3.2": 131_072,
    "llama3.3": 131_072,
    "codellama": 16_384,
    "mistral": 32_768,
    "mistral-nemo": 131_072,
    "mixtral": 32_768,
    "devstral": 131_072,
    "qwen2.5": 32_768,
    "qwen2.5-coder": 32_768,
    "qwen3": 40_960,
    "qwen3-coder": 262_144,
    "gemma2": 8_192,
    "gemma3": 131_072,
    "phi4": 16_384,
    "deepseek-r1": 131_072,
    "deepseek-coder": 16_384,
    "deepseek-coder-v2": 163_840,
    "starcoder2": 16_384,
}
"""Known context limits in tokens, by model name or name prefix (lower case)."""

_BEDROCK_PREFIX = re.compile(r"^(?:[a-z]{2}\.)?anthropic\.")
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$")
_SNAPSHOT = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2}|latest|preview)$")
_BOUNDARY = "-.:_"


def _candidates(model: str) -> list[str]:
    name = model.strip().lower()
    out = [name]
    base = _BEDROCK_PREFIX.sub("", name.rsplit("/", 1)[-1]).split("@", 1)[0]
    out.append(base)
    base = _BEDROCK_VERSION.sub("", base)
    out.append(base)
    base = base.split(":", 1)[0]
    out.append(base)
    while (shorter := _SNAPSHOT.sub("", base)) != base:
        base = shorter
        out.append(base)
    return list(dict.fromkeys(c for c in out if c))


def _lookup(model: str, table: Mapping[str, int]) -> int | None:
    candidates = _candidates(model)
    for name in candidates:
        if name in table:
            return table[name]
    best: tuple[int, int] | None = None
    for name in candidates:
        for key, limit in table.items():
            if (
                len(key) < len(name)
                and name.startswith(key)
                and name[len(key)] in _BOUNDARY
                and (best is None or len(key) > best[0])
            ):
                best = (len(key), limit)
    return best[1] if best is not None else None


def context_limit(
    model: str | None,
    overrides: Mapping[str, int] | None = None,
    reported: int | None = None,
) -> int:
    """The context limit of ``model``: overrides, the table, the provider's report, the default."""
    if model:
        if overrides:
            hit = _lookup(model, {k.lower(): v for k, v in overrides.items()})
            if hit is not None:
                return hit
        if model.strip().lower().endswith("[1m]"):
            return ONE_MILLION
        hit = _lookup(model, MODELS)
        if hit is not None:
            return hit
    if isinstance(reported, int) and not isinstance(reported, bool) and reported > 0:
        return reported
    return DEFAULT_LIMIT


def overrides_from(config: Mapping[str, object] | None) -> dict[str, int]:
    """``contextLimits`` of a provider's ``config`` (model name -> tokens); bad entries dropped."""
    raw = (config or {}).get("contextLimits")
    if not isinstance(raw, Mapping):
        return {}
    return {
        str(name): value
        for name, value in raw.items()
        if isinstance(name, str)
        and name.strip()
        and isinstance(value, int)
        and not isinstance(value, bool)
        and value > 0
    }

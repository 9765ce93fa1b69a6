"""Tests of actors/context_limits.py: the table, the lookup rules and overrides."""

from __future__ import annotations

import pytest

from corral.actors.context_limits import DEFAULT_LIMIT, MODELS, context_limit, overrides_from


@pytest.mark.parametrize(
    ("model", "limit"),
    [
        # Claude: names, snapshots, aliases, cloud spellings, the 1M variant
        ("claude-sonnet-4-5", 200_000),
        ("claude-sonnet-4-5-20250929", 200_000),
        ("claude-opus-4-1-20250805", 200_000),
        ("claude-3-5-haiku-latest", 200_000),
        ("Claude-Sonnet-4-5", 200_000),
        ("sonnet", 200_000),
        ("opus", 200_000),
        ("claude-3-5-sonnet@20240620", 200_000),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", 200_000),
        ("claude-sonnet-4-5[1m]", 1_000_000),
        ("sonnet[1m]", 1_000_000),
        # OpenAI / Codex
        ("gpt-5.5", 272_000),
        ("gpt-5-codex", 272_000),
        ("gpt-5.1-codex-max", 272_000),
        ("gpt-4.1-mini", 1_047_576),
        ("gpt-4o-2024-08-06", 128_000),
        ("gpt-4o-mini", 128_000),
        ("gpt-4", 8_192),
        ("o3", 200_000),
        ("o3-mini", 200_000),
        ("o1-mini", 128_000),
        ("openai/gpt-oss-20b", 131_072),
        # ollama: tags and namespaces
        ("llama3.1:8b", 131_072),
        ("llama3:latest", 8_192),
        ("library/llama3.2", 131_072),
        ("qwen2.5-coder:7b", 32_768),
        ("qwen3-coder:30b", 262_144),
        ("gpt-oss:20b", 131_072),
        ("deepseek-coder-v2:16b", 163_840),
        ("deepseek-coder:6.7b", 16_384),
        ("gemma3:4b", 131_072),
    ],
)
def test_known_models(model: str, limit: int) -> None:
    assert context_limit(model) == limit


@pytest.mark.parametrize("model", ["mock-1", "my-fake-model-x", "o3x", "gpt-4x", "", None, "llama"])
def test_unknown_models_get_the_default(model: str | None) -> None:
    assert DEFAULT_LIMIT == 200_000
    assert context_limit(model) == DEFAULT_LIMIT


def test_prefix_needs_a_boundary_and_prefers_the_longest_key() -> None:
    assert "gpt-4" in MODELS and "gpt-4o" in MODELS
    assert context_limit("gpt-4o") == MODELS["gpt-4o"] != MODELS["gpt-4"]
    assert context_limit("gpt-4-0613") == MODELS["gpt-4"]
    assert context_limit("deepseek-coder-v2-lite") == MODELS["deepseek-coder-v2"]


def test_reported_window_for_unknown_models_only() -> None:
    assert context_limit("my-model", reported=32_000) == 32_000
    assert context_limit(None, reported=32_000) == 32_000
    assert context_limit("gpt-5.5", reported=1_000) == 272_000
    assert context_limit("my-model", reported=0) == DEFAULT_LIMIT
    assert context_limit("my-model", reported=True) == DEFAULT_LIMIT


def test_overrides_win() -> None:
    overrides = {"llama3.1": 8_192, "My-Local": 4_096, "claude-sonnet-4": 1_000_000}
    assert context_limit("llama3.1:70b", overrides) == 8_192
    assert context_limit("my-local:q4", overrides) == 4_096
    assert context_limit("claude-sonnet-4-5-20250929", overrides) == 1_000_000
    assert context_limit("claude-opus-4-1", overrides) == 200_000
    assert context_limit("llama3.2", overrides) == 131_072


def test_overrides_from_provider_config() -> None:
    config = {
        "contextLimits": {"a": 1000, "b": 0, "c": -5, "d": True, "e": "9", "": 10, "f": 2.5},
        "bin": "x",
    }
    assert overrides_from(config) == {"a": 1000}
    assert overrides_from({"contextLimits": [1, 2]}) == {}
    assert overrides_from({}) == {}
    assert overrides_from(None) == {}

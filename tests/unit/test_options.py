"""Start option resolution (the seed's defaults) and the extraEnv filter."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from corral.actors.options import filter_env, resolve
from corral.actors.settings import DEFAULTS, Settings
from corral.protocol.errors import InvalidParams


def settings(**overrides: str) -> Settings:
    values = dict(DEFAULTS)
    values.update(overrides)
    return Settings(values)


def test_missing_options_come_from_settings(tmp_path: Path) -> None:
    s = settings(
        permission_mode="acceptEdits",
        system_prompt_template="Be brief.",
        default_cwd=str(tmp_path),
        provider_settings=orjson.dumps({"claude": {"defaultModel": "claude-x"}}).decode(),
    )
    options, dropped = resolve({"provider": "claude", "prompt": "p", "projectId": "a"}, s)
    assert options == {
        "permissionMode": "acceptEdits",
        "systemPrompt": "Be brief.",
        "cwd": str(tmp_path),
        "model": "claude-x",
        "extraEnv": {},
    }
    assert dropped == []


def test_explicit_options_win(tmp_path: Path) -> None:
    s = settings(permission_mode="plan", system_prompt_template="T", default_cwd="/")
    params = {
        "provider": "mock",
        "prompt": "p",
        "projectId": "a",
        "cwd": str(tmp_path),
        "model": "m",
        "systemPrompt": "mine",
        "permissionMode": "default",
        "maxTurns": 3,
    }
    options, _ = resolve(params, s)
    assert options["cwd"] == str(tmp_path) and options["model"] == "m"
    assert options["systemPrompt"] == "mine" and options["permissionMode"] == "default"
    assert options["maxTurns"] == 3
    assert "prompt" not in options and "projectId" not in options


def test_cwd_defaults_to_home_and_must_exist(tmp_path: Path) -> None:
    options, _ = resolve({"provider": "mock", "prompt": "p", "projectId": "a"}, settings())
    assert options["cwd"] == os.path.expanduser("~")
    assert "model" not in options and "systemPrompt" not in options
    for bad in ("relative/dir", str(tmp_path / "missing")):
        with pytest.raises(InvalidParams) as info:
            resolve({"provider": "mock", "prompt": "p", "projectId": "a", "cwd": bad}, settings())
        assert info.value.field == "cwd"


def test_extra_env_filter_drops_provider_keys() -> None:
    kept, dropped = filter_env(
        {
            "ANTHROPIC_API_KEY": "x",
            "ANTHROPIC_BASE_URL": "y",
            "CLAUDE_CONFIG_DIR": "z",
            "CLAUDECODE": "1",
            "CODEX_HOME": "h",
            "OLLAMA_HOST": "o",
            "CLAUDE_CODE_EXPERIMENTAL_FOO": "ok",
            "MY_VAR": "v",
            "ANTHROPICX": "kept",
        }
    )
    assert kept == {"CLAUDE_CODE_EXPERIMENTAL_FOO": "ok", "MY_VAR": "v", "ANTHROPICX": "kept"}
    assert dropped == sorted(
        [
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
            "CLAUDE_CONFIG_DIR",
            "CLAUDECODE",
            "CODEX_HOME",
            "OLLAMA_HOST",
        ]
    )


# The security rules of the extraEnv filter, spelled out: only the
# CLAUDE_CODE_EXPERIMENTAL_ prefix passes among CLAUDE*; a wider allow-list
# (say CLAUDE_CODE_) would let a client switch the CLI's backend or credentials.
REFUSED = [
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_MAX_RETRIES",
    "CLAUDE_CODE_",
    "CLAUDE_CODE_EXPERIMENTAL",
    "CLAUDE_CONFIG_DIR",
    "CLAUDE",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "CODEX_HOME",
    "OLLAMA_HOST",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "NODE_OPTIONS",
    "BASH_ENV",
    "ENV",
]
PASSED = {
    "CLAUDE_CODE_EXPERIMENTAL_AGENT_TEAMS": "1",
    "CLAUDE_CODE_EXPERIMENTAL_": "x",
    "OPENAI_API_KEY": "k",
    "HTTPS_PROXY": "http://127.0.0.1:1",
    "PATH": "/bin",
}


def test_extra_env_security_rules_are_the_documented_ones() -> None:
    kept, dropped = filter_env({**dict.fromkeys(REFUSED, "v"), **PASSED})
    assert dropped == sorted(REFUSED)
    assert kept == PASSED
    for key in REFUSED:
        assert filter_env({key: "v"}) == ({}, [key]), key
    for key in PASSED:
        assert filter_env({key: "v"}) == ({key: "v"}, []), key


def test_resolve_reports_dropped_env() -> None:
    options, dropped = resolve(
        {
            "provider": "mock",
            "prompt": "p",
            "projectId": "a",
            "extraEnv": {"ANTHROPIC_API_KEY": "k", "FOO": "1"},
        },
        settings(),
    )
    assert options["extraEnv"] == {"FOO": "1"} and dropped == ["ANTHROPIC_API_KEY"]


def test_extra_env_filter_drops_loader_and_interpreter_hooks() -> None:
    hooks = {
        "LD_PRELOAD": "/tmp/evil.so",
        "LD_LIBRARY_PATH": "/tmp",
        "LD_AUDIT": "/tmp/audit.so",
        "PYTHONPATH": "/tmp/site",
        "PYTHONSTARTUP": "/tmp/start.py",
        "NODE_OPTIONS": "--require /tmp/x.js",
        "BASH_ENV": "/tmp/rc",
        "ENV": "/tmp/rc",
    }
    kept, dropped = filter_env({**hooks, "LD_PRELOADX": "1", "ENVIRONMENT": "prod", "PATH": "/b"})
    assert dropped == sorted(hooks)
    assert kept == {"LD_PRELOADX": "1", "ENVIRONMENT": "prod", "PATH": "/b"}


def test_resolve_reports_dropped_hooks_with_provider_keys() -> None:
    options, dropped = resolve(
        {
            "provider": "mock",
            "prompt": "p",
            "projectId": "a",
            "extraEnv": {"PYTHONPATH": "/x", "ANTHROPIC_API_KEY": "k", "OK": "1"},
        },
        settings(),
    )
    assert options["extraEnv"] == {"OK": "1"}
    assert dropped == ["ANTHROPIC_API_KEY", "PYTHONPATH"]


@pytest.mark.parametrize("field", ["claudeConfigDir", "additionalDirectories"])
def test_directories_must_be_existing_and_absolute(tmp_path: Path, field: str) -> None:
    def params(value: str) -> dict[str, object]:
        base: dict[str, object] = {"provider": "claude", "prompt": "p", "projectId": "a"}
        base[field] = [str(tmp_path), value] if field == "additionalDirectories" else value
        return base

    options, _ = resolve(params(str(tmp_path)), settings())
    assert options[field]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for bad in ("relative/dir", str(tmp_path / "missing"), str(a_file)):
        with pytest.raises(InvalidParams) as info:
            resolve(params(bad), settings())
        expected = "additionalDirectories.1" if field == "additionalDirectories" else field
        assert info.value.field == expected
        assert "existing absolute directory" in info.value.message

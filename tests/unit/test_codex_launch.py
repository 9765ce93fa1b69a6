"""The codex provider's launch facts, options table and price table."""

from __future__ import annotations

import os
import platform
import stat
from pathlib import Path

import pytest

from corral.protocol.errors import InvalidParams
from corral.supervisor.providers.codex import launch, options, pricing
from corral.supervisor.providers.codex.pricing import Price, TokenCounts

# ------------------------------------------------------------------ binary discovery

_TRIPLES = {
    ("x86_64", "Linux"): ("linux-x64", "x86_64-unknown-linux-musl"),
    ("aarch64", "Linux"): ("linux-arm64", "aarch64-unknown-linux-musl"),
}


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _npm_layout(prefix: Path, nested: bool = False) -> tuple[Path, Path]:
    """A fake ``npm install @openai/codex`` tree: (the .bin link, the native binary)."""
    key = (platform.machine(), platform.system())
    if key not in _TRIPLES:
        pytest.skip(f"no codex platform package for {key}")
    suffix, triple = _TRIPLES[key]
    package = prefix / "node_modules" / "@openai" / "codex"
    wrapper = _executable(package / "bin" / "codex.js", "#!/usr/bin/env node\n")
    base = package if nested else prefix
    native = _executable(
        base / "node_modules" / "@openai" / f"codex-{suffix}" / "vendor" / triple / "bin" / "codex",
        "\x7fELF fake native\n",
    )
    link = prefix / "node_modules" / ".bin" / "codex"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(wrapper, link.parent))
    return link, native


def test_a_wrapper_resolves_to_the_native_binary(tmp_path: Path) -> None:
    link, native = _npm_layout(tmp_path / "local")
    assert launch.native_from_wrapper(str(link)) == str(native)
    found, searched = launch.find_codex_binary(str(link), {})
    assert found == str(native) and searched == [str(link)]
    # a global install nests the platform package inside the wrapper package
    link, native = _npm_layout(tmp_path / "global", nested=True)
    assert launch.find_codex_binary(None, {"PATH": str(link.parent)})[0] == str(native)


def test_a_wrapper_without_its_native_binary_is_kept(tmp_path: Path) -> None:
    wrapper = _executable(tmp_path / "pkg" / "bin" / "codex.js", "#!/usr/bin/env node\n")
    assert launch.native_from_wrapper(str(wrapper)) is None
    assert launch.find_codex_binary(str(wrapper), {})[0] == str(wrapper)


def test_search_order_configured_env_path_fallbacks(tmp_path: Path) -> None:
    configured = _executable(tmp_path / "a" / "codex", "\x7fELF\n")
    from_env = _executable(tmp_path / "b" / "codex", "\x7fELF\n")
    on_path = _executable(tmp_path / "c" / "codex", "\x7fELF\n")
    home = tmp_path / "home"
    fallback = _executable(home / ".local" / "bin" / "codex", "\x7fELF\n")
    env = {"CORRAL_CODEX_BIN": str(from_env), "PATH": str(on_path.parent), "HOME": str(home)}
    assert launch.find_codex_binary(str(configured), env)[0] == str(configured)
    assert launch.find_codex_binary(None, env)[0] == str(from_env)
    assert launch.find_codex_binary(str(tmp_path / "missing"), env)[0] == str(from_env)
    del env["CORRAL_CODEX_BIN"]
    assert launch.find_codex_binary(None, env)[0] == str(on_path)
    env["PATH"] = str(tmp_path / "empty")
    assert launch.find_codex_binary(None, env)[0] == str(fallback)
    fallback.unlink()
    _, searched = launch.find_codex_binary("~/nope", env)
    assert searched[0] == str(home / "nope")
    assert str(home / ".local/bin/codex") in searched


def test_codex_version_is_bounded(tmp_path: Path) -> None:
    good = _executable(tmp_path / "good", "#!/bin/sh\necho 'codex-cli 0.169.0'\n")
    assert launch.codex_version(str(good)) == "codex-cli 0.169.0"
    bad = _executable(tmp_path / "bad", "#!/bin/sh\nexit 3\n")
    assert launch.codex_version(str(bad)) is None
    slow = _executable(tmp_path / "slow", "#!/bin/sh\nexec sleep 5\n")
    assert launch.codex_version(str(slow), timeout=0.2) is None
    assert launch.codex_version(str(tmp_path / "missing")) is None


def test_argv_and_env_layers() -> None:
    assert launch.build_argv("/x/codex") == ["/x/codex", "app-server"]
    env = launch.build_env(
        {"PATH": "/bin", "CODEX_SANDBOX": "seatbelt", "CODEX_HOME": "/daemon", "A": "base"},
        {"OPENAI_API_KEY": "k", "A": "operator"},
        {"A": "client", "CODEX_HOME": "/client"},
        "/corral/home",
    )
    assert env == {
        "PATH": "/bin",
        "OPENAI_API_KEY": "k",
        "A": "client",
        "CODEX_HOME": "/corral/home",
    }


def test_codex_home_is_corral_owned_unless_configured(tmp_path: Path) -> None:
    state = tmp_path / "providers" / "codex"
    assert launch.resolve_codex_home({}, state, {}) == (state / "home", True)
    configured = {"codexHome": "~/.codex"}
    assert launch.resolve_codex_home(configured, state, {"HOME": "/h"}) == (
        Path("/h/.codex"),
        False,
    )
    via_env = {"env": {"CODEX_HOME": "/elsewhere"}}
    assert launch.resolve_codex_home(via_env, state, {}) == (Path("/elsewhere"), False)


def test_config_toml_is_written_privately_and_only_when_changed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    launch.prepare_codex_home(home, 'model = "gpt-5.5"\n')
    target = home / "config.toml"
    assert target.read_text() == 'model = "gpt-5.5"\n'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    inode = target.stat().st_ino
    launch.prepare_codex_home(home, 'model = "gpt-5.5"\n')
    assert target.stat().st_ino == inode  # unchanged content is not rewritten
    launch.prepare_codex_home(home, None)
    assert target.read_text() == 'model = "gpt-5.5"\n'
    launch.prepare_codex_home(home, "x = 1\n")
    assert target.read_text() == "x = 1\n"
    assert sorted(p.name for p in home.iterdir()) == ["config.toml"]


# ------------------------------------------------------------------ options


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("bypassPermissions", ("never", "danger-full-access")),
        ("acceptEdits", ("on-request", "workspace-write")),
        ("default", ("on-request", "workspace-write")),
        ("plan", ("on-request", "read-only")),
        (None, ("on-request", "workspace-write")),
    ],
)
def test_permission_modes(mode: str | None, expected: tuple[str, str]) -> None:
    assert options.policy_for(mode, {}) == expected


def test_provider_config_overrides_the_table() -> None:
    assert options.policy_for("plan", {"approvalPolicy": "never"}) == ("never", "read-only")
    assert options.policy_for("plan", {"sandbox": "danger-full-access"}) == (
        "on-request",
        "danger-full-access",
    )


def test_validate_config_accepts_the_documented_keys() -> None:
    config = {
        "approvalPolicy": "untrusted",
        "sandbox": "workspace-write",
        "config": {"model_reasoning_effort": "high", "tools.web_search": False},
        "effort": "low",
    }
    assert options.validate_config(config) == config
    assert options.validate_config({}) == {}


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"approvalPolicy": "sometimes"}, "providerConfig.approvalPolicy"),
        ({"sandbox": "none"}, "providerConfig.sandbox"),
        ({"config": []}, "providerConfig.config"),
        ({"effort": ""}, "providerConfig.effort"),
        ({"bogus": 1}, "providerConfig.bogus"),
    ],
)
def test_validate_config_names_the_bad_key(config: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        options.validate_config(config)
    assert caught.value.field == field


def test_validate_config_wants_an_object() -> None:
    with pytest.raises(InvalidParams) as caught:
        options.validate_config([])
    assert caught.value.field == "providerConfig"


def test_session_options_from_a_start_request() -> None:
    opts = options.session_options(
        {
            "cwd": "/srv/project",
            "model": "gpt-5.5",
            "systemPrompt": "Be terse.",
            "permissionMode": "acceptEdits",
            "additionalDirectories": ["/data"],
            "providerConfig": {"effort": "high"},
        },
        {"prices": {"gpt-5.5": {"input": 1, "output": 2}}},
        resume_thread_id="th-1",
    )
    assert opts.thread_params() == {
        "approvalPolicy": "on-request",
        "sandbox": "workspace-write",
        "cwd": "/srv/project",
        "model": "gpt-5.5",
        "developerInstructions": "Be terse.",
        "config": {"sandbox_workspace_write.writable_roots": ["/data"]},
    }
    assert opts.effort == "high" and opts.resume_thread_id == "th-1"
    assert opts.prices == {"gpt-5.5": Price(1.0, 1.0, 2.0)}
    resume = opts.resume_params("th-1")
    assert resume["threadId"] == "th-1" and resume["excludeTurns"] is True
    assert "developerInstructions" not in resume
    bare = options.session_options({}, default_model="gpt-5.1")
    assert bare.thread_params() == {
        "approvalPolicy": "on-request",
        "sandbox": "workspace-write",
        "model": "gpt-5.1",
    }


# ------------------------------------------------------------------ prices


def test_builtin_and_snapshot_and_override_prices() -> None:
    assert pricing.find_price("gpt-5") == Price(1.25, 0.125, 10.0)
    assert pricing.find_price("gpt-5-2025-08-07") == Price(1.25, 0.125, 10.0)
    assert pricing.find_price("gpt-5.5") is None
    assert pricing.find_price(None) is None
    mine = {"gpt-5": Price(1, 1, 1)}
    assert pricing.find_price("gpt-5", mine) == Price(1, 1, 1)


def test_cost_formula_bills_cached_input_and_reasoning_once() -> None:
    tokens = TokenCounts(input=1_000_000, cached_input=400_000, output=100_000, reasoning_output=50)
    cost, note = pricing.price_usage("gpt-5", tokens)
    assert note is None
    assert cost == pytest.approx(0.6 * 1.25 + 0.4 * 0.125 + 0.1 * 10.0)
    cost, note = pricing.price_usage("mystery", tokens)
    assert cost == 0.0 and note is not None and "mystery" in note


def test_parse_prices() -> None:
    assert pricing.parse_prices(None) == {}
    table = pricing.parse_prices({"m": {"input": 2, "cached_input": 0.5, "output": 8}})
    assert table == {"m": Price(2.0, 0.5, 8.0)}
    bad: object
    for bad in (
        [],
        {"m": 1},
        {"m": {"input": 1}},
        {"m": {"input": -1, "output": 1}},
        {"m": {"input": True, "output": 1}},
        {"m": {"input": 1, "output": 1, "extra": 1}},
        {"": {"input": 1, "output": 1}},
    ):
        with pytest.raises(ValueError):
            pricing.parse_prices(bad)

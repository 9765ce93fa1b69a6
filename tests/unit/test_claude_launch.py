"""Unit tests of the Claude Code launch logic: discovery, version probe, argv, env."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from corral.protocol.errors import InvalidParams
from corral.supervisor.providers.claude.launch import (
    ASKING_MODES,
    BINARY_ENV,
    NESTING_ENV_VARS,
    ClaudeLaunchOptions,
    build_argv,
    build_env,
    check_launch_options,
    claude_version,
    find_claude_binary,
)

SYSTEM_LOCATIONS = ("/usr/local/bin/claude", "/usr/bin/claude")


def make_exe(path: Path, body: str = 'echo "9.9.9 (Claude Code)"') -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def no_system_claude() -> bool:
    return not any(os.path.exists(p) for p in SYSTEM_LOCATIONS)


# --- find_claude_binary ------------------------------------------------------------


def test_configured_binary_wins(tmp_path: Path) -> None:
    configured = make_exe(tmp_path / "configured" / "claude")
    from_env = make_exe(tmp_path / "env" / "claude")
    on_path = make_exe(tmp_path / "bin" / "claude")
    env = {BINARY_ENV: str(from_env), "PATH": str(on_path.parent), "HOME": str(tmp_path)}
    found, searched = find_claude_binary(str(configured), env)
    assert found == str(configured)
    assert searched == [str(configured)]


def test_env_binary_after_missing_configured(tmp_path: Path) -> None:
    from_env = make_exe(tmp_path / "env" / "claude")
    missing = str(tmp_path / "nope" / "claude")
    found, searched = find_claude_binary(missing, {BINARY_ENV: str(from_env)})
    assert found == str(from_env)
    assert searched == [missing, str(from_env)]


def test_non_executable_configured_is_skipped(tmp_path: Path) -> None:
    plain = tmp_path / "claude"
    plain.write_text("not executable")
    plain.chmod(0o644)
    on_path = make_exe(tmp_path / "bin" / "claude")
    found, searched = find_claude_binary(str(plain), {"PATH": str(on_path.parent)})
    assert found == str(on_path)
    assert searched[0] == str(plain)


def test_path_search_uses_env_path(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    on_path = make_exe(tmp_path / "bin" / "claude")
    env = {"PATH": f"{empty}{os.pathsep}{on_path.parent}", "HOME": str(tmp_path / "home")}
    found, searched = find_claude_binary(None, env)
    assert found == str(on_path)
    assert searched == [str(empty / "claude"), str(on_path)]


def test_configured_tilde_expands_with_env_home(tmp_path: Path) -> None:
    exe = make_exe(tmp_path / "tools" / "claude")
    found, searched = find_claude_binary("~/tools/claude", {"HOME": str(tmp_path)})
    assert found == str(exe)
    assert searched == [str(exe)]


@pytest.mark.parametrize("relative", [".local/bin/claude", ".claude/local/claude"])
def test_home_fallbacks(tmp_path: Path, relative: str) -> None:
    exe = make_exe(tmp_path / relative)
    empty = tmp_path / "empty"
    empty.mkdir()
    found, searched = find_claude_binary(None, {"PATH": str(empty), "HOME": str(tmp_path)})
    assert found == str(exe)
    assert searched[-1] == str(exe)


def test_local_bin_before_claude_local(tmp_path: Path) -> None:
    first = make_exe(tmp_path / ".local/bin/claude")
    make_exe(tmp_path / ".claude/local/claude")
    found, _ = find_claude_binary(None, {"HOME": str(tmp_path)})
    assert found == str(first)


@pytest.mark.skipif(not no_system_claude(), reason="a system-wide claude is installed")
def test_not_found_lists_every_place_in_order(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    home = tmp_path / "home"
    env = {BINARY_ENV: str(tmp_path / "env-claude"), "PATH": str(empty), "HOME": str(home)}
    found, searched = find_claude_binary(str(tmp_path / "cfg-claude"), env)
    assert found is None
    assert searched == [
        str(tmp_path / "cfg-claude"),
        str(tmp_path / "env-claude"),
        str(empty / "claude"),
        f"{home}/.local/bin/claude",
        f"{home}/.claude/local/claude",
        *SYSTEM_LOCATIONS,
    ]


@pytest.mark.skipif(not no_system_claude(), reason="a system-wide claude is installed")
def test_no_home_skips_home_fallbacks() -> None:
    found, searched = find_claude_binary(None, {})
    assert found is None
    assert searched == list(SYSTEM_LOCATIONS)


# --- claude_version ------------------------------------------------------------------


def test_version_of_working_binary(tmp_path: Path) -> None:
    exe = make_exe(tmp_path / "claude")
    assert claude_version(str(exe)) == "9.9.9 (Claude Code)"


def test_version_of_failing_binary(tmp_path: Path) -> None:
    exe = make_exe(tmp_path / "claude", "echo broken >&2; exit 3")
    assert claude_version(str(exe)) is None


def test_version_of_missing_binary(tmp_path: Path) -> None:
    assert claude_version(str(tmp_path / "missing")) is None


def test_version_is_bounded(tmp_path: Path) -> None:
    exe = make_exe(tmp_path / "claude", "exec sleep 30")
    assert claude_version(str(exe), timeout=0.3) is None


# --- build_argv ------------------------------------------------------------------------

BASE = [
    "claude",
    "-p",
    "--input-format",
    "stream-json",
    "--output-format",
    "stream-json",
    "--verbose",
]


def test_argv_minimal() -> None:
    assert build_argv("claude", ClaudeLaunchOptions()) == BASE


def test_argv_all_options() -> None:
    opts = ClaudeLaunchOptions(
        model="claude-sonnet-4-5",
        permission_mode="bypassPermissions",
        max_turns=3,
        system_prompt="Be terse.",
        additional_directories=["/a", "/b c"],
        worktree_name="feature-x",
        claude_config_dir="/cfg",
        session_id="11111111-2222-4333-8444-555555555555",
    )
    assert build_argv("/opt/claude", opts) == [
        "/opt/claude",
        *BASE[1:],
        "--model=claude-sonnet-4-5",
        "--permission-mode=bypassPermissions",
        "--max-turns=3",
        "--system-prompt=Be terse.",
        "--add-dir=/a",
        "--add-dir=/b c",
        "--worktree=feature-x",
        "--session-id",
        "11111111-2222-4333-8444-555555555555",
    ]


def test_argv_append_system_prompt() -> None:
    argv = build_argv("claude", ClaudeLaunchOptions(system_prompt="X", append_system_prompt=True))
    assert argv[len(BASE) :] == ["--append-system-prompt=X"]
    assert not any(a.startswith("--system-prompt") for a in argv)


def test_argv_append_without_prompt_adds_nothing() -> None:
    assert build_argv("claude", ClaudeLaunchOptions(append_system_prompt=True)) == BASE


def test_argv_resume_wins_over_session_id() -> None:
    opts = ClaudeLaunchOptions(resume_session_id="old-id", session_id="new-id")
    argv = build_argv("claude", opts)
    assert argv[len(BASE) :] == ["--resume", "old-id"]


def test_argv_max_turns_zero_is_set() -> None:
    argv = build_argv("claude", ClaudeLaunchOptions(max_turns=0))
    assert argv[len(BASE) :] == ["--max-turns=0"]


HOSTILE = ["-h", "--help", "--dangerously-skip-permissions", "-", "--", "-p --verbose"]


@pytest.mark.parametrize("value", HOSTILE)
def test_no_value_becomes_a_flag(value: str) -> None:
    opts = ClaudeLaunchOptions(
        model=value,
        permission_mode=value,
        system_prompt=value,
        additional_directories=[value, value],
        worktree_name=value,
        resume_session_id=value,
    )
    argv = build_argv("claude", opts)
    extra = argv[len(BASE) :]
    # each value is inside its flag's argument, never an argument of its own
    assert value not in extra
    assert extra == [
        f"--model={value}",
        f"--permission-mode={value}",
        f"--system-prompt={value}",
        f"--add-dir={value}",
        f"--add-dir={value}",
        f"--worktree={value}",
        f"--resume={value}",
    ]
    joined = build_argv("claude", ClaudeLaunchOptions(session_id=value))[len(BASE) :]
    assert joined == [f"--session-id={value}"]


def test_plain_ids_stand_alone() -> None:
    argv = build_argv("claude", ClaudeLaunchOptions(resume_session_id="abc-1.2_3"))
    assert argv[len(BASE) :] == ["--resume", "abc-1.2_3"]


@pytest.mark.parametrize(
    "model",
    [
        "sonnet",
        "opus[1m]",
        "claude-sonnet-4-5-20250929",
        "us.anthropic.claude-sonnet-4-5-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc",
        "claude-3-5-sonnet@20240620",
        "m" * 256,
    ],
)
def test_model_names_accepted(model: str) -> None:
    check_launch_options(ClaudeLaunchOptions(model=model))


@pytest.mark.parametrize(
    "model", ["-x", "--help", "", " sonnet", "a b", "so\nnet", "m" * 257, "é", "a;b", "$(x)"]
)
def test_model_names_refused(model: str) -> None:
    with pytest.raises(InvalidParams) as info:
        check_launch_options(ClaudeLaunchOptions(model=model))
    assert info.value.field == "model"


@pytest.mark.parametrize("name", ["feature-x", "a", "Fix_1.2", "w" * 128])
def test_worktree_names_accepted(name: str) -> None:
    check_launch_options(ClaudeLaunchOptions(worktree_name=name))


@pytest.mark.parametrize(
    "name", ["-h", "--x", ".hidden", "..", "a/b", "../up", "a b", "", "w" * 129, "é"]
)
def test_worktree_names_refused(name: str) -> None:
    with pytest.raises(InvalidParams) as info:
        check_launch_options(ClaudeLaunchOptions(worktree_name=name))
    assert info.value.field == "worktreeName"


def test_directories_must_be_absolute_and_exist(tmp_path: Path) -> None:
    check_launch_options(
        ClaudeLaunchOptions(additional_directories=[str(tmp_path)], claude_config_dir=str(tmp_path))
    )
    (tmp_path / "file").write_text("x")
    for bad in ["-x", "--add-dir", "relative", str(tmp_path / "missing"), str(tmp_path / "file")]:
        with pytest.raises(InvalidParams) as info:
            check_launch_options(ClaudeLaunchOptions(additional_directories=[str(tmp_path), bad]))
        assert info.value.field == "additionalDirectories.1"
        with pytest.raises(InvalidParams) as info:
            check_launch_options(ClaudeLaunchOptions(claude_config_dir=bad))
        assert info.value.field == "claudeConfigDir"


@pytest.mark.parametrize("mode", ["default", "acceptEdits", "plan"])
def test_asking_modes_route_prompts_to_stdio(mode: str) -> None:
    argv = build_argv("claude", ClaudeLaunchOptions(permission_mode=mode))
    assert argv[len(BASE) :] == [f"--permission-mode={mode}", "--permission-prompt-tool=stdio"]
    assert mode in ASKING_MODES


@pytest.mark.parametrize("mode", [None, "bypassPermissions", "-h"])
def test_modes_that_never_ask_get_no_prompt_tool(mode: str | None) -> None:
    argv = build_argv("claude", ClaudeLaunchOptions(permission_mode=mode))
    assert not any(a.startswith("--permission-prompt-tool") for a in argv)


def test_prompt_tool_can_be_turned_off() -> None:
    opts = ClaudeLaunchOptions(permission_mode="default", permission_prompts=False)
    assert build_argv("claude", opts)[len(BASE) :] == ["--permission-mode=default"]


def test_options_lists_not_shared() -> None:
    first, second = ClaudeLaunchOptions(), ClaudeLaunchOptions()
    first.additional_directories.append("/x")
    assert second.additional_directories == []


# --- build_env ---------------------------------------------------------------------------


def test_env_strips_nesting_variables() -> None:
    base = {"PATH": "/usr/bin", "HOME": "/home/u", **dict.fromkeys(NESTING_ENV_VARS, "1")}
    env = build_env(base, {}, {}, None)
    assert env == {"PATH": "/usr/bin", "HOME": "/home/u"}
    for name in ("CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT", "CLAUDE_CODE_SSE_PORT"):
        assert name in NESTING_ENV_VARS


def test_env_layers_in_order() -> None:
    base = {"A": "base", "B": "base", "C": "base", "KEEP": "yes"}
    operator = {"B": "operator", "C": "operator", "ANTHROPIC_BASE_URL": "http://127.0.0.1:1"}
    client = {"C": "client"}
    env = build_env(base, operator, client, "/cfg")
    assert env == {
        "A": "base",
        "B": "operator",
        "C": "client",
        "KEEP": "yes",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:1",
        "CLAUDE_CONFIG_DIR": "/cfg",
    }


def test_env_config_dir_overrides_and_is_optional() -> None:
    base = {"CLAUDE_CONFIG_DIR": "/inherited"}
    assert build_env(base, {}, {}, None)["CLAUDE_CONFIG_DIR"] == "/inherited"
    assert build_env(base, {}, {"CLAUDE_CONFIG_DIR": "/c"}, "/set")["CLAUDE_CONFIG_DIR"] == "/set"


def test_env_never_sets_is_sandbox_silently() -> None:
    assert "IS_SANDBOX" not in build_env({"IS_SANDBOX": "1", "PATH": "/bin"}, {}, {}, "/cfg")
    assert build_env({}, {"IS_SANDBOX": "1"}, {}, None)["IS_SANDBOX"] == "1"
    assert build_env({}, {}, {"IS_SANDBOX": "1"}, None)["IS_SANDBOX"] == "1"


def test_env_does_not_mutate_inputs() -> None:
    base = {"CLAUDECODE": "1", "X": "1"}
    operator = {"Y": "2"}
    build_env(base, operator, {}, "/cfg")
    assert base == {"CLAUDECODE": "1", "X": "1"}
    assert operator == {"Y": "2"}

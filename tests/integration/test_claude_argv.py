"""The real Claude Code CLI takes every value corral passes as a value, never as a
flag: launched with :func:`build_argv` exactly as the daemon launches it, against
the fake Messages API. Every process is killed by PID at the end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.supervisor.providers.claude.launch import ClaudeLaunchOptions, build_argv, build_env
from tests.integration.test_claude_cli_raw import ClaudeProcess, Sandbox
from tests.support.claude_cli import claude_test_env
from tests.support.claude_fixtures import FakeAnthropicFactory
from tests.support.fake_anthropic import FakeAnthropic, text_reply


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


@pytest.fixture
def spawn(claude_bin: Path, sandbox: Sandbox) -> Iterator[Any]:
    """``spawn(server, opts)`` -> a started :class:`ClaudeProcess` in the sandbox."""
    started: list[ClaudeProcess] = []

    def start(server: FakeAnthropic, opts: ClaudeLaunchOptions) -> ClaudeProcess:
        base_env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
        operator_env = claude_test_env(server.base_url, sandbox.home, sandbox.tmp)
        env = build_env(base_env, operator_env, {}, opts.claude_config_dir)
        process = ClaudeProcess(build_argv(str(claude_bin), opts), env, sandbox.work)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


def git_repo(path: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed: Claude Code's --worktree needs it")
    for argv in (
        [git, "init", "-q"],
        [
            git,
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "user.name=t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "init",
        ],
    ):
        subprocess.run(argv, cwd=path, check=True, capture_output=True, timeout=30)


def test_worktree_name_starting_with_a_dash_is_a_name(
    spawn: Any, sandbox: Sandbox, fake_anthropic: FakeAnthropicFactory
) -> None:
    # `--worktree -h` would print the help and exit: `[name]` is an optional value.
    git_repo(sandbox.work)
    server = fake_anthropic([text_reply("ok")])
    claude = spawn(server, ClaudeLaunchOptions(worktree_name="-h"))
    claude.send_user("hello")
    turn = claude.read_turn()
    claude.close_stdin()
    assert claude.wait() == 0, claude.stderr
    init = turn[0]
    assert (init["type"], init["subtype"]) == ("system", "init")
    assert init["cwd"].endswith(os.path.join(".claude", "worktrees", "-h")), init["cwd"]


def test_values_starting_with_dashes_reach_the_model_as_values(
    spawn: Any, sandbox: Sandbox, fake_anthropic: FakeAnthropicFactory
) -> None:
    extra_dir = sandbox.work.parent / "-extra"
    extra_dir.mkdir()
    server = fake_anthropic([text_reply("ok")])
    opts = ClaudeLaunchOptions(
        system_prompt="--dangerously-skip-permissions is not a flag here",
        additional_directories=[str(extra_dir)],
        model="-weird-model",
    )
    claude = spawn(server, opts)
    claude.send_user("hello")
    turn = claude.read_turn()
    claude.close_stdin()
    assert claude.wait() == 0, claude.stderr
    init = turn[0]
    assert init["permissionMode"] == "default"
    assert init["model"] == "-weird-model"
    body = server.requests[0]["body"]
    assert body["model"] == "-weird-model"
    system = json.dumps(body.get("system"))
    assert "--dangerously-skip-permissions is not a flag here" in system
    assert str(extra_dir) in json.dumps(body)

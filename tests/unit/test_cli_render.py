"""The CLI's pieces without a daemon: transcript lines, tables, plain-value
coercion, output mode and error lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from corral.protocol.errors import InvalidParams, SessionRunning
from corral.supervisor.cli import app, common, fastparams
from corral.supervisor.cli.render import age, duration, message_text, sessions_table, tokens


def plain(renderable: Any, width: int = 120) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def styles(text: Any) -> set[str]:
    return {str(span.style) for span in text.spans}


def test_message_lines() -> None:
    call = message_text(
        {"seqId": 5, "role": "tool-call", "toolName": "Edit", "toolPath": "/src/a.py",
         "content": "/src/a.py", "toolInput": "{}"}
    )  # fmt: skip
    assert call.plain == "   5 tool     Edit  /src/a.py"
    bash = message_text(
        {"seqId": 6, "role": "tool-call", "toolName": "Bash", "content": "ls\n -la"}
    )
    assert bash.plain.endswith("Bash  ls -la")
    result = message_text({"seqId": 7, "role": "tool-result", "content": "1\n2\n3\n4\n5"})
    assert result.plain.splitlines() == [
        "   7 result   1",
        "              2",
        "              3",
        "              … (2 more lines)",
    ]
    assert "dim" in styles(result)
    failed = message_text({"seqId": 8, "role": "tool-result", "content": "boom", "isError": True})
    assert "bold red" in styles(failed)
    error = message_text({"seqId": 9, "role": "system", "content": "provider exited with code 1"})
    assert "bold red" in styles(error)
    note = message_text({"seqId": 10, "role": "system", "content": "Session started"})
    assert "bold red" not in styles(note)
    thinking = message_text({"seqId": 11, "role": "thinking", "content": "hmm"})
    assert "dim italic" in styles(thinking) and thinking.plain == "  11 thinking hmm"
    assert message_text({"seqId": 12, "role": "other", "content": ""}).plain == "  12 other    "


def test_sessions_table_and_formats() -> None:
    now = 1_700_000_000_000
    session = {
        "projectId": "api",
        "sessionId": "0123456789abcdef",
        "provider": "mock",
        "model": None,
        "status": "error",
        "costUsd": 0.01234,
        "inputTokens": 12345,
        "outputTokens": 67,
        "messageCount": 18,
        "updatedAt": now - 3 * 3600_000,
    }
    text = plain(sessions_table([session], now, plain=True))
    assert text.split() == [
        "PROJECT", "SESSION", "PROVIDER", "MODEL", "STATUS", "COST", "TOKENS", "MSGS", "AGE",
        "api", "01234567", "mock", "-", "error", "$0.0123", "12.3k/67", "18", "3h", "ago",
    ]  # fmt: skip
    assert duration(None) == "-" and duration(59_000) == "59s" and duration(2 * 86400_000) == "2d"
    assert age(None, now) == "-" and tokens({}) == "0/0"


def test_plain_values_skip_pydantic_with_the_same_checks() -> None:
    info = typer.models.OptionInfo(min=1, max=5)
    assert fastparams._convert(int, "3", info) == 3
    with pytest.raises(typer.BadParameter, match="range"):
        fastparams._convert(int, "9", info)
    with pytest.raises(typer.BadParameter, match="valid int"):
        fastparams._convert(int, "x", info)
    clamp = typer.models.OptionInfo(min=1, max=5, clamp=True)
    assert fastparams._convert(int, "9", clamp) == 5 and fastparams._convert(float, "0", clamp) == 1
    none = typer.models.OptionInfo()
    assert fastparams._convert(Path, "/a", none) == Path("/a")
    assert fastparams._convert(bool, "yes", none) is True
    assert fastparams._convert(bool, "off", none) is False
    with pytest.raises(typer.BadParameter):
        fastparams._convert(bool, "maybe", none)
    assert fastparams._leaf(list[Path]) is Path and fastparams._leaf(dict) is None
    assert fastparams._runtime_param_class() is not None


def test_output_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    assert common.Output().plain  # pytest's stdout is not a terminal
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert not common.Output().plain
    monkeypatch.setenv("NO_COLOR", "1")
    assert common.Output().plain


def test_error_lines() -> None:
    assert common.describe_error(InvalidParams("limit: too big", field="limit")) == (
        "limit: too big (invalid_params; field: limit)"
    )
    assert common.describe_error(SessionRunning("busy", sessionId="s1")) == (
        "busy (session_running; sessionId: s1)"
    )


def test_help_lists_groups_and_connection_options() -> None:
    runner = CliRunner()
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert top.exit_code == 0
    for heading in ("Daemon", "Agents", "Sessions", "Live", "Status", "Protocol"):
        assert heading in top.stdout
    for command in (
        "serve", "start", "approvals", "approve", "ls", "show", "tail", "watch", "settings", "call"
    ):  # fmt: skip
        assert f" {command} " in top.stdout
    assert "--install-completion" in top.stdout and "--version" in top.stdout
    sub = runner.invoke(app, ["ls", "--help"], env={"COLUMNS": "120", "NO_COLOR": "1"})
    for option in ("--rpc", "--events", "--timeout", "--json", "CORRAL_RPC"):
        assert option in sub.stdout

"""Codex tool items (commands, file changes, MCP and other tools) as tool calls/results."""

from __future__ import annotations

import pytest

from corral.supervisor.providers.codex.items import Transcript
from corral.supervisor.providers.codex.tools import unwrap_command
from tests.unit.test_codex_items import completed, feed, started, summary


def test_file_change_is_one_call_and_result_per_change() -> None:
    t = Transcript()
    item = {
        "type": "fileChange",
        "id": "fc",
        "status": "inProgress",
        "changes": [
            {"path": "/w/a.txt", "kind": {"type": "add"}, "diff": "new\n"},
            {"path": "/w/b.txt", "kind": {"type": "update", "move_path": "/w/c.txt"}, "diff": "@@"},
            {"path": "/w/d.txt", "kind": {"type": "delete"}, "diff": ""},
        ],
    }
    calls = feed(t, started(item))
    assert [summary(n) for n in calls] == [
        ("call", "Write", {"file_path": "/w/a.txt", "content": "new\n"}),
        ("call", "Edit", {"file_path": "/w/b.txt", "diff": "@@", "new_path": "/w/c.txt"}),
        ("call", "Delete", {"file_path": "/w/d.txt"}),
    ]
    assert t.open_paths("fc") == ["/w/a.txt", "/w/b.txt", "/w/d.txt"]
    results = feed(t, completed(dict(item, status="completed")))
    assert [summary(n) for n in results] == [
        ("result", "Created /w/a.txt", False),
        ("result", "Updated /w/b.txt", False),
        ("result", "Deleted /w/d.txt", False),
    ]
    assert [n.tool_id for n in results] == [n.tool_id for n in calls] == ["fc#0", "fc#1", "fc#2"]
    failed = feed(t, completed(dict(item, id="fc2", status="failed", changes=item["changes"][:1])))
    assert [summary(n) for n in failed] == [
        ("call", "Write", {"file_path": "/w/a.txt", "content": "new\n"}),
        ("result", "Failed to change /w/a.txt", True),
    ]


def test_mcp_dynamic_web_search_and_image_view_items() -> None:
    t = Transcript()
    mcp = {
        "type": "mcpToolCall",
        "id": "mc",
        "server": "docs",
        "tool": "lookup",
        "arguments": {"q": "x"},
        "status": "inProgress",
    }
    out = feed(
        t,
        started(mcp),
        completed(
            dict(mcp, status="completed", result={"content": [{"type": "text", "text": "ok"}]})
        ),
    )
    assert [summary(n) for n in out] == [
        ("call", "mcp__docs__lookup", {"q": "x"}),
        ("result", "ok", False),
    ]
    out = feed(t, completed(dict(mcp, id="mc2", status="failed", error={"message": "boom"})))
    assert [summary(n) for n in out][1] == ("result", "boom", True)
    dyn = {
        "type": "dynamicToolCall",
        "id": "dy",
        "tool": "t",
        "arguments": '{"a": 1}',
        "status": "completed",
        "success": False,
        "contentItems": [{"type": "inputText", "text": "no"}],
    }
    assert [summary(n) for n in feed(t, completed(dyn))] == [
        ("call", "t", {"a": 1}),
        ("result", "no", True),
    ]
    web = {"type": "webSearch", "id": "ws", "query": "corral", "action": {"type": "search"}}
    assert [summary(n) for n in feed(t, completed(web))] == [
        ("call", "WebSearch", {"query": "corral"}),
        ("result", "corral", False),
    ]
    image = {"type": "imageView", "id": "iv", "path": "/w/p.png"}
    assert [summary(n) for n in feed(t, completed(image))] == [
        ("call", "ViewImage", {"path": "/w/p.png"}),
        ("result", "viewed", False),
    ]


def test_command_output_falls_back_to_deltas_and_declines() -> None:
    t = Transcript()
    command = {"type": "commandExecution", "id": "c", "command": "ls", "status": "inProgress"}
    out = feed(
        t,
        started(command),
        ("item/commandExecution/outputDelta", {"itemId": "c", "delta": "a\n"}),
        completed(dict(command, status="completed", aggregatedOutput=None, exitCode=0)),
    )
    assert [summary(n) for n in out][1] == ("result", "a\n", False)
    out = feed(t, completed(dict(command, id="d", status="failed", exitCode=2)))
    assert [summary(n) for n in out][1] == ("result", "Exit code 2", True)


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("/bin/bash -lc 'echo hi'", "echo hi"),
        ("bash -lc 'echo \"a b\" | wc -c'", 'echo "a b" | wc -c'),
        ("/bin/sh -c 'true'", "true"),
        ("/usr/bin/zsh -c ls", "ls"),
        ("ls -la", "ls -la"),
        ("bash -lc 'unterminated", "bash -lc 'unterminated"),
        ("python -c 'print(1)'", "python -c 'print(1)'"),
    ],
)
def test_unwrap_command(command: str, shown: str) -> None:
    assert unwrap_command(command) == shown

"""Rebuilding an ollama conversation from stored AgentMessages."""

from __future__ import annotations

from typing import Any

from corral.supervisor.providers.ollama.history import build_messages, user_message


def _m(role: str, content: str = "", **extra: Any) -> dict[str, Any]:
    return {"id": "x", "seqId": 0, "role": role, "content": content, "timestamp": 0, **extra}


def test_a_conversation_with_tools_is_rebuilt() -> None:
    stored = [
        _m("system", "Session started (model: qwen3:8b)"),
        _m("user", "What is in the repo?"),
        _m("thinking", "I should look."),
        _m("assistant", "Let me look."),
        _m("tool-call", ".", toolName="LS", toolInput='{"path":"."}', toolUseId="c1"),
        _m("tool-call", "a.txt", toolName="Read", toolInput='{"file_path":"a.txt"}'),
        _m("tool-result", "a.txt\nb/", toolName="LS", toolUseId="c1"),
        _m("tool-result", "hello", toolName="Read", isError=False),
        _m("thinking", "Now answer."),
        _m("assistant", "A file and a folder."),
        _m("system", "stopped"),
        _m("user", "Thanks"),
        _m("assistant", "You're welcome."),
    ]
    assert build_messages(stored, system_prompt="Be terse.", prompt="Bye") == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "What is in the repo?"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "thinking": "I should look.",
            "tool_calls": [
                {"function": {"name": "list_directory", "arguments": {"path": "."}}},
                {"function": {"name": "read_file", "arguments": {"file_path": "a.txt"}}},
            ],
        },
        {"role": "tool", "content": "a.txt\nb/", "tool_name": "list_directory"},
        {"role": "tool", "content": "hello", "tool_name": "read_file"},
        {"role": "assistant", "content": "A file and a folder.", "thinking": "Now answer."},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "You're welcome."},
        {"role": "user", "content": "Bye"},
    ]


def test_responses_are_split_where_a_new_one_starts() -> None:
    stored = [
        _m("user", "go"),
        _m("assistant", "one"),
        _m("assistant", "two"),
        _m("thinking", "t"),
        _m("tool-call", "", toolName="Bash", toolInput='{"command":"ls"}'),
        _m("assistant", "after the call"),
    ]
    assert build_messages(stored) == [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "one"},
        {"role": "assistant", "content": "two"},
        {
            "role": "assistant",
            "content": "",
            "thinking": "t",
            "tool_calls": [{"function": {"name": "run_command", "arguments": {"command": "ls"}}}],
        },
        {"role": "assistant", "content": "after the call"},
    ]


def test_odd_tool_calls_are_kept_safely() -> None:
    stored = [
        _m("tool-call", "x", toolName="Mystery", toolInput="not json"),
        _m("tool-call", "", toolInput="[1, 2]"),
        _m("tool-result", "r"),
    ]
    assert build_messages(stored) == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "Mystery", "arguments": {}}},
                {"function": {"name": "unknown", "arguments": {}}},
            ],
        },
        {"role": "tool", "content": "r"},
    ]


def test_empty_history() -> None:
    assert build_messages([]) == []
    assert build_messages([], prompt="hi") == [user_message("hi")]

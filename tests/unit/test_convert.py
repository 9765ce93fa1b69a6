"""Tests of the display rules (actors/convert.py)."""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.actors.convert import (
    MAX_RESULT_LINES,
    is_displayed,
    to_agent_message,
    truncate_lines,
    user_message,
)
from corral.actors.normalized import Kind, Normalized

DISPLAYED = ["init", "text", "thinking", "tool_call", "tool_result", "error", "system"]
HIDDEN = ["cost", "status", "delta", "approval", "compaction", "turn_end", "unknown"]
REQUIRED = {"id": str, "seqId": int, "role": str, "content": str, "timestamp": int}
OPTIONAL = {"toolName", "toolInput", "toolPath", "parentId", "toolUseId", "isError"}
ROLES = {"user", "assistant", "tool-call", "tool-result", "thinking", "system"}


def conv(n: Normalized, **kw: Any) -> dict[str, Any]:
    return to_agent_message(n, 7, 1_700_000_000_000, **kw)


def assert_shape(msg: dict[str, Any]) -> None:
    for key, typ in REQUIRED.items():
        assert isinstance(msg[key], typ), key
    assert msg["role"] in ROLES
    assert set(msg) <= set(REQUIRED) | OPTIONAL
    for key in ("toolName", "toolInput", "toolPath", "parentId", "toolUseId"):
        if key in msg:
            assert isinstance(msg[key], str), key
    if "isError" in msg:
        assert msg["isError"] is True


# -- is_displayed -------------------------------------------------------------


def test_kinds_cover_the_normalized_literal() -> None:
    assert set(DISPLAYED) | set(HIDDEN) == set(get_args(Kind))


@pytest.mark.parametrize("kind", DISPLAYED)
def test_displayed_kinds(kind: Kind) -> None:
    assert is_displayed(Normalized(kind))


@pytest.mark.parametrize("kind", HIDDEN)
def test_hidden_kinds(kind: Kind) -> None:
    n = Normalized(kind, text="x")
    assert not is_displayed(n)
    with pytest.raises(ValueError):
        conv(n)


# -- common fields --------------------------------------------------------------


def test_common_fields() -> None:
    msg = to_agent_message(Normalized("text", text="hello"), 42, 123456)
    assert msg["seqId"] == 42
    assert msg["timestamp"] == 123456
    assert isinstance(msg["id"], str) and len(msg["id"]) == 32
    int(msg["id"], 16)  # uuid4 hex
    assert msg == {
        "id": msg["id"],
        "seqId": 42,
        "role": "assistant",
        "content": "hello",
        "timestamp": 123456,
    }


def test_ids_are_unique() -> None:
    ids = {conv(Normalized("text", text="x"))["id"] for _ in range(200)}
    assert len(ids) == 200


@pytest.mark.parametrize("kind", DISPLAYED)
def test_parent_id(kind: Kind) -> None:
    assert conv(Normalized(kind, parent_id="toolu_parent"))["parentId"] == "toolu_parent"
    assert "parentId" not in conv(Normalized(kind))


@pytest.mark.parametrize("kind", DISPLAYED)
def test_optional_keys_never_none(kind: Kind) -> None:
    msg = conv(Normalized(kind))
    assert_shape(msg)
    assert None not in msg.values()


# -- roles and contents ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "role"),
    [
        ("text", "assistant"),
        ("thinking", "thinking"),
        ("tool_call", "tool-call"),
        ("tool_result", "tool-result"),
        ("init", "system"),
        ("error", "system"),
        ("system", "system"),
    ],
)
def test_roles(kind: Kind, role: str) -> None:
    assert conv(Normalized(kind, text="t"))["role"] == role


def test_text_and_thinking_and_system_content() -> None:
    assert conv(Normalized("text", text="prose\nmore"))["content"] == "prose\nmore"
    assert conv(Normalized("thinking", text="hmm"))["content"] == "hmm"
    note = "[Request interrupted by user]"
    assert conv(Normalized("system", text=note))["content"] == note


def test_init_content() -> None:
    msg = conv(Normalized("init", model="claude-sonnet-4", provider_session_id="abc"))
    assert msg["content"] == "Session started (model: claude-sonnet-4)"
    assert set(msg) == set(REQUIRED)
    assert conv(Normalized("init"))["content"] == "Session started"


def test_error_content() -> None:
    assert conv(Normalized("error", text="rate limited"))["content"] == "Error: rate limited"
    assert conv(Normalized("error", text="Error: boom"))["content"] == "Error: boom"
    assert conv(Normalized("error", text="error 500"))["content"] == "error 500"
    assert conv(Normalized("error"))["content"] == "Error"


def test_user_message() -> None:
    msg = user_message("do the thing", 1, 99)
    assert msg == {
        "id": msg["id"],
        "seqId": 1,
        "role": "user",
        "content": "do the thing",
        "timestamp": 99,
    }
    assert user_message("x", 1, 99)["id"] != msg["id"]


# -- tool calls -------------------------------------------------------------------------


def test_bash_tool_call() -> None:
    command = "ls -la /tmp && echo done"
    inp = {"command": command}
    n = Normalized("tool_call", tool_name="Bash", tool_id="toolu_1", tool_input=inp)
    msg = conv(n)
    assert msg["role"] == "tool-call"
    assert msg["toolName"] == "Bash"
    assert msg["toolUseId"] == "toolu_1"
    assert msg["content"] == command
    assert msg["toolPath"] == command
    assert json.loads(msg["toolInput"]) == {"command": command}
    assert msg["toolInput"] == '{"command":"ls -la /tmp && echo done"}'  # compact


@pytest.mark.parametrize("length", [79, 80, 81, 200])
def test_bash_tool_path_cut_to_80_chars(length: int) -> None:
    command = "".join(chr(ord("a") + i % 26) for i in range(length))
    msg = conv(Normalized("tool_call", tool_name="Bash", tool_input={"command": command}))
    assert msg["toolPath"] == command[:80]
    assert len(msg["toolPath"]) == min(length, 80)
    assert msg["content"] == command  # the content is never cut


def test_file_path_tool_call() -> None:
    inp = {"file_path": "/src/app.py", "old_string": "a", "new_string": "b"}
    msg = conv(Normalized("tool_call", tool_name="Edit", tool_input=inp))
    assert msg["toolPath"] == "/src/app.py"
    assert msg["content"] == "/src/app.py"
    assert json.loads(msg["toolInput"]) == inp


def test_path_tool_call() -> None:
    inp = {"pattern": "TODO", "path": "/src"}
    msg = conv(Normalized("tool_call", tool_name="Grep", tool_input=inp))
    assert msg["toolPath"] == "/src"
    # `path` is only the toolPath; the content is the pretty input
    assert msg["content"] == json.dumps(inp, indent=2)


def test_file_path_wins_over_path_and_command() -> None:
    inp = {"file_path": "/a.txt", "path": "/dir", "command": "cat /a.txt"}
    msg = conv(Normalized("tool_call", tool_name="Bash", tool_input=inp))
    assert msg["toolPath"] == "/a.txt"
    assert msg["content"] == "cat /a.txt"  # Bash shows its command
    msg = conv(Normalized("tool_call", tool_name="Read", tool_input=inp))
    assert msg["toolPath"] == "/a.txt"
    assert msg["content"] == "/a.txt"


def test_command_of_other_tools_is_not_special() -> None:
    inp = {"command": "make"}
    msg = conv(Normalized("tool_call", tool_name="Task", tool_input=inp))
    assert "toolPath" not in msg
    assert msg["content"] == '{\n  "command": "make"\n}'


def test_pretty_json_content() -> None:
    inp = {"query": "pykka timers", "limit": 3, "nested": {"a": [1, 2]}, "ü": "é"}
    msg = conv(Normalized("tool_call", tool_name="WebSearch", tool_input=inp))
    assert msg["content"] == json.dumps(inp, indent=2, ensure_ascii=False)
    assert "\n  " in msg["content"]
    assert "toolPath" not in msg
    assert "\n" not in msg["toolInput"]
    assert json.loads(msg["toolInput"]) == inp


def test_non_string_paths_are_ignored() -> None:
    inp = {"file_path": 12, "path": None, "command": ["ls"]}
    msg = conv(Normalized("tool_call", tool_name="Bash", tool_input=inp))
    assert "toolPath" not in msg
    assert msg["content"] == json.dumps(inp, indent=2)


def test_empty_tool_input() -> None:
    msg = conv(Normalized("tool_call", tool_name="TodoRead", tool_input={}))
    assert msg["toolInput"] == "{}"
    assert msg["content"] == "{}"
    assert "toolPath" not in msg


def test_missing_tool_input() -> None:
    msg = conv(Normalized("tool_call", tool_name="Bash"))
    assert msg["role"] == "tool-call"
    assert msg["toolName"] == "Bash"
    assert msg["content"] == ""
    assert "toolInput" not in msg
    assert "toolPath" not in msg
    assert "toolUseId" not in msg


def test_missing_tool_name() -> None:
    msg = conv(Normalized("tool_call", tool_input={"file_path": "/x"}))
    assert "toolName" not in msg
    assert msg["content"] == "/x"


def test_unserializable_input_does_not_raise() -> None:
    msg = conv(Normalized("tool_call", tool_name="X", tool_input={"when": object()}))
    assert json.loads(msg["toolInput"])["when"].startswith("<object")


def test_non_finite_floats_become_null() -> None:
    inp = {"a": float("nan"), "b": [float("inf"), 1.5], "c": "x"}
    msg = conv(Normalized("tool_call", tool_name="X", tool_input=inp))
    assert json.loads(msg["toolInput"], parse_constant=_reject) == {
        "a": None,
        "b": [None, 1.5],
        "c": "x",
    }
    assert json.loads(msg["content"], parse_constant=_reject)["b"] == [None, 1.5]


def _reject(token: str) -> object:
    raise AssertionError(f"non-standard JSON constant {token}")


# -- tool results -----------------------------------------------------------------------


def test_tool_result() -> None:
    msg = conv(
        Normalized("tool_result", text="file1\nfile2", tool_id="toolu_1"),
        tool_names={"toolu_1": "Bash"},
    )
    assert msg["role"] == "tool-result"
    assert msg["content"] == "file1\nfile2"
    assert msg["toolName"] == "Bash"
    assert msg["toolUseId"] == "toolu_1"
    assert "isError" not in msg
    assert "toolInput" not in msg and "toolPath" not in msg


def test_tool_result_unknown_tool_id() -> None:
    msg = conv(Normalized("tool_result", text="x", tool_id="toolu_9"), tool_names={"a": "Bash"})
    assert "toolName" not in msg
    assert msg["toolUseId"] == "toolu_9"
    msg = conv(Normalized("tool_result", text="x"), tool_names={"a": "Bash"})
    assert "toolName" not in msg and "toolUseId" not in msg


def test_tool_result_name_falls_back_to_the_event() -> None:
    msg = conv(Normalized("tool_result", text="x", tool_id="t", tool_name="Read"))
    assert msg["toolName"] == "Read"
    msg = conv(
        Normalized("tool_result", text="x", tool_id="t", tool_name="Read"),
        tool_names={"t": "Edit"},
    )
    assert msg["toolName"] == "Edit"


def test_tool_result_error() -> None:
    msg = conv(Normalized("tool_result", text="permission denied", tool_id="t", is_error=True))
    assert msg["isError"] is True
    assert msg["content"] == "permission denied"


def lines(n: int) -> str:
    return "\n".join(f"line {i}" for i in range(1, n + 1))


def test_result_of_exactly_500_lines_is_kept() -> None:
    text = lines(500)
    assert conv(Normalized("tool_result", text=text))["content"] == text
    assert conv(Normalized("tool_result", text=text + "\n"))["content"] == text + "\n"


def test_result_of_501_lines_is_cut() -> None:
    content = conv(Normalized("tool_result", text=lines(501)))["content"]
    out = content.split("\n")
    assert len(out) == 501
    assert out[:500] == lines(500).split("\n")
    assert out[-1] == "... (1 more lines)"


def test_result_cut_counts_dropped_lines() -> None:
    content = conv(Normalized("tool_result", text=lines(1234) + "\n"))["content"]
    out = content.split("\n")
    assert out[:500] == lines(500).split("\n")
    assert out[500:] == ["... (734 more lines)"]


def test_truncate_lines_edges() -> None:
    assert MAX_RESULT_LINES == 500
    assert truncate_lines("", 2) == ""
    assert truncate_lines("a\nb", 2) == "a\nb"
    assert truncate_lines("a\nb\n", 2) == "a\nb\n"
    assert truncate_lines("a\nb\nc", 2) == "a\nb\n... (1 more lines)"
    assert truncate_lines("a\nb\n\n", 2) == "a\nb\n... (1 more lines)"
    assert truncate_lines("\n\n\n", 1) == "\n... (2 more lines)"


# -- properties -------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
tool_inputs = st.none() | st.dictionaries(
    st.sampled_from(["file_path", "path", "command"]) | st.text(max_size=10),
    json_values,
    max_size=6,
)
optional_text = st.none() | st.text(max_size=40)


@given(
    kind=st.sampled_from(DISPLAYED),
    text=st.text(max_size=300) | st.lists(st.text(max_size=5), max_size=700).map("\n".join),
    tool_name=st.none() | st.sampled_from(["Bash", "Read", "Edit"]) | st.text(max_size=10),
    tool_input=tool_inputs,
    tool_id=optional_text,
    parent_id=optional_text,
    model=optional_text,
    is_error=st.booleans(),
    seq_id=st.integers(min_value=1, max_value=2**40),
    now_ms=st.integers(min_value=0, max_value=2**45),
    tool_names=st.none() | st.dictionaries(st.text(max_size=5), st.text(max_size=10)),
)
def test_to_agent_message_never_raises(
    kind: Kind,
    text: str,
    tool_name: str | None,
    tool_input: dict[str, Any] | None,
    tool_id: str | None,
    parent_id: str | None,
    model: str | None,
    is_error: bool,
    seq_id: int,
    now_ms: int,
    tool_names: dict[str, str] | None,
) -> None:
    n = Normalized(
        kind,
        text=text,
        tool_name=tool_name,
        tool_input=tool_input,
        tool_id=tool_id,
        parent_id=parent_id,
        model=model,
        is_error=is_error,
    )
    msg = to_agent_message(n, seq_id, now_ms, tool_names=tool_names)
    assert_shape(msg)
    assert msg["seqId"] == seq_id
    assert msg["timestamp"] == now_ms
    assert None not in msg.values()
    if parent_id is not None:
        assert msg["parentId"] == parent_id
    if "toolPath" in msg and tool_input is not None and "file_path" not in tool_input:
        assert len(msg["toolPath"]) <= 80 or msg["toolPath"] == tool_input.get("path")
    if "toolInput" in msg:
        json.loads(msg["toolInput"], parse_constant=_reject)  # always strict JSON
    if kind == "tool_result":
        assert len(msg["content"].split("\n")) <= MAX_RESULT_LINES + 1

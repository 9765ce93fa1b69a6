"""The ollama provider's tools and tool loop: confinement, the command policy,
limits, and the loop through the real client against the fake server."""

from __future__ import annotations

import os
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.actors import convert
from corral.supervisor.providers.ollama.client import OllamaClient
from corral.supervisor.providers.ollama.history import build_messages
from corral.supervisor.providers.ollama.tools import ToolBox, display_name, model_name
from corral.supervisor.providers.ollama.turn import run_turn
from tests.support.fake_ollama import (
    ChatReply,
    Collector,
    FakeOllama,
    threads_stopped,
    tool_reply,
)


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("hello from notes\nsecond line\n")
    (work / "src").mkdir()
    (work / "src" / "main.py").write_text("print('hi')\n")
    (tmp_path / "secret.txt").write_text("top secret\n")
    return work


@pytest.fixture
def settle() -> Iterator[None]:
    with threads_stopped():
        yield


def _py(code: str) -> str:
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


# ---------------------------------------------------------------- ToolBox


def test_read_and_list_inside_the_cwd(cwd: Path) -> None:
    box = ToolBox(str(cwd))
    read = box.run("read_file", {"file_path": "notes.txt"})
    assert read == read.__class__("hello from notes\nsecond line")
    assert box.run("read_file", {"file_path": str(cwd / "src" / "main.py")}).text == "print('hi')"
    part = box.run("read_file", {"file_path": "notes.txt", "offset": 2, "limit": 1})
    assert part.text == "second line\n[lines 2-2 of 2]"
    listing = box.run("list_directory", {})
    assert listing.text == "notes.txt\nsrc/"
    assert box.run("list_directory", {"path": "src"}).text == "main.py"


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "{tmp}/secret.txt", "src/../../secret.txt", "link/secret.txt", "/etc/passwd"],
)
def test_paths_outside_the_session_are_refused(cwd: Path, path: str) -> None:
    (cwd / "link").symlink_to(cwd.parent)
    box = ToolBox(str(cwd))
    outcome = box.run("read_file", {"file_path": path.format(tmp=cwd.parent)})
    assert outcome.is_error
    assert outcome.text.startswith("refused:") and "outside" in outcome.text
    assert "top secret" not in outcome.text
    assert box.run("list_directory", {"path": ".."}).is_error


def test_additional_directories_are_inside(cwd: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "a.txt").write_text("extra file\n")
    box = ToolBox(str(cwd), [str(extra)])
    assert box.run("read_file", {"file_path": str(extra / "a.txt")}).text == "extra file"
    assert box.run("read_file", {"file_path": "../extra/a.txt"}).text == "extra file"
    assert box.run("read_file", {"file_path": "../secret.txt"}).is_error


def test_only_regular_text_files_are_read(cwd: Path) -> None:
    os.mkfifo(cwd / "pipe")
    (cwd / "blob.bin").write_bytes(b"\x00\x01\x02" * 10)
    box = ToolBox(str(cwd))
    fifo = box.run("read_file", {"file_path": "pipe"})  # never blocks
    assert fifo.is_error and "not a regular file" in fifo.text
    assert (
        box.run("read_file", {"file_path": "blob.bin"}).text
        == "blob.bin is a binary file (30 bytes)"
    )
    assert box.run("read_file", {"file_path": "src"}).is_error
    assert box.run("read_file", {"file_path": "missing.txt"}).is_error
    assert box.run("read_file", {}).is_error
    assert box.run("read_file", {"file_path": "notes.txt", "offset": 0}).is_error


@pytest.mark.parametrize("mode", ["default", "acceptEdits", "plan"])
def test_commands_are_refused_unless_bypass_permissions(cwd: Path, mode: str) -> None:
    box = ToolBox(str(cwd), permission_mode=mode)
    assert [s["function"]["name"] for s in box.specs()] == ["read_file", "list_directory"]
    outcome = box.run("run_command", {"command": "touch made.txt"})
    assert outcome.is_error and "not allowed" in outcome.text and mode in outcome.text
    assert not (cwd / "made.txt").exists()


def test_a_command_runs_in_the_cwd_without_a_shell(cwd: Path) -> None:
    box = ToolBox(str(cwd), permission_mode="bypassPermissions")
    assert "run_command" in [s["function"]["name"] for s in box.specs()]
    ok = box.run("run_command", {"command": _py("import os; print(os.getcwd())")})
    assert ok.text.strip() == str(cwd.resolve()) and not ok.is_error
    literal = box.run("run_command", {"command": "echo $HOME > out.txt"})
    assert literal.text.strip() == "$HOME > out.txt"
    assert not (cwd / "out.txt").exists()
    failed = box.run("run_command", {"command": _py("import sys; print('bad'); sys.exit(3)")})
    assert failed.is_error and failed.text == "bad\n\n[exit code 3]"
    assert box.run("run_command", {"command": "no-such-program-x"}).text.startswith(
        "command not found"
    )
    assert box.run("run_command", {"command": "echo 'unclosed"}).is_error


def test_a_command_is_bounded_in_time_and_output(cwd: Path) -> None:
    box = ToolBox(
        str(cwd), permission_mode="bypassPermissions", command_timeout=0.3, max_output_bytes=1000
    )
    started = time.monotonic()
    slow = box.run(
        "run_command", {"command": _py("import time; print('x', flush=True); time.sleep(30)")}
    )
    assert time.monotonic() - started < 3
    assert slow.is_error and slow.text == "x\n\n[timed out after 0.3s]"
    big = box.run("run_command", {"command": _py("print('y' * 200000)")})
    assert big.text.startswith("y" * 1000 + "\n... (output cut: ")
    assert len(big.text) < 1100


def test_a_stop_kills_a_running_command(cwd: Path) -> None:
    box = ToolBox(str(cwd), permission_mode="bypassPermissions")
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    started = time.monotonic()
    try:
        outcome = box.run("run_command", {"command": _py("import time; time.sleep(30)")}, cancel)
    finally:
        timer.join()
    assert time.monotonic() - started < 1.5
    assert outcome.is_error and outcome.text == "[interrupted]"


def test_names_shown_and_sent() -> None:
    assert [display_name(n) for n in ("read_file", "list_directory", "run_command", "x")] == [
        "Read",
        "LS",
        "Bash",
        "x",
    ]
    assert [model_name(n) for n in ("Read", "LS", "Bash", "x")] == [
        "read_file",
        "list_directory",
        "run_command",
        "x",
    ]


def test_an_unknown_tool_is_an_error(cwd: Path) -> None:
    outcome = ToolBox(str(cwd)).run("write_file", {"file_path": "x"})
    assert outcome.is_error and "unknown tool 'write_file'" in outcome.text


# ---------------------------------------------------------------- the loop


def _loop(
    srv: FakeOllama, box: ToolBox, prompt: str, *, model: str = "qwen3:8b", **kwargs: Any
) -> tuple[Any, Collector]:
    out = Collector()
    client = OllamaClient(srv.url)
    try:
        result = run_turn(
            client,
            model,
            [{"role": "user", "content": prompt}],
            cancel=threading.Event(),
            emit=out,
            tools=box,
            **kwargs,
        )
    finally:
        client.close()
    return result, out


def test_the_model_reads_a_file_in_the_cwd(cwd: Path, settle: None) -> None:
    script = [tool_reply("read_file", file_path="notes.txt"), ChatReply(content="It says hello.")]
    with FakeOllama(script) as srv:
        result, out = _loop(srv, ToolBox(str(cwd)), "What is in notes.txt?")
    assert result.outcome == "done"
    assert out.kinds(displayed_only=True) == ["tool_call", "tool_result", "text"]
    (call,) = out.of("tool_call")
    (res,) = out.of("tool_result")
    assert call.tool_name == "Read" and call.tool_input == {"file_path": "notes.txt"}
    assert call.tool_id and res.tool_id == call.tool_id
    assert res.text == "hello from notes\nsecond line" and not res.is_error
    assert len(out.of("cost")) == 2
    shown = convert.to_agent_message(call, 2, 0)
    assert shown["toolPath"] == "notes.txt" and shown["toolInput"] == '{"file_path":"notes.txt"}'

    first, second = (r["body"] for r in srv.chat_requests)
    assert [t["function"]["name"] for t in first["tools"]] == ["read_file", "list_directory"]
    sent_back = second["messages"]
    assert sent_back[1]["tool_calls"] == [
        {"function": {"name": "read_file", "arguments": {"file_path": "notes.txt"}}}
    ]
    assert sent_back[2] == {
        "role": "tool",
        "content": "hello from notes\nsecond line",
        "tool_name": "read_file",
    }
    # the stored transcript rebuilds exactly what the model saw
    stored = [convert.user_message("What is in notes.txt?", 1, 0)]
    names: dict[str, str] = {}
    for n in out.items:
        if n.kind == "tool_call" and n.tool_id and n.tool_name:
            names[n.tool_id] = n.tool_name
        if convert.is_displayed(n):
            stored.append(convert.to_agent_message(n, len(stored) + 1, 0, tool_names=names))
    rebuilt = build_messages(stored)
    as_sent = [{k: v for k, v in m.items() if v} for m in rebuilt]  # the client drops ""
    assert as_sent[:3] == sent_back
    assert rebuilt[3] == {"role": "assistant", "content": "It says hello."}


def test_a_path_outside_is_refused_in_the_loop(cwd: Path, settle: None) -> None:
    script = [tool_reply("read_file", file_path="../secret.txt"), ChatReply(content="I can't.")]
    with FakeOllama(script) as srv:
        result, out = _loop(srv, ToolBox(str(cwd)), "Read ../secret.txt")
        sent = srv.chat_requests[1]["body"]["messages"][2]
    assert result.outcome == "done"
    (res,) = out.of("tool_result")
    assert res.is_error and "outside" in res.text
    assert sent["role"] == "tool" and "top secret" not in sent["content"]


def test_a_command_is_refused_when_the_mode_does_not_allow_it(cwd: Path, settle: None) -> None:
    script = [tool_reply("run_command", command="touch made.txt"), ChatReply(content="OK.")]
    with FakeOllama(script) as srv:
        _, out = _loop(srv, ToolBox(str(cwd), permission_mode="acceptEdits"), "touch it")
        offered = [t["function"]["name"] for t in srv.chat_requests[0]["body"]["tools"]]
    assert "run_command" not in offered
    (call,) = out.of("tool_call")
    (res,) = out.of("tool_result")
    assert call.tool_name == "Bash"
    assert convert.to_agent_message(call, 2, 0)["content"] == "touch made.txt"
    assert res.is_error and "not allowed" in res.text
    assert not (cwd / "made.txt").exists()


def test_a_command_runs_when_the_mode_allows_it(cwd: Path, settle: None) -> None:
    script = [tool_reply("run_command", command="touch made.txt"), ChatReply(content="Done.")]
    with FakeOllama(script) as srv:
        result, out = _loop(srv, ToolBox(str(cwd), permission_mode="bypassPermissions"), "touch it")
    assert result.outcome == "done"
    (res,) = out.of("tool_result")
    assert not res.is_error and res.text == "(no output)"
    assert (cwd / "made.txt").exists()


def test_the_loop_stops_after_max_rounds(cwd: Path, settle: None) -> None:
    with FakeOllama(lambda _body: tool_reply("list_directory", path=".")) as srv:
        result, out = _loop(srv, ToolBox(str(cwd)), "loop", max_rounds=3)
        assert len(srv.chat_requests) == 3
    assert result.outcome == "max_rounds"
    last = out.items[-1]
    assert last.kind == "turn_end" and last.is_error and last.error_info == "max_turns"
    assert len(out.of("tool_call")) == len(out.of("tool_result")) == 3


def test_a_model_without_tools_gets_none_and_a_note(cwd: Path, settle: None) -> None:
    with FakeOllama([ChatReply(content="Hi."), ChatReply(content="Hi again.")]) as srv:
        client = OllamaClient(srv.url)
        outs = []
        try:
            for _ in range(2):
                out = Collector()
                run_turn(
                    client,
                    "gemma3:1b",
                    [{"role": "user", "content": "hi"}],
                    cancel=threading.Event(),
                    emit=out,
                    tools=ToolBox(str(cwd)),
                )
                outs.append(out)
        finally:
            client.close()
        bodies = [r["body"] for r in srv.chat_requests]
    assert all(not b.get("tools") for b in bodies)
    notes = [n.text for n in outs[0].of("system")]
    assert notes == ["gemma3:1b cannot call tools; it answers without them"]
    assert outs[1].of("system") == []  # said once per client
    # show was asked once per client
    assert [r["path"] for r in srv.requests].count("/api/show") == 1


def test_a_stop_during_a_command_ends_the_turn(cwd: Path, settle: None) -> None:
    script = [tool_reply("run_command", command=_py("import time; time.sleep(30)"))]
    cancel = threading.Event()
    out = Collector()
    with FakeOllama(script) as srv:
        client = OllamaClient(srv.url)
        timer = threading.Timer(0.5, cancel.set)
        timer.start()
        try:
            started = time.monotonic()
            result = run_turn(
                client,
                "qwen3:8b",
                [{"role": "user", "content": "wait"}],
                cancel=cancel,
                emit=out,
                tools=ToolBox(str(cwd), permission_mode="bypassPermissions"),
            )
            elapsed = time.monotonic() - started
        finally:
            timer.join()
            client.close()
    assert elapsed < 1.5
    assert result.outcome == "interrupted"
    (res,) = out.of("tool_result")
    assert res.is_error and res.text == "[interrupted]"
    assert out.items[-1].text == "interrupted"

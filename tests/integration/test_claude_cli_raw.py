"""The real Claude Code CLI, launched as corral launches it, against the fake API.

No daemon here: each test spawns the CLI directly with :func:`build_argv` and
:func:`build_env` (plus the quiet offline test env), speaks stream-json on stdin
and parses every stdout line as JSON. Every process is killed by PID at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from corral.supervisor.providers.claude.launch import ClaudeLaunchOptions, build_argv, build_env
from tests.support.claude_cli import claude_test_env
from tests.support.claude_fixtures import (  # noqa: F401
    FakeAnthropicFactory,
    claude_bin,
    fake_anthropic,
)
from tests.support.fake_anthropic import (
    FakeAnthropic,
    always_error,
    error,
    message_texts,
    script_bash,
    script_slow_tool,
    text_reply,
)

TURN_TIMEOUT = 30.0
EXIT_TIMEOUT = 15.0
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


class ClaudeProcess:
    """A running CLI speaking stream-json; stdout lines are parsed as they arrive."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.messages: list[dict[str, Any]] = []
        self.stderr_chunks: list[bytes] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(self.proc.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self.proc.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").strip()
            if line:
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self.stderr_chunks.append(raw)

    @property
    def stderr(self) -> str:
        return b"".join(self.stderr_chunks).decode("utf-8", "replace")

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def send_user(self, content: str) -> None:
        self.send({"type": "user", "message": {"role": "user", "content": content}})

    def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def read_until(
        self, done: Callable[[dict[str, Any]], bool], timeout: float = TURN_TIMEOUT
    ) -> list[dict[str, Any]]:
        """Messages up to and including the first one ``done`` accepts."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no match within {timeout} s; got {seen}\n{self.stderr}")
            try:
                message = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if message is None:
                raise AssertionError(f"stdout closed early; got {seen}\n{self.stderr}")
            self.messages.append(message)
            seen.append(message)
            if done(message):
                return seen

    def read_turn(self, timeout: float = TURN_TIMEOUT) -> list[dict[str, Any]]:
        """Messages up to and including the next ``result``."""
        return self.read_until(lambda m: m.get("type") == "result", timeout)

    def wait(self, timeout: float = EXIT_TIMEOUT) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Kill the process group led by our PID (if still there) and reap it."""
        self.close_stdin()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=EXIT_TIMEOUT)
        finally:
            for reader in self._readers:
                reader.join(timeout=5)
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()


class Sandbox:
    """A private HOME, TMPDIR and working directory for one test."""

    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.tmp = root / "tmp"
        self.work = root / "work"
        for path in (self.home, self.tmp, self.work):
            path.mkdir(parents=True, exist_ok=True)


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


@pytest.fixture
def spawn(claude_bin: Path, sandbox: Sandbox) -> Iterator[Any]:  # noqa: F811
    """``spawn(server, opts, extra_env=None)`` -> a started :class:`ClaudeProcess`."""
    started: list[ClaudeProcess] = []

    def start(
        server: FakeAnthropic,
        opts: ClaudeLaunchOptions,
        extra_env: dict[str, str] | None = None,
    ) -> ClaudeProcess:
        base_env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
        operator_env = claude_test_env(server.base_url, sandbox.home, sandbox.tmp)
        env = build_env(base_env, operator_env, extra_env or {}, opts.claude_config_dir)
        process = ClaudeProcess(build_argv(str(claude_bin), opts), env, sandbox.work)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


def by_type(messages: list[dict[str, Any]], kind: str, subtype: str | None = None) -> list[Any]:
    return [
        m
        for m in messages
        if m.get("type") == kind and (subtype is None or m.get("subtype") == subtype)
    ]


def tool_permission() -> tuple[ClaudeLaunchOptions, dict[str, str]]:
    """bypassPermissions, which as root needs IS_SANDBOX=1 set explicitly."""
    opts = ClaudeLaunchOptions(permission_mode="bypassPermissions")
    return opts, ({"IS_SANDBOX": "1"} if IS_ROOT else {})


# --- the fake server alone ------------------------------------------------------------


def test_fake_server_refuses_other_binds() -> None:
    with pytest.raises(ValueError):
        FakeAnthropic(host="0.0.0.0")
    with pytest.raises(ValueError):
        FakeAnthropic(port=8080)


def test_fake_server_lifetime_is_bounded() -> None:
    server = FakeAnthropic(max_lifetime=0.2).start()
    try:
        deadline = time.monotonic() + 5
        while server.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.running
    finally:
        server.close()


# --- the real CLI ----------------------------------------------------------------------


def test_bash_tool_really_runs(spawn: Any, fake_anthropic: FakeAnthropicFactory) -> None:  # noqa: F811
    server = fake_anthropic(script_bash("echo hi from tool", "It printed: hi from tool."))
    opts, extra = tool_permission()
    claude = spawn(server, opts, extra)
    claude.send_user("Run echo hi from tool and tell me what it printed")
    turn = claude.read_turn()
    claude.close_stdin()
    assert claude.wait() == 0, claude.stderr

    assert turn[0]["type"] == "system" and turn[0]["subtype"] == "init"
    assert turn[0]["permissionMode"] == "bypassPermissions"
    tool_uses = [
        block
        for m in by_type(turn, "assistant")
        for block in m["message"]["content"]
        if block["type"] == "tool_use"
    ]
    assert [t["input"]["command"] for t in tool_uses] == ["echo hi from tool"]
    results = [
        block
        for m in by_type(turn, "user")
        for block in m["message"]["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    assert len(results) == 1
    assert results[0]["tool_use_id"] == tool_uses[0]["id"]
    assert results[0]["is_error"] is False
    assert "hi from tool" in str(results[0]["content"])
    result = turn[-1]
    assert result["is_error"] is False
    assert result["result"] == "It printed: hi from tool."

    assert len(server.requests) == 2
    last = server.requests[1]["body"]["messages"][-1]
    assert last["role"] == "user" and last["content"][0]["type"] == "tool_result"
    assert "x-api-key" not in server.requests[0]["headers"]
    assert server.requests[0]["path"].startswith("/v1/messages")


def test_two_prompts_in_one_process(spawn: Any, fake_anthropic: FakeAnthropicFactory) -> None:  # noqa: F811
    server = fake_anthropic([text_reply("First answer: noted 7."), text_reply("Second: 42.")])
    claude = spawn(server, ClaudeLaunchOptions())
    claude.send_user("Remember the number 7.")
    first = claude.read_turn()
    claude.send_user("Now multiply it by 6.")
    second = claude.read_turn()
    claude.close_stdin()
    assert claude.wait() == 0, claude.stderr

    for turn, answer in ((first, "First answer: noted 7."), (second, "Second: 42.")):
        assert (turn[0]["type"], turn[0]["subtype"]) == ("system", "init")
        assert turn[-1]["result"] == answer
        assert turn[-1]["is_error"] is False
    assert first[0]["session_id"] == second[0]["session_id"]

    assert len(server.requests) == 2
    texts = message_texts(server.requests[1]["body"])
    assert any("Remember the number 7." in t for t in texts)
    assert "First answer: noted 7." in texts
    assert any("Now multiply it by 6." in t for t in texts)


def test_overloaded_ends_with_error_result(
    spawn: Any,
    fake_anthropic: FakeAnthropicFactory,  # noqa: F811
) -> None:
    server = fake_anthropic(always_error(529))
    claude = spawn(server, ClaudeLaunchOptions())
    claude.send_user("Say hello")
    turn = claude.read_turn()
    claude.close_stdin()
    assert claude.wait() == 1, claude.stderr

    retries = by_type(turn, "system", "api_retry")
    assert [r["error_status"] for r in retries] == [529]
    assert retries[0]["max_retries"] == 1
    result = turn[-1]
    assert result["is_error"] is True
    assert len(server.requests) == 2  # the first try and one retry


def test_process_survives_api_error(
    spawn: Any,
    fake_anthropic: FakeAnthropicFactory,  # noqa: F811
) -> None:
    server = fake_anthropic([error(529), error(529), text_reply("Recovered.")])
    claude = spawn(server, ClaudeLaunchOptions())
    claude.send_user("Say hello")
    assert claude.read_turn()[-1]["is_error"] is True
    assert claude.proc.poll() is None  # a failed turn does not end the process
    claude.send_user("Say hello again")
    turn = claude.read_turn()
    assert turn[-1]["is_error"] is False
    assert turn[-1]["result"] == "Recovered."
    claude.close_stdin()
    assert claude.wait() == 0, claude.stderr


def test_interrupt_during_slow_tool(
    spawn: Any,
    fake_anthropic: FakeAnthropicFactory,  # noqa: F811
) -> None:
    server = fake_anthropic(script_slow_tool(30))
    opts, extra = tool_permission()
    claude = spawn(server, opts, extra)
    claude.send_user("Wait a while")
    started = claude.read_until(
        lambda m: (
            m.get("type") == "assistant" and m["message"]["content"][0].get("type") == "tool_use"
        )
    )
    assert "sleep 30" in started[-1]["message"]["content"][0]["input"]["command"]
    time.sleep(0.5)  # let the tool process start
    claude.send(
        {"type": "control_request", "request_id": "r1", "request": {"subtype": "interrupt"}}
    )
    turn = claude.read_turn()
    answers = by_type(turn, "control_response")
    assert answers[0]["response"]["request_id"] == "r1"
    assert answers[0]["response"]["subtype"] == "success"
    result = turn[-1]
    assert result["subtype"] == "error_during_execution"
    assert result["is_error"] is True
    assert result["terminal_reason"] == "aborted_tools"
    assert len(server.requests) == 1  # the model was not asked again
    claude.close_stdin()
    claude.wait()


def test_resume_in_new_process(spawn: Any, fake_anthropic: FakeAnthropicFactory) -> None:  # noqa: F811
    server = fake_anthropic(
        [text_reply("Noted: the code word is PAPAYA."), text_reply("It was PAPAYA.")]
    )
    session_id = str(uuid.uuid4())

    first = spawn(server, ClaudeLaunchOptions(session_id=session_id))
    first.send_user("The code word is PAPAYA. Remember it.")
    turn = first.read_turn()
    first.close_stdin()
    assert first.wait() == 0, first.stderr
    assert turn[0]["session_id"] == session_id
    assert turn[-1]["is_error"] is False

    second = spawn(server, ClaudeLaunchOptions(resume_session_id=session_id))
    second.send_user("What was the code word?")
    turn = second.read_turn()
    second.close_stdin()
    assert second.wait() == 0, second.stderr
    assert turn[0]["session_id"] == session_id
    assert turn[-1]["result"] == "It was PAPAYA."

    assert len(server.requests) == 2
    texts = message_texts(server.requests[1]["body"])
    assert any("The code word is PAPAYA." in t for t in texts)
    assert "Noted: the code word is PAPAYA." in texts
    assert any("What was the code word?" in t for t in texts)

"""Permission prompts of the real Claude Code CLI, through corral's Claude dialect.

No daemon: each test spawns the CLI as corral launches it (``build_argv`` with a
permission mode that asks, so ``--permission-prompt-tool=stdio``), feeds every
stdout line to :class:`ClaudeDialect` (writing back the replies it makes) and
answers its ``approval`` items with :meth:`ClaudeDialect.answer`. The model is
the fake Anthropic server. Every process is killed by PID at the end.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from corral.actors.normalized import Normalized
from corral.actors.ports import ApprovalDecision
from corral.supervisor.providers.claude.dialect import ClaudeDialect
from corral.supervisor.providers.claude.launch import ClaudeLaunchOptions, build_argv, build_env
from tests.support.claude_cli import claude_test_env, require_claude_cli
from tests.support.claude_fixtures import fake_anthropic as fake_anthropic
from tests.support.fake_anthropic import (
    FakeAnthropic,
    bash,
    reply,
    script_bash,
    script_question,
    text,
    text_reply,
    tool_results,
)

TURN_TIMEOUT = 30.0
EXIT_TIMEOUT = 15.0
COMMAND = "echo hi > out.txt"


@pytest.fixture(scope="module")
def claude_cli() -> Path:
    """The real CLI; without npm the tests skip, except in CI where they fail."""
    return require_claude_cli()


class DialectProcess:
    """The CLI with its stdout fed line by line to a :class:`ClaudeDialect`."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.dialect = ClaudeDialect()
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
        self.items: queue.Queue[Normalized | None] = queue.Queue()
        self.seen: list[Normalized] = []
        self.replies: list[bytes] = []
        self._stdin_lock = threading.Lock()
        self._stderr: list[bytes] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(self.proc.stdout,), daemon=True),
            threading.Thread(target=self._stderr.extend, args=(self.proc.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self, stream: IO[bytes]) -> None:
        for raw in stream:
            if not raw.strip():
                continue
            found, replies = self.dialect.feed(raw)
            self.replies.extend(replies)
            self.write(replies)
            for item in found:
                self.items.put(item)
        self.items.put(None)

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")

    def write(self, lines: list[bytes]) -> None:
        assert self.proc.stdin is not None
        with self._stdin_lock, contextlib.suppress(BrokenPipeError):
            for raw in lines:
                self.proc.stdin.write(raw)
            self.proc.stdin.flush()

    def prompt(self, text: str) -> None:
        self.write(self.dialect.prompt(text))

    def answer(self, approval: Normalized, decision: ApprovalDecision) -> None:
        assert approval.raw is not None
        lines = self.dialect.answer(approval.raw["request"], decision)
        assert lines, "the dialect could not answer"
        self.write(lines)

    def next_item(self, done: Callable[[Normalized], bool]) -> Normalized:
        """Items up to the first one ``done`` accepts (all are kept in ``seen``)."""
        deadline = time.monotonic() + TURN_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; got {self.seen}\n{self.stderr}")
            try:
                item = self.items.get(timeout=remaining)
            except queue.Empty:
                continue
            if item is None:
                raise AssertionError(f"stdout closed early; got {self.seen}\n{self.stderr}")
            self.seen.append(item)
            if done(item):
                return item

    def approval(self) -> Normalized:
        return self.next_item(lambda n: n.kind == "approval" or n.kind == "turn_end")

    def turn_end(self) -> Normalized:
        return self.next_item(lambda n: n.kind == "turn_end")

    def stop(self) -> None:
        """Close stdin, kill the process group led by our PID if still there, reap."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=EXIT_TIMEOUT)
        for reader in self._readers:
            reader.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    for name in ("home", "tmp", "work"):
        (tmp_path / name).mkdir()
    return tmp_path / "work"


@pytest.fixture
def spawn(claude_cli: Path, work: Path) -> Iterator[Callable[..., DialectProcess]]:
    """``spawn(server, mode="default", extra_args=())`` -> a CLI with a first prompt."""
    started: list[DialectProcess] = []

    def start(
        server: FakeAnthropic, mode: str = "default", extra_args: tuple[str, ...] = ()
    ) -> DialectProcess:
        base_env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
        test_env = claude_test_env(server.base_url, work.parent / "home", work.parent / "tmp")
        opts = ClaudeLaunchOptions(permission_mode=mode)
        argv = build_argv(str(claude_cli), opts)
        assert "--permission-prompt-tool=stdio" in argv
        process = DialectProcess(
            [*argv, *extra_args], build_env(base_env, test_env, {}, None), work
        )
        started.append(process)
        process.write(process.dialect.opening("go"))
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


def test_allowed_command_runs(spawn: Any, fake_anthropic: Any, work: Path) -> None:
    server = fake_anthropic(script_bash(COMMAND, "Wrote it."))
    claude = spawn(server)
    approval = claude.approval()
    assert (approval.kind, approval.tool_name, approval.text) == ("approval", "Bash", COMMAND)
    assert approval.tool_input is not None and approval.tool_input["command"] == COMMAND
    assert approval.tool_id is not None and approval.tool_id.startswith("toolu_")
    assert not (work / "out.txt").exists()  # it waits for the answer
    claude.answer(approval, ApprovalDecision(True))
    end = claude.turn_end()
    assert not end.is_error, end.text
    assert (work / "out.txt").read_text() == "hi\n"
    [result] = [n for n in claude.seen if n.kind == "tool_result"]
    assert (result.tool_id, result.is_error) == (approval.tool_id, False)


def test_denied_command_tells_the_model_why(spawn: Any, fake_anthropic: Any, work: Path) -> None:
    server = fake_anthropic(script_bash(COMMAND, "Understood."))
    claude = spawn(server)
    approval = claude.approval()
    claude.answer(approval, ApprovalDecision(False, "Not here: use a temp dir."))
    end = claude.turn_end()
    assert not end.is_error, end.text  # the turn goes on: the model reads the refusal
    assert not (work / "out.txt").exists()
    assert server.wait_for_requests(2)
    [result] = tool_results(server.requests[1]["body"])
    assert (result["content"], result["is_error"]) == ("Not here: use a temp dir.", True)
    assert result["tool_use_id"] == approval.tool_id


def test_remember_stops_the_same_call_from_asking(
    spawn: Any, fake_anthropic: Any, work: Path
) -> None:
    call = reply(text("Writing."), bash(COMMAND))
    server = fake_anthropic([call, text_reply("Once."), call, text_reply("Twice.")])
    claude = spawn(server)
    approval = claude.approval()
    assert approval.raw is not None
    suggestions = approval.raw["suggestions"]
    assert suggestions and all(s["destination"] == "session" for s in suggestions)
    claude.answer(approval, ApprovalDecision(True, remember=True, suggestions=suggestions))
    assert not claude.turn_end().is_error
    (work / "out.txt").unlink()
    claude.prompt("again")
    second = claude.approval()
    assert second.kind == "turn_end" and not second.is_error, second
    assert (work / "out.txt").read_text() == "hi\n"
    assert [n.kind for n in claude.seen].count("approval") == 1
    # remembered for the session only: nothing was written into the project
    assert not (work / ".claude").exists()


def test_question_is_answered_through_updated_input(spawn: Any, fake_anthropic: Any) -> None:
    question = "Which color should the button be?"
    server = fake_anthropic(script_question(question, ["Red", "Blue"], "Blue it is."))
    claude = spawn(server)
    approval = claude.approval()
    assert (approval.tool_name, approval.text) == (
        "AskUserQuestion",
        f"Question: {question} [Red | Blue]",
    )
    answers = {"answers": {question: "Blue"}}
    claude.answer(approval, ApprovalDecision(True, updated_input=answers))
    assert not claude.turn_end().is_error
    assert server.wait_for_requests(2)
    [result] = tool_results(server.requests[1]["body"])
    assert f'"{question}"="Blue"' in json.dumps(result["content"]).replace('\\"', '"')


def test_interrupt_withdraws_the_pending_prompt(spawn: Any, fake_anthropic: Any) -> None:
    server = fake_anthropic(script_bash(COMMAND))
    claude = spawn(server)
    approval = claude.approval()
    assert approval.raw is not None
    claude.write(claude.dialect.interrupt())
    cancelled = claude.next_item(lambda n: n.status == "approval_cancelled")
    assert cancelled.text == approval.raw["request"]["request_id"]
    assert claude.turn_end().is_error


def test_requests_corral_does_not_serve_are_refused(spawn: Any, fake_anthropic: Any) -> None:
    # an SDK-hosted MCP server makes the CLI send mcp_message requests to its host
    config = {"mcpServers": {"corral-test": {"type": "sdk", "name": "corral-test"}}}
    server = fake_anthropic([text_reply("No tools needed.")])
    claude = spawn(server, extra_args=(f"--mcp-config={json.dumps(config)}",))
    end = claude.turn_end()
    assert not end.is_error, end.text
    refused = [json.loads(raw)["response"] for raw in claude.replies]
    assert refused and {r["subtype"] for r in refused} == {"error"}
    assert all("mcp_message" in r["error"] for r in refused)

"""The real native ``codex app-server`` driven through CodexProtocol, against the fake API.

No daemon here: each test spawns the app-server as corral launches it
(:func:`build_argv`, :func:`build_env`, plus the offline test home), and a small
loop in the test feeds every stdout line to a :class:`CodexProtocol`, writes
back what it answers and collects the normalized items. Every process a test
starts (the app-server and any tool process it spawned) is stopped by PID.

The CLI is installed from npm into the test cache once. Without npm the tests
skip, except under CI, where a missing npm fails them.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from corral.actors.normalized import Normalized
from corral.supervisor.providers.codex.launch import (
    build_argv,
    build_env,
    codex_version,
    find_codex_binary,
)
from corral.supervisor.providers.codex.options import session_options
from corral.supervisor.providers.codex.protocol import CodexProtocol
from tests import conftest
from tests.support import fake_openai as fo
from tests.support.codex_cli import PINNED_VERSION, codex_test_env, install_prefix

TURN_TIMEOUT = 45.0
EXIT_TIMEOUT = 10.0

#: The conftest fixture, also taken from here by test_codex_approvals_raw.
codex_bin = conftest.codex_bin


# ------------------------------------------------------------------ /proc


def _stat(pid: int) -> tuple[int, int, str, str] | None:
    """(ppid, session id, start time, state) of a live process, else None."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            data = handle.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[3]), fields[19], fields[0]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def descendants(root: int) -> dict[int, str]:
    """Live processes below ``root`` (by parent, or in its session): pid -> start time."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (found := _stat(int(name))) is not None:
            table[int(name)] = found
    known = {root}
    out: dict[int, str] = {}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, sid, start, _state) in table.items():
            if pid not in known and (ppid in known or sid == root):
                known.add(pid)
                out[pid] = start
                changed = True
    return out


def alive(pid: int, start: str) -> bool:
    found = _stat(pid)
    return found is not None and found[2] == start


# ------------------------------------------------------------------ the driver


class AppServer:
    """One ``codex app-server`` driven by a CodexProtocol."""

    def __init__(
        self, binary: Path, home: Path, port: int, resume: str | None = None, **start: object
    ) -> None:
        self.work = home / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        test_env = codex_test_env(home, port)
        env = build_env(os.environ, {}, test_env, test_env["CODEX_HOME"])
        options = session_options(
            {"cwd": str(self.work), "permissionMode": "bypassPermissions", **start},
            resume_thread_id=resume,
        )
        self.protocol = CodexProtocol(options)
        self.proc = subprocess.Popen(
            build_argv(str(binary)),
            cwd=self.work,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.items: list[Normalized] = []
        self.seen: dict[int, str] = {}  # every descendant ever seen: pid -> start time
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.stderr: list[bytes] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self.lines.put(raw)
        self.lines.put(None)

    def _drain(self, stream: IO[bytes]) -> None:
        for chunk in stream:
            self.stderr.append(chunk)

    def write(self, lines: list[bytes]) -> None:
        assert self.proc.stdin is not None
        for line in lines:
            self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def pump(
        self, until: Callable[[list[Normalized]], bool], timeout: float = TURN_TIMEOUT
    ) -> None:
        """Feed stdout lines to the protocol until ``until(items)`` holds."""
        deadline = time.monotonic() + timeout
        while not until(self.items):
            self.seen.update(descendants(self.pid))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; items: {self.items}\n{self.stderr_text()}")
            try:
                raw = self.lines.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            if raw is None:
                raise AssertionError(
                    f"app-server exited; items: {self.items}\n{self.stderr_text()}"
                )
            items, replies = self.protocol.feed(raw)
            self.items.extend(items)
            if replies:
                self.write(replies)

    def turn_ends(self) -> list[Normalized]:
        return [n for n in self.items if n.kind == "turn_end"]

    def run_turn(self, prompt: str | None = None, *, first: bool = False) -> list[Normalized]:
        """Start a turn (the opening one when ``first``) and return its items."""
        before, ends = len(self.items), len(self.turn_ends())
        if first:
            self.write(self.protocol.opening(prompt or "hello"))
        else:
            self.write(self.protocol.prompt(prompt or "hello"))
        self.pump(lambda _items: len(self.turn_ends()) > ends)
        return self.items[before:]

    def stderr_text(self) -> str:
        return b"".join(self.stderr).decode("utf-8", "replace")[-3000:]

    def close(self) -> None:
        """Close stdin, wait for the exit, then kill whatever is left, by PID."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(EXIT_TIMEOUT)
        for pid, start in self.seen.items():
            if alive(pid, start):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def app_server(codex_bin: Path, tmp_path: Path) -> Iterator[Callable[..., AppServer]]:
    started: list[AppServer] = []

    def make(
        server: fo.FakeOpenAI, home: Path | None = None, resume: str | None = None, **start: object
    ) -> AppServer:
        home = home or tmp_path / f"run{len(started)}"
        app = AppServer(codex_bin, home, server.port, resume, **start)
        started.append(app)
        return app

    try:
        yield make
    finally:
        for app in started:
            app.close()


def kinds(items: list[Normalized], *wanted: str) -> list[Normalized]:
    return [n for n in items if n.kind in wanted]


# ------------------------------------------------------------------ tests


def test_the_installed_binary_is_the_native_one(codex_bin: Path) -> None:
    wrapper = install_prefix() / "node_modules" / ".bin" / "codex"
    assert find_codex_binary(str(wrapper), {})[0] == str(codex_bin)
    assert codex_version(str(codex_bin)) == f"codex-cli {PINNED_VERSION}"


def test_one_text_turn(app_server: Callable[..., AppServer]) -> None:
    with fo.FakeOpenAI(
        [fo.reply(fo.reasoning("Greeting."), fo.message("Hello from the fake model."))]
    ) as server:
        app = app_server(server, model="gpt-5.5")
        items = app.run_turn("Say hello", first=True)
        (init,) = kinds(items, "init")
        assert init.provider_session_id == app.protocol.thread_id and init.model == "gpt-5.5"
        assert init.cwd == str(app.work)
        assert [n.text for n in kinds(items, "thinking")] == ["Greeting."]
        assert [n.text for n in kinds(items, "text")] == ["Hello from the fake model."]
        (cost,) = kinds(items, "cost")
        assert (cost.input_tokens, cost.output_tokens, cost.context_window) == (10, 5, 258400)
        assert items[-1].kind == "turn_end" and not items[-1].is_error
        assert fo.user_texts(server.requests[0]["body"])[-1] == "Say hello"
        assert server.requests[0]["headers"]["originator"] == "corral"


def test_a_shell_command_really_runs(app_server: Callable[..., AppServer]) -> None:
    with fo.FakeOpenAI(fo.script_exec("echo hi", "It printed hi.")) as server:
        app = app_server(server)
        items = app.run_turn("Run echo hi", first=True)
        (call,) = kinds(items, "tool_call")
        assert call.tool_name == "Bash" and call.tool_input == {"command": "echo hi"}
        (result,) = kinds(items, "tool_result")
        assert result.tool_id == call.tool_id and result.text == "hi\n" and not result.is_error
        assert [n.text for n in kinds(items, "text")] == ["It printed hi."]
        assert items[-1].kind == "turn_end" and not items[-1].is_error
        assert any("hi" in out for out in fo.function_outputs(server.requests[1]["body"]))


def test_apply_patch_writes_the_file(app_server: Callable[..., AppServer]) -> None:
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hello from corral\n*** End Patch\n"
    with fo.FakeOpenAI([fo.reply(fo.apply_patch(patch)), fo.text_reply("Created.")]) as server:
        app = app_server(server)
        items = app.run_turn("Create hello.txt", first=True)
        (call,) = kinds(items, "tool_call")
        assert call.tool_name == "Write"
        assert call.tool_input == {
            "file_path": str(app.work / "hello.txt"),
            "content": "hello from corral\n",
        }
        (result,) = kinds(items, "tool_result")
        assert not result.is_error
        assert (app.work / "hello.txt").read_text() == "hello from corral\n"
        assert fo.function_outputs(server.requests[1]["body"])


def test_two_turns_in_one_process(app_server: Callable[..., AppServer]) -> None:
    with fo.FakeOpenAI([fo.text_reply("First answer."), fo.text_reply("Second answer.")]) as server:
        app = app_server(server)
        first = app.run_turn("One", first=True)
        second = app.run_turn("Two")
        assert [n.text for n in kinds(first, "text")] == ["First answer."]
        assert [n.text for n in kinds(second, "text")] == ["Second answer."]
        assert kinds(second, "init") == []
        assert not second[-1].is_error
        body = server.requests[1]["body"]
        assert fo.user_texts(body)[-2:] == ["One", "Two"]
        assert "First answer." in fo.assistant_texts(body)  # the history holds turn 1


def test_resume_in_a_new_process_continues_the_thread(
    app_server: Callable[..., AppServer], tmp_path: Path
) -> None:
    replies = [fo.text_reply("I will remember PAPAYA."), fo.text_reply("It was PAPAYA.")]
    with fo.FakeOpenAI(replies) as server:
        first = app_server(server, home=tmp_path / "home")
        first.run_turn("Remember PAPAYA", first=True)
        thread_id = first.protocol.thread_id
        first.close()
        assert first.proc.returncode == 0  # stdin EOF ends the app-server
        second = app_server(server, home=tmp_path / "home", resume=thread_id)
        items = second.run_turn("What was the word?", first=True)
        (init,) = kinds(items, "init")
        assert init.provider_session_id == thread_id
        assert [n.text for n in kinds(items, "text")] == ["It was PAPAYA."]
        costs = kinds(items, "cost")
        assert costs[-1].input_tokens == 10  # this turn only, not the replayed totals
        assert not items[-1].is_error
        body = server.requests[1]["body"]
        assert "I will remember PAPAYA." in fo.assistant_texts(body)


def test_resuming_an_unknown_thread_fails_the_start(
    app_server: Callable[..., AppServer],
) -> None:
    with fo.FakeOpenAI([]) as server:
        app = app_server(server, resume="00000000-0000-7000-8000-000000000000")
        items = app.run_turn("hello", first=True)
        assert [n.kind for n in items] == ["error", "turn_end"]
        assert items[-1].is_error and items[-1].error_info == "resume_failed"
        assert "no rollout found" in items[-1].text
        assert server.requests == []


def test_interrupt_during_a_command_and_clean_leaves_no_sleep(
    app_server: Callable[..., AppServer],
) -> None:
    with fo.FakeOpenAI([fo.reply(fo.exec_command("sleep 30")), fo.text_reply("after")]) as server:
        app = app_server(server)
        app.write(app.protocol.opening("Sleep for 30 seconds"))
        app.pump(lambda items: bool(kinds(items, "tool_call")))

        def sleeping() -> dict[int, str]:
            return {p: s for p, s in descendants(app.pid).items() if "sleep 30" in _cmdline(p)}

        deadline = time.monotonic() + 10
        while not (sleepers := sleeping()):
            assert time.monotonic() < deadline, "no sleep process appeared"
            time.sleep(0.05)
        app.seen.update(sleepers)
        app.write(app.protocol.interrupt())
        app.pump(lambda _items: bool(app.turn_ends()))
        end = app.turn_ends()[0]
        assert end.is_error and end.text == "interrupted"
        (result,) = kinds(app.items, "tool_result")
        assert result.is_error and result.text == "interrupted"
        # clean's answer (and the late item/completed) arrive after the turn ended
        deadline = time.monotonic() + 10
        while any(alive(pid, start) for pid, start in sleepers.items()):
            assert time.monotonic() < deadline, f"sleep survived the clean: {sleepers}"
            try:
                app.pump(lambda _items: False, timeout=0.2)
            except AssertionError:
                pass
        assert len(kinds(app.items, "tool_result")) == 1
        assert app.proc.poll() is None  # the app-server itself lives on
        after = app.run_turn("Continue")
        assert [n.text for n in kinds(after, "text")] == ["after"]


def test_http_500_fails_the_turn_and_the_next_turn_works(
    app_server: Callable[..., AppServer],
) -> None:
    def script(body: dict[str, object]) -> fo.Response:
        if fo.user_texts(body)[-1] == "Try again":
            return fo.text_reply("Recovered.")
        return fo.error(500, "fake internal error")

    with fo.FakeOpenAI(script) as server:
        app = app_server(server)
        failed = app.run_turn("Say hello", first=True)
        assert [n.status for n in kinds(failed, "status")] == ["retrying"]
        end = failed[-1]
        assert end.kind == "turn_end" and end.is_error
        assert end.error_info == "internalServerError"
        assert [n.text for n in kinds(failed, "error")] == [end.text]
        recovered = app.run_turn("Try again")
        assert [n.text for n in kinds(recovered, "text")] == ["Recovered."]
        assert not recovered[-1].is_error
        assert len(server.requests) >= 3


def test_a_failed_stream_is_retried_then_fails(app_server: Callable[..., AppServer]) -> None:
    broken = fo.failed("fake response.failed", fo.message("partial "))
    with fo.FakeOpenAI([broken, broken, fo.text_reply("ok")]) as server:
        app = app_server(server)
        items = app.run_turn("Say hello", first=True)
        assert [n.status for n in kinds(items, "status")] == ["retrying"]
        assert items[-1].is_error and "fake response.failed" in items[-1].text
        assert len(server.requests) == 2

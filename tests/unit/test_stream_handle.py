"""StdioStreamHandle's control calls never block (the ProviderHandle contract).

The provider here is ``sleep``: it never reads its stdin, so once the pipe is
full every write blocks, as with a provider that hangs. ``stop_turn`` and
``close`` must still return at once, and the signal ladder must end the process
(which also frees the blocked writer).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.actors.normalized import Normalized
from corral.actors.ports import ExitReport, LaunchRequest
from corral.supervisor.providers.handles import stdio_stream as base
from corral.supervisor.providers.handles.stdio_stream import (
    PromptLines,
    StdioSpec,
    StdioStreamHandle,
    StreamParser,
)
from tests.support.proc import pid_alive

BIG_PROMPT = "x" * (4 * 1024 * 1024)  # far more than a pipe buffer holds
RETURNS_WITHIN_S = 1.0
EXIT_WITHIN_S = 10.0


class _NoParser:
    def feed_line(self, line: bytes | str) -> list[Normalized]:
        return []


class _TextParser:
    def feed_line(self, line: bytes | str) -> list[Normalized]:
        return [Normalized("text", text=str(line))]


def make_handle(
    tmp_path: Path,
    argv: list[str],
    *,
    on_exit: Callable[[ExitReport], None],
    on_messages: Callable[[list[Normalized], Callable[[], None]], None] = (
        lambda _items, _done: None
    ),
    parser: StreamParser | None = None,
    interrupt: bytes | None = b'{"type":"control_request"}\n',
    name: str = "test-handle",
) -> StdioStreamHandle:
    """A started handle on `argv` (prompts are written as plain lines)."""
    spec = StdioSpec(
        argv=argv,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        cwd=str(tmp_path),
        protocol=PromptLines(
            parser or _NoParser(),
            lambda text: text.encode() + b"\n",
            (lambda: interrupt) if interrupt is not None else None,
        ),
    )
    request = LaunchRequest(
        session_id="s1",
        project_id="p1",
        provider="test",
        options={},
        prompt="hello",
        resume_id=None,
        settings={},
        on_messages=on_messages,
        on_exit=on_exit,
    )
    h = StdioStreamHandle(spec, request, name=name)
    h.start("hello")
    return h


def kill_and_wait(h: StdioStreamHandle) -> None:
    pid = h.pid
    if pid is not None and pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    h.wait_exit(EXIT_WITHIN_S)


@pytest.fixture(autouse=True)
def short_ladder(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INTERRUPT_GRACE_S", "SIGINT_GRACE_S", "SIGTERM_GRACE_S", "CLOSE_GRACE_S"):
        monkeypatch.setattr(base, name, 0.3)


@pytest.fixture
def handle(tmp_path: Path) -> Iterator[tuple[StdioStreamHandle, list[ExitReport]]]:
    exits: list[ExitReport] = []
    h = make_handle(tmp_path, ["sleep", "60"], on_exit=exits.append)
    try:
        yield h, exits
    finally:
        kill_and_wait(h)


def _blocked_writer(h: StdioStreamHandle) -> tuple[threading.Thread, list[bool]]:
    """A thread stuck in send_prompt on the full stdin pipe."""
    sent: list[bool] = []
    writer = threading.Thread(target=lambda: sent.append(h.send_prompt(BIG_PROMPT)), daemon=True)
    writer.start()
    time.sleep(0.2)
    assert writer.is_alive(), "the write should be blocked on the full pipe"
    return writer, sent


def _returns_at_once(call: object) -> None:
    assert callable(call)
    caller = threading.Thread(target=call, daemon=True)
    began = time.monotonic()
    caller.start()
    caller.join(RETURNS_WITHIN_S)
    assert not caller.is_alive(), "the call blocked behind the stdin writer"
    assert time.monotonic() - began < RETURNS_WITHIN_S


@pytest.mark.parametrize("method", ["stop_turn", "close"])
def test_control_does_not_block_behind_a_stuck_stdin(
    method: str, handle: tuple[StdioStreamHandle, list[ExitReport]]
) -> None:
    h, exits = handle
    pid = h.pid
    assert pid is not None
    writer, sent = _blocked_writer(h)

    _returns_at_once(getattr(h, method))

    assert h.wait_exit(EXIT_WITHIN_S)
    assert not pid_alive(pid)
    writer.join(EXIT_WITHIN_S)
    assert not writer.is_alive()
    assert sent == [False]  # the dead process's pipe refused the rest
    assert len(exits) == 1 and exits[0].stopped_by_us


def test_stop_turn_still_sends_the_interrupt_and_eof(tmp_path: Path) -> None:
    """With a provider that reads stdin, the interrupt line and EOF still arrive."""
    out = tmp_path / "stdin.txt"
    exits: list[ExitReport] = []
    done = threading.Event()

    def exited(report: ExitReport) -> None:
        exits.append(report)
        done.set()

    h = make_handle(
        tmp_path,
        ["sh", "-c", f"cat > {out}"],
        on_exit=exited,
        interrupt=b"INTERRUPT\n",
        name="test-cat",
    )
    try:
        _returns_at_once(h.stop_turn)
        assert done.wait(EXIT_WITHIN_S)
        assert exits[0].returncode == 0  # cat ended on EOF, before any signal
        assert out.read_text() == "hello\nINTERRUPT\n"
        assert h.send_prompt("late") is False
    finally:
        kill_and_wait(h)


def test_unacknowledged_output_holds_the_provider_back(tmp_path: Path) -> None:
    """Flow control: with no commits acknowledged, at most BATCHES_IN_FLIGHT reads
    are handed over; the provider then blocks on its own stdout. Closing the
    handle releases the reader, so the process still ends and reports its exit."""
    handed: list[list[Normalized]] = []
    exits: list[ExitReport] = []
    writer = (
        "import sys\n"
        "for i in range(200000):\n"
        "    sys.stdout.write('line %d\\n' % i)\n"
        "    sys.stdout.flush()\n"
        "print('finished', file=sys.stderr, flush=True)\n"
    )
    h = make_handle(
        tmp_path,
        [sys.executable, "-c", writer],
        on_exit=exits.append,
        on_messages=lambda items, _done: handed.append(items),  # never acknowledges
        parser=_TextParser(),
        interrupt=None,
        name="flow",
    )
    try:
        deadline = time.monotonic() + 10
        while len(handed) < base.BATCHES_IN_FLIGHT and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        assert len(handed) == base.BATCHES_IN_FLIGHT
        assert h.alive  # blocked on its stdout, not finished
        lines = sum(len(batch) for batch in handed)
        assert lines < 200000
        h.close()
        assert h.wait_exit(EXIT_WITHIN_S)
        assert len(exits) == 1
    finally:
        kill_and_wait(h)

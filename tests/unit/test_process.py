"""Tests for supervisor.process (ProviderProcess, LineSplitter) and supervisor.proctools."""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from corral.supervisor.process import ExitInfo, LineSplitter, ProviderProcess, _pin
from corral.supervisor.proctools import (
    children_of,
    descendants,
    is_subreaper,
    parent_of,
    pid_alive,
    pids_in_group,
    proc_stat,
    process_group_of,
    read_stat,
)
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.timeout(30)

PY = sys.executable
SLEEP = shutil.which("sleep") or "sleep"


def read_line(stream: Any, timeout: float = 10.0) -> bytes:
    """One line from a child's pipe, waiting at most ``timeout`` seconds for it to start."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "no line from the child"
    line: bytes = stream.readline()
    return line


def kill_if_same(pid: int, start: int | None) -> None:
    """SIGKILL ``pid`` if it is still the live process that started at ``start``."""
    st = proc_stat(pid)
    if st is not None and not st.dead and st.start == start:
        os.kill(pid, signal.SIGKILL)


def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


@dataclass
class Rec:
    lines: list[bytes] = field(default_factory=list)
    exits: list[ExitInfo] = field(default_factory=list)
    lines_at_exit: int = -1
    exit_thread: str = ""
    line_threads: set[str] = field(default_factory=set)

    def on_line(self, line: bytes) -> None:
        self.line_threads.add(threading.current_thread().name)
        self.lines.append(line)

    def on_exit(self, info: ExitInfo) -> None:
        self.lines_at_exit = len(self.lines)
        self.exit_thread = threading.current_thread().name
        self.exits.append(info)

    def wait_lines(self, n: int, timeout: float = 5.0) -> list[bytes]:
        assert wait_until(lambda: len(self.lines) >= n, timeout), self.lines
        return self.lines


class Harness:
    """Starts children in a tmp dir and stops every one of them afterwards."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[ProviderProcess] = []
        self.extra: list[tuple[int, int]] = []  # (pid, expected pgid)
        self.idents: list[tuple[int, int | None]] = []  # (pid, start time)

    def spawn(self, code: str, rec: Rec | None = None, **kw: Any) -> tuple[ProviderProcess, Rec]:
        rec = rec or Rec()
        kw.setdefault("env", {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        kw.setdefault("cwd", str(self.tmp))
        kw.setdefault("on_line", rec.on_line)
        kw.setdefault("on_exit", rec.on_exit)
        proc = ProviderProcess([PY, "-c", code], **kw)
        self.procs.append(proc)
        proc.start()
        return proc, rec

    def track(self, pid: int, pgid: int) -> None:
        self.extra.append((pid, pgid))

    def track_ident(self, pid: int) -> None:
        """Kill ``pid`` at cleanup if it is still the process it is now."""
        st = proc_stat(pid)
        self.idents.append((pid, st.start if st is not None else None))

    def cleanup(self) -> None:
        for proc in self.procs:
            pid = proc.pid
            if pid is None:
                continue
            proc.terminate(())
            if proc.wait(5.0) is None and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        for pid, pgid in self.extra:
            if process_group_of(pid) == pgid:
                os.kill(pid, signal.SIGKILL)
        for pid, start in self.idents:
            kill_if_same(pid, start)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        harness.cleanup()


READY_IGNORING_TERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


# ----------------------------------------------------------------- splitter


def expected_lines(raw: bytes, cap: int) -> list[bytes]:
    parts = raw.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    out = []
    for part in parts:
        if part.endswith(b"\r"):
            part = part[:-1]
        out.append(part[:cap])
    return out


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=12),
    crs=st.lists(st.booleans(), min_size=12, max_size=12),
    trailing_nl=st.booleans(),
    cap=st.integers(min_value=1, max_value=30),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=10),
)
def test_line_splitter_matches_model(
    lines: list[bytes], crs: list[bool], trailing_nl: bool, cap: int, cuts: list[int]
) -> None:
    raw = b"\n".join(line + (b"\r" if cr else b"") for line, cr in zip(lines, crs, strict=False))
    if lines and trailing_nl:
        raw += b"\n"
    splitter = LineSplitter(cap)
    got: list[bytes] = []
    prev = 0
    for cut in [*sorted({min(c, len(raw)) for c in cuts}), len(raw)]:
        got += splitter.feed(raw[prev:cut])
        prev = cut
    last = splitter.finish()
    if last is not None:
        got.append(last)
    assert got == expected_lines(raw, cap)
    assert all(len(line) <= cap for line in got)


def test_line_splitter_counts_truncation() -> None:
    s = LineSplitter(4)
    assert s.feed(b"abcdefgh") == [b"abcd"]
    assert s.feed(b"ijk\nxy\r\n") == [b"xy"]
    assert s.truncated_lines == 1
    assert s.discarded_bytes == 7
    assert s.finish() is None


# ------------------------------------------------------------------- output


def test_lines_in_order_crlf_and_unterminated_last_line(h: Harness) -> None:
    code = (
        "import sys\n"
        "w = sys.stdout.buffer.write\n"
        "for i in range(2000): w(b'line %d\\n' % i)\n"
        "w(b'crlf\\r\\n\\nlast')\n"
    )
    p, rec = h.spawn(code)
    info = p.wait(10)
    assert info is not None and info.returncode == 0
    want = [b"line %d" % i for i in range(2000)] + [b"crlf", b"", b"last"]
    assert rec.lines == want
    assert rec.exits == [info]
    assert rec.lines_at_exit == len(want)  # on_exit after every on_line
    assert rec.line_threads == {rec.exit_thread}  # all on the reader thread


def test_on_lines_gets_whole_reads_in_order(h: Harness) -> None:
    batches: list[list[bytes]] = []
    code = (
        "import sys\n"
        "w = sys.stdout.buffer.write\n"
        "w(b''.join(b'line %d\\n' % i for i in range(3000)))\n"
        "w(b'tail')\n"
    )
    p, rec = h.spawn(code, on_line=None, on_lines=batches.append)
    info = p.wait(10)
    assert info is not None and info.returncode == 0
    flat = [line for batch in batches for line in batch]
    assert flat == [b"line %d" % i for i in range(3000)] + [b"tail"]
    assert len(batches) < 3000  # several lines per hand-off
    assert all(batches)  # never an empty batch
    assert rec.exits == [info]


def test_exactly_one_line_callback(h: Harness) -> None:
    both = {"on_line": lambda line: None, "on_lines": lambda lines: None}
    for kw in ({"on_line": None}, both):
        with pytest.raises(ValueError, match="exactly one"):
            ProviderProcess(
                [PY, "-c", "pass"], env={}, cwd=str(h.tmp), on_exit=lambda info: None, **kw
            )  # type: ignore[arg-type]


def test_huge_line_is_truncated_not_buffered(h: Harness) -> None:
    code = (
        "import sys\n"
        "w = sys.stdout.buffer.write\n"
        "w(b'a' * 3_000_000 + b'\\n')\n"
        "w(b'next\\n')\n"
        "w(b'b' * 500_000)\n"
    )
    p, rec = h.spawn(code, max_line_bytes=1000)
    info = p.wait(10)
    assert info is not None and info.returncode == 0
    assert rec.lines == [b"a" * 1000, b"next", b"b" * 1000]
    assert p.truncated_lines == 2


def test_on_line_exception_does_not_kill_reader(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Rec()

    def bad_on_line(line: bytes) -> None:
        rec.on_line(line)
        if line == b"boom":
            raise RuntimeError("callback bug")

    code = "print('boom'); print('after', flush=True)"
    with caplog.at_level(logging.ERROR, logger="corral.process"):
        p, _ = h.spawn(code, rec=rec, on_line=bad_on_line)
        info = p.wait(10)
    assert info is not None
    assert rec.lines == [b"boom", b"after"]
    assert len(rec.exits) == 1
    assert any(r.name == "corral.process" and r.exc_info for r in caplog.records)


def test_on_exit_exception_is_contained(h: Harness) -> None:
    def bad_on_exit(info: ExitInfo) -> None:
        raise RuntimeError("exit callback bug")

    p, _ = h.spawn("pass", on_exit=bad_on_exit)
    info = p.wait(10)
    assert info is not None and info.returncode == 0


def test_cwd_and_env_passed_exactly(h: Harness) -> None:
    code = "import os; print(os.getcwd()); print(os.environ.get('CORRAL_T', '-'), flush=True)"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CORRAL_T": "v1"}
    p, rec = h.spawn(code, env=env)
    assert p.wait(10) is not None
    assert rec.lines == [os.fsencode(os.path.realpath(h.tmp)), b"v1"]


def test_stderr_tail_is_bounded(h: Harness) -> None:
    code = (
        "import sys\ne = sys.stderr.buffer\ne.write(b'x' * 200_000 + b'\\xff')\ne.write(b'END')\n"
    )
    p, _ = h.spawn(code, stderr_tail_bytes=1000)
    info = p.wait(10)
    assert info is not None
    assert info.stderr_tail.endswith("\ufffdEND")
    assert len(info.stderr_tail) <= 1000
    assert p.stderr_tail == info.stderr_tail


# -------------------------------------------------------------------- stdin


def test_large_write_to_a_reading_child_completes(h: Harness) -> None:
    code = "import sys\nn = len(sys.stdin.buffer.read())\nprint(n, flush=True)\n"
    p, rec = h.spawn(code, stdin_pipe=True)
    payload = b"x" * (1 << 20)  # far beyond the pipe buffer
    assert p.write(payload, timeout=20)
    p.close_stdin()
    assert p.wait(10) is not None
    assert rec.lines == [str(len(payload)).encode()]


def test_write_to_a_child_that_never_reads_gives_up_at_its_deadline(h: Harness) -> None:
    p, _rec = h.spawn("import time\ntime.sleep(60)\n", stdin_pipe=True)
    started = time.monotonic()
    assert p.write(b"y" * (1 << 20), timeout=0.5) is False
    assert time.monotonic() - started < 10  # bounded, not stuck behind a full pipe
    assert p.alive  # giving up a write does not touch the process


def test_stdin_round_trip_and_write_after_close(h: Harness) -> None:
    code = (
        "import sys\n"
        "for line in sys.stdin:\n"
        "    print('echo:' + line.strip(), flush=True)\n"
        "print('eof', flush=True)\n"
    )
    p, rec = h.spawn(code, stdin_pipe=True)
    assert p.write(b"hello\n")
    assert rec.wait_lines(1) == [b"echo:hello"]
    assert p.write(b"world\n")
    rec.wait_lines(2)
    p.close_stdin()
    p.close_stdin()  # idempotent
    assert p.write(b"late\n") is False
    info = p.wait(10)
    assert info is not None and info.returncode == 0
    assert rec.lines == [b"echo:hello", b"echo:world", b"eof"]


def test_write_without_stdin_pipe_or_after_exit(h: Harness) -> None:
    p, _ = h.spawn("pass")
    assert p.write(b"x\n") is False
    assert p.wait(10) is not None
    q, _ = h.spawn("pass", stdin_pipe=True)
    assert q.wait(10) is not None
    assert q.write(b"x\n") is False


def test_write_to_dead_reader_returns_false(h: Harness) -> None:
    # Child closes its stdin but keeps running: writes hit a broken pipe.
    code = "import os, time; os.close(0); print('closed', flush=True); time.sleep(60)"
    p, rec = h.spawn(code, stdin_pipe=True)
    rec.wait_lines(1)
    assert p.write(b"x" * 1024) is False
    p.terminate(((signal.SIGTERM, 1.0),))
    assert p.wait(5) is not None


# ---------------------------------------------------------------- exit info


def test_exit_code_recorded(h: Harness) -> None:
    p, _ = h.spawn("import sys; sys.exit(3)")
    info = p.wait(10)
    assert info is not None
    assert (info.returncode, info.signal) == (3, None)
    assert info.pid == p.pid
    assert not info.stopped_by_us and info.leftover_killed == 0
    assert not p.alive


def test_signal_recorded(h: Harness) -> None:
    p, _ = h.spawn("import os, signal; os.kill(os.getpid(), signal.SIGUSR1)")
    info = p.wait(10)
    assert info is not None
    assert info.returncode == -signal.SIGUSR1
    assert info.signal == signal.SIGUSR1
    assert not info.stopped_by_us


def test_exits_immediately_printing_nothing_on_exit_once(h: Harness) -> None:
    p, rec = h.spawn("pass")
    info = p.wait(10)
    assert info is not None and info.returncode == 0
    p.terminate()  # no-op after the exit
    assert p.send_signal(signal.SIGTERM) is False
    time.sleep(0.1)
    assert rec.lines == [] and rec.exits == [info]
    assert p.wait(0) is info


def test_child_runs_in_own_group_and_send_signal(h: Harness) -> None:
    code = "import os; print(os.getpgrp(), os.getsid(0), flush=True); import time; time.sleep(60)"
    p, rec = h.spawn(code)
    assert p.pid is not None
    line = rec.wait_lines(1)[0]
    assert line == b"%d %d" % (p.pid, p.pid)
    assert p.alive
    assert pids_in_group(p.pid) == [p.pid]
    assert p.send_signal(signal.SIGINT)
    info = p.wait(5)
    assert info is not None
    assert info.returncode in (1, -signal.SIGINT)  # KeyboardInterrupt or the signal
    assert not info.stopped_by_us


def test_closes_stdout_early_but_keeps_running(h: Harness) -> None:
    code = "import os, sys, time\nprint('ready', flush=True)\nos.close(1)\ntime.sleep(60)\n"
    p, rec = h.spawn(code)
    rec.wait_lines(1)
    assert p.wait(0.3) is None  # stdout EOF is not the exit
    assert p.alive and rec.exits == []
    p.terminate(((signal.SIGTERM, 2.0),))
    info = p.wait(5)
    assert info is not None and info.signal == signal.SIGTERM and info.stopped_by_us
    assert rec.lines == [b"ready"] and rec.exits == [info]


# ---------------------------------------------------------------- terminate


def test_terminate_graceful(h: Harness) -> None:
    p, rec = h.spawn("print('ready', flush=True); import time; time.sleep(60)")
    rec.wait_lines(1)
    start = time.monotonic()
    p.terminate(((signal.SIGTERM, 5.0),))
    info = p.wait(5)
    assert info is not None
    assert time.monotonic() - start < 2.0
    assert info.signal == signal.SIGTERM and info.stopped_by_us


def test_terminate_ladder_ends_with_sigkill(h: Harness) -> None:
    code = READY_IGNORING_TERM.replace(
        "print(", "signal.signal(signal.SIGINT, signal.SIG_IGN)\nprint("
    )
    p, rec = h.spawn(code)
    rec.wait_lines(1)
    start = time.monotonic()
    p.terminate(((signal.SIGTERM, 0.3), (signal.SIGINT, 0.2)), kill_after=0.1)
    p.terminate()  # second call while running, with a later deadline: nothing changes
    info = p.wait(5)
    elapsed = time.monotonic() - start
    assert info is not None
    assert info.signal == signal.SIGKILL and info.stopped_by_us
    assert 0.55 <= elapsed < 2.5  # both graces and kill_after were honoured


def test_terminate_ignoring_child_gets_sigkill_within_grace(h: Harness) -> None:
    p, rec = h.spawn(READY_IGNORING_TERM)
    rec.wait_lines(1)
    start = time.monotonic()
    p.terminate(((signal.SIGTERM, 0.4),))
    info = p.wait(5)
    elapsed = time.monotonic() - start
    assert info is not None
    assert info.signal == signal.SIGKILL and info.returncode == -signal.SIGKILL
    assert info.stopped_by_us
    assert 0.35 <= elapsed < 2.5
    assert len(p.stderr_tail) == 0


def test_second_terminate_makes_it_more_urgent(h: Harness) -> None:
    p, rec = h.spawn(READY_IGNORING_TERM)
    rec.wait_lines(1)
    start = time.monotonic()
    p.terminate(((signal.SIGTERM, 30.0),))
    time.sleep(0.1)
    assert p.alive
    p.terminate(())  # kill now
    info = p.wait(5)
    assert info is not None and info.signal == signal.SIGKILL
    assert time.monotonic() - start < 2.0
    assert rec.exits == [info]


def test_terminate_from_many_threads(h: Harness) -> None:
    p, rec = h.spawn(READY_IGNORING_TERM)
    rec.wait_lines(1)
    threads = [
        threading.Thread(target=p.terminate, args=(((signal.SIGTERM, 0.2),),)) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    info = p.wait(5)
    assert info is not None and info.signal == signal.SIGKILL
    assert rec.exits == [info]


# ------------------------------------------------------------ grandchildren

SPAWN_GRANDCHILD = (
    "import subprocess, sys, time\n"
    "g = subprocess.Popen([{sleep!r}, '60'], {redirect})\n"
    "print(g.pid, flush=True)\n"
    "{tail}\n"
)


def grandchild_code(*, hold_stdout: bool, tail: str, own_session: bool = False) -> str:
    redirect = "" if hold_stdout else "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL"
    if own_session:
        redirect += ", start_new_session=True"
    return SPAWN_GRANDCHILD.format(sleep=SLEEP, redirect=redirect.lstrip(", "), tail=tail)


def test_grandchild_killed_by_terminate(h: Harness) -> None:
    code = grandchild_code(hold_stdout=False, tail="time.sleep(60)")
    p, rec = h.spawn(code)
    assert p.pid is not None
    gpid = int(rec.wait_lines(1)[0])
    h.track(gpid, p.pid)
    assert process_group_of(gpid) == p.pid
    assert pids_in_group(p.pid) == sorted([p.pid, gpid])
    p.terminate(((signal.SIGTERM, 2.0),))
    info = p.wait(5)
    assert info is not None and info.stopped_by_us
    assert wait_until(lambda: not pid_alive(gpid), 3.0)
    assert pids_in_group(p.pid) == []


def test_grandchild_killed_when_leader_exits(h: Harness) -> None:
    code = grandchild_code(hold_stdout=False, tail="sys.exit(0)")
    p, rec = h.spawn(code)
    assert p.pid is not None
    info = p.wait(5)
    assert info is not None
    gpid = int(rec.lines[0])
    h.track(gpid, p.pid)
    assert info.returncode == 0 and not info.stopped_by_us
    assert info.leftover_killed == 1
    assert wait_until(lambda: not pid_alive(gpid), 3.0)


def test_grandchild_holding_stdout_does_not_block_exit(h: Harness) -> None:
    code = grandchild_code(hold_stdout=True, tail="sys.exit(4)")
    p, rec = h.spawn(code, drain_timeout=30.0)  # EOF must come from the group kill
    assert p.pid is not None
    start = time.monotonic()
    info = p.wait(5)
    assert info is not None, "on_exit did not fire"
    assert time.monotonic() - start < 3.0
    gpid = int(rec.lines[0])
    h.track(gpid, p.pid)
    assert info.returncode == 4 and info.leftover_killed >= 1
    assert wait_until(lambda: not pid_alive(gpid), 3.0)
    assert rec.exits == [info]


HOLDER = (
    "import socket, sys, time\n"
    "srv = socket.socket(socket.AF_UNIX)\n"
    "srv.bind('\\0' + sys.argv[1])  # an abstract address: no file\n"
    "srv.listen(1)\n"
    "print('listening', flush=True)\n"
    "conn, _ = srv.accept()\n"
    "_, fds, _, _ = socket.recv_fds(conn, 16, 4)\n"
    "conn.sendall(b'k')\n"
    "time.sleep(60)\n"
)


def test_stdout_held_outside_the_tree_ends_by_drain_timeout(h: Harness) -> None:
    # A process that is no descendant (it got stdout over a socket) keeps the
    # pipe open: nothing to kill there, only the drain timeout ends the read.
    name = f"corral-test-{uuid.uuid4().hex}"
    address = "\0" + name
    holder = subprocess.Popen(
        [PY, "-c", HOLDER, name], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert read_line(holder.stdout) == b"listening\n"
        code = (
            "import socket\n"
            f"s = socket.socket(socket.AF_UNIX); s.connect({address!r})\n"
            "socket.send_fds(s, [b'x'], [1]); s.recv(1)\n"
            "print('handed over', flush=True)\n"
        )
        p, rec = h.spawn(code, drain_timeout=0.3)
        start = time.monotonic()
        info = p.wait(10)
        assert info is not None
        assert time.monotonic() - start < 5.0
        assert info.returncode == 0 and info.leftover_killed == 0
        assert rec.lines == [b"handed over"]
        assert holder.poll() is None  # not ours to kill
    finally:
        holder.kill()
        holder.wait(5)


# ------------------------------------------------- descendants outside the group


def escaped_grandchild(h: Harness, tail: str, **kw: Any) -> tuple[ProviderProcess, Rec, int]:
    """A provider whose child runs ``sleep 60`` in a session of its own."""
    code = grandchild_code(hold_stdout=False, tail=tail, own_session=True)
    p, rec = h.spawn(code, **kw)
    gpid = int(rec.wait_lines(1)[0])
    h.track_ident(gpid)
    assert p.pid is not None
    assert process_group_of(gpid) == gpid  # outside the provider's group and session
    return p, rec, gpid


def test_escaped_grandchild_killed_after_the_leader_is_sigkilled(h: Harness) -> None:
    p, _, gpid = escaped_grandchild(h, "time.sleep(60)")
    assert p.pid is not None
    assert wait_until(lambda: gpid in p.descendants, 3.0)  # the periodic snapshot
    os.kill(p.pid, signal.SIGKILL)  # a crash: no ladder ran
    info = p.wait(5)
    assert info is not None
    assert info.signal == signal.SIGKILL and not info.stopped_by_us
    assert info.leftover_killed == 1
    assert wait_until(lambda: not pid_alive(gpid), 3.0)
    assert p.descendants == []


def test_escaped_grandchild_killed_when_the_leader_exits(h: Harness) -> None:
    p, _, gpid = escaped_grandchild(h, "sys.stdin.readline()\nsys.exit(5)", stdin_pipe=True)
    assert wait_until(lambda: gpid in p.descendants, 3.0)
    p.close_stdin()
    info = p.wait(5)
    assert info is not None
    assert info.returncode == 5 and info.leftover_killed == 1
    assert wait_until(lambda: not pid_alive(gpid), 3.0)


def test_ladder_walks_the_tree_before_its_sigkill(h: Harness) -> None:
    # No wait for the periodic snapshot: the ladder refreshes it before signalling.
    p, _, gpid = escaped_grandchild(h, "time.sleep(60)")
    p.terminate(())
    info = p.wait(5)
    assert info is not None
    assert info.signal == signal.SIGKILL and info.stopped_by_us
    assert info.leftover_killed == 1
    assert wait_until(lambda: not pid_alive(gpid), 3.0)


def test_pin_refuses_a_process_with_another_start_time() -> None:
    # What guards a recorded PID against reuse: (pid, start time) must match.
    proc = subprocess.Popen([SLEEP, "60"])
    try:
        st = proc_stat(proc.pid)
        assert st is not None
        assert _pin(proc.pid, st.start + 1) is None
        pin = _pin(proc.pid, st.start)
        assert pin is not None
        try:
            assert pin.send(signal.SIGKILL)
        finally:
            pin.close()
        assert proc.wait(5) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


# The subreaper scenarios run in a helper process that makes *itself* the
# subreaper.  The pytest process must never become one (the attribute cannot
# be scoped to a test, and tests run one after another in it): the orphans of
# other tests (the providers of a daemon a test SIGKILLs, escaped
# grandchildren) would be reparented to it and linger as zombies nobody
# reaps, and its own descendant tracker would take them for orphans of
# whatever ProviderProcess runs here and kill them with it.

SCENARIO_LEADER = """\
import json, subprocess, sys, time
P, NULL = subprocess.PIPE, subprocess.DEVNULL

def bg(argv, **kw):
    proc = subprocess.Popen(argv, stdout=P, **kw)
    return proc, int(proc.stdout.readline())

def sh(script, **kw):
    return bg(["/bin/sh", "-c", script], **kw)

def say(**kw):
    print(json.dumps(kw), flush=True)

tool, tool_bg = sh("sleep 60 & echo $!; wait", start_new_session=True, stdin=NULL)
mid, mid_bg = sh("sleep 60 & echo $!; read x", start_new_session=True, stdin=P)
short, short_bg = sh("sleep 1 & echo $!", start_new_session=True, stdin=NULL)
short.wait()
lone, lone_bg = bg([sys.executable, "-c", sys.argv[1]], stdin=P)
say(tool=tool.pid, tool_bg=tool_bg, mid=mid.pid, mid_bg=mid_bg, short_bg=short_bg,
    lone=lone.pid, lone_bg=lone_bg)
sys.stdin.readline()
for proc in (mid, lone):
    proc.stdin.close()
    proc.wait()
say(released=True)
sys.stdin.readline()
late, late_bg = sh("sleep 60 & echo $!; wait", start_new_session=True, stdin=NULL)
say(late=late.pid, late_bg=late_bg)
time.sleep(60)
"""

# A child that leads a session of its own and exits by itself after 3 s.
SCENARIO_LONE = """\
import os, sys, time
pid = os.fork()
if pid == 0:
    os.setsid()
    time.sleep(3)
    os._exit(0)
print(pid, flush=True)
sys.stdin.readline()
"""

# Runs before each scenario body, in a helper process that made itself a subreaper.
SCENARIO_PRELUDE = """\
import json, logging, os, signal, sys, time
from corral.supervisor import proctools
from corral.supervisor.process import ProviderProcess

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
me = os.getpid()
report = {"was_subreaper": proctools.is_subreaper()}
report["subreaper"] = proctools.become_subreaper() and proctools.is_subreaper()


def emit(**kw):
    print(json.dumps(kw), flush=True)


def wait_until(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def idents(pids):
    # (pid, start time) of each, printed at once: the test kills them by identity
    emit(pids=[[pid, st.start] for pid in pids if (st := proctools.proc_stat(pid))])


def gone(pid):
    return proctools.proc_stat(pid) is None  # not even a zombie


def provider(code, lines, *args, **kw):
    p = ProviderProcess(
        [sys.executable, "-c", code, *args],
        env=dict(os.environ),
        cwd=os.getcwd(),
        on_line=lines.append,
        on_exit=lambda info: None,
        **kw,
    )
    p.start()
    idents([p.pid])
    return p


"""

SCENARIO_ONE_PROVIDER = """\
lines = []
p = provider(sys.argv[1], lines, sys.argv[2], stdin_pipe=True)
try:
    assert wait_until(lambda: len(lines) >= 1), "no pids from the leader"
    first = json.loads(lines[0])
    idents(first.values())
    report["short_reparented"] = proctools.parent_of(first["short_bg"]) == me
    want = {first[k] for k in ("tool", "tool_bg", "mid", "mid_bg", "lone_bg")}
    report["tracked"] = wait_until(lambda: want <= set(p.descendants), 5.0)
    lone = first["lone_bg"]
    report["lone_own_session"] = wait_until(
        lambda: getattr(proctools.proc_stat(lone), "session", 0) == lone, 5.0
    )
    p.write(b"release\\n")  # the intermediates exit: their children come to us
    assert wait_until(lambda: len(lines) >= 2), "not released"
    report["mid_bg_reparented"] = proctools.parent_of(first["mid_bg"]) == me
    report["lone_reparented"] = proctools.parent_of(lone) == me
    # Orphans that exit on their own are reaped by PID, not left as zombies.
    report["short_reaped"] = wait_until(lambda: gone(first["short_bg"]), 5.0)
    report["lone_reaped"] = wait_until(lambda: gone(lone), 6.0)
    report["mid_bg_still_tracked"] = first["mid_bg"] in p.descendants
    p.write(b"late\\n")  # a new tool, then at once a crash
    assert wait_until(lambda: len(lines) >= 3), "no late tool"
    late = json.loads(lines[2])
    idents(late.values())
    os.kill(p.pid, signal.SIGKILL)
    info = p.wait(10)
    report["signal"] = info.signal if info else None
    report["leftover_killed"] = info.leftover_killed if info else None
    doomed = [first["tool"], first["tool_bg"], first["mid_bg"], *late.values()]
    report["left"] = {pid: proctools.read_stat(pid) for pid in doomed if not gone(pid)}
    report["children"] = proctools.children_of(me)
finally:
    p.terminate(())
    p.wait(5)
    emit(report=report)
"""

SCENARIO_TWO_PROVIDERS = """\
IDLE = "import time; print('up', flush=True); time.sleep(60)"
ORPHANING = (
    "import subprocess, time\\n"
    "sh = subprocess.Popen(['/bin/sh', '-c', 'sleep 60 & echo $!'],\\n"
    "                      start_new_session=True, stdout=subprocess.PIPE)\\n"
    "print(int(sh.stdout.readline()), flush=True)\\n"
    "sh.wait()\\n"
    "time.sleep(60)\\n"
)
a_lines, b_lines = [], []
a = provider(IDLE, a_lines)
b = None
try:
    assert wait_until(lambda: a_lines), "a did not start"
    b = provider(ORPHANING, b_lines)
    assert wait_until(lambda: b_lines), "b did not start"
    orphan = int(b_lines[0])
    idents([orphan])
    # Its shell exited at once: the orphan comes to us, maybe before any
    # snapshot saw it; a and b both started before it, so either could own it.
    report["reparented"] = wait_until(lambda: proctools.parent_of(orphan) == me, 5.0)
    time.sleep(1.2)  # a few tracker refreshes
    os.kill(a.pid, signal.SIGKILL)
    info = a.wait(10)
    report["a_killed"] = info.leftover_killed if info else None
    time.sleep(1.2)
    report["alive_while_b_runs"] = proctools.pid_alive(orphan)
    os.kill(b.pid, signal.SIGKILL)
    info = b.wait(10)
    report["b_killed"] = info.leftover_killed if info else None
    report["gone_with_b"] = wait_until(lambda: gone(orphan), 3.0)
    report["children"] = proctools.children_of(me)
finally:
    for p in (a, b):
        if p is not None:
            p.terminate(())
            p.wait(5)
    emit(report=report)
"""


def run_scenario(body: str, *args: str) -> tuple[dict[str, Any], str]:
    """Run ``body`` in a helper process that is a subreaper; return its report and stderr.

    Every PID the helper announced is killed afterwards if it is still the
    same process, and must be gone by then.
    """
    assert not is_subreaper()  # the test process itself never is one (see above)
    helper = subprocess.Popen(
        [PY, "-c", SCENARIO_PRELUDE + body, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started: list[tuple[int, int]] = []
    try:
        try:
            out, err = helper.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            helper.kill()
            out, err = helper.communicate(timeout=5)
        frames = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        started += [(pid, start) for f in frames for pid, start in f.get("pids", [])]
        reports = [f["report"] for f in frames if "report" in f]
        assert helper.returncode == 0 and reports, err
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.wait(5)
        for pid, start in started:
            kill_if_same(pid, start)
    survivors = [pid for pid, start in started if (st := proc_stat(pid)) and st.start == start]
    assert wait_until(lambda: all(not pid_alive(pid) for pid in survivors), 3.0)
    report: dict[str, Any] = reports[0]
    assert report["subreaper"] and not report["was_subreaper"], report
    return report, err


@pytest.mark.timeout(60)
def test_subreaper_kills_and_reaps_reparented_descendants() -> None:
    report, err = run_scenario(SCENARIO_ONE_PROVIDER, SCENARIO_LEADER, SCENARIO_LONE)
    assert report["tracked"] and report["lone_own_session"], report
    assert report["short_reparented"] and report["mid_bg_reparented"], report
    assert report["lone_reparented"], report
    assert report["short_reaped"] and report["lone_reaped"], (report, err)
    assert report["mid_bg_still_tracked"], report
    assert report["signal"] == signal.SIGKILL, report
    # tool, its child, the reparented orphan, the late tool and its child
    assert report["leftover_killed"] == 5, (report, err)
    assert report["left"] == {}, report
    assert report["children"] == [], report  # nothing left unreaped


@pytest.mark.timeout(60)
def test_subreaper_never_kills_an_orphan_whose_owner_runs() -> None:
    report, err = run_scenario(SCENARIO_TWO_PROVIDERS)
    assert report["reparented"], report
    assert report["a_killed"] == 0 and report["alive_while_b_runs"], (report, err)
    assert report["b_killed"] == 1 and report["gone_with_b"], (report, err)
    assert report["children"] == [], report


# ------------------------------------------------------------ spawn failure


def test_spawn_failure_raises_without_callbacks(h: Harness) -> None:
    rec = Rec()
    p = ProviderProcess(
        [str(h.tmp / "no-such-binary")],
        env={},
        cwd=str(h.tmp),
        on_line=rec.on_line,
        on_exit=rec.on_exit,
    )
    with pytest.raises(FileNotFoundError):
        p.start()
    assert p.pid is None and not p.alive
    assert p.wait(0.1) is None
    assert p.write(b"x") is False and p.send_signal(signal.SIGTERM) is False
    p.terminate()
    p.close_stdin()

    script = h.tmp / "not-executable"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    q = ProviderProcess(
        [str(script)], env={}, cwd=str(h.tmp), on_line=rec.on_line, on_exit=rec.on_exit
    )
    with pytest.raises(PermissionError):
        q.start()
    time.sleep(0.05)
    assert rec.lines == [] and rec.exits == []


# ------------------------------------------------------------------ proctools


def test_proctools_basics() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-1)
    assert os.getpid() in pids_in_group(os.getpgrp())
    assert pids_in_group(0) == []
    assert process_group_of(os.getpid()) == os.getpgrp()
    me = proc_stat(os.getpid())
    assert me is not None and me.pid == os.getpid() and not me.dead
    assert (me.ppid, me.pgrp, me.session) == (os.getppid(), os.getpgrp(), os.getsid(0))
    assert read_stat(os.getpid()) == (me.state, me.ppid, me.pgrp)
    assert parent_of(os.getpid()) == os.getppid()
    assert proc_stat(0) is None and parent_of(-1) is None


def test_proctools_tree_helpers() -> None:
    code = (
        "import subprocess, sys\n"
        f"g = subprocess.Popen([{SLEEP!r}, '60'], start_new_session=True)\n"
        "print(g.pid, flush=True)\n"
        "sys.stdin.readline()\n"
    )
    child = subprocess.Popen([PY, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    gpid = 0
    try:
        gpid = int(read_line(child.stdout))
        assert children_of(child.pid) == [gpid]
        assert descendants(child.pid) == [gpid]
        assert {child.pid, gpid} <= set(descendants(os.getpid()))
        assert len(descendants(os.getpid(), limit=1)) == 1
        assert parent_of(gpid) == child.pid
        st = proc_stat(gpid)
        assert st is not None and (st.session, st.pgrp) == (gpid, gpid)
        assert children_of(gpid) == [] and descendants(gpid) == []
    finally:
        if gpid and pid_alive(gpid) and parent_of(gpid) == child.pid:
            os.kill(gpid, signal.SIGKILL)  # its parent still runs: the PID is still it
        child.kill()
        child.wait(5)
    assert wait_until(lambda: not pid_alive(gpid), 3.0)


def test_become_subreaper_in_a_child() -> None:
    code = (
        "from supervisor.proctools import become_subreaper, is_subreaper\n"
        "print(is_subreaper(), become_subreaper(), is_subreaper())\n"
    )
    out = subprocess.run(
        [PY, "-c", code], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert out.split() == ["False", "True", "True"]
    assert not is_subreaper()  # only that child became one


def test_no_fd_or_thread_leak(h: Harness) -> None:
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    # Warm up (imports, logging) before taking the baseline.
    p, _ = h.spawn("print('x')", stdin_pipe=True)
    assert p.wait(10) is not None
    base_fds, base_threads = fds(), threading.active_count()
    for i in range(10):
        p, _ = h.spawn("print('x')", stdin_pipe=bool(i % 2))
        assert p.wait(10) is not None
    # (the shared descendant tracker may be reading a /proc file right now)
    assert wait_until(lambda: fds() == base_fds, 2.0), (fds(), base_fds)
    assert wait_until(lambda: threading.active_count() <= base_threads, 2.0)

"""Tests for corral.supervisor.process.child (ProviderProcess): output, stdin, exit, stop."""

from __future__ import annotations

import logging
import os
import signal
import stat
import threading
import time

import pytest

from corral.actors.ports import ExitReport
from corral.supervisor.process import ProviderProcess
from corral.supervisor.process.lines import DroppedLine
from tests.support.proc import (
    PY,
    READY_IGNORING_TERM,
    Harness,
    Rec,
    harness_fixture,  # noqa: F401  (the ``h`` fixture)
    pids_in_group,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)


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
            )


def test_huge_line_is_dropped_not_buffered(h: Harness) -> None:
    code = (
        "import sys\n"
        "w = sys.stdout.buffer.write\n"
        "w(b'a' * 3_000_000 + b'\\n')\n"
        "w(b'next\\n')\n"
        "w(b'b' * 500_000)\n"
    )
    dropped: list[DroppedLine] = []
    p, rec = h.spawn(code, max_line_bytes=1000, on_dropped_line=dropped.append)
    info = p.wait(10)
    assert info is not None and info.returncode == 0
    assert rec.lines == [b"next"]
    assert dropped == [DroppedLine(3_000_000, 1000), DroppedLine(500_000, 1000)]
    assert p.dropped_lines == 2


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
    def bad_on_exit(info: ExitReport) -> None:
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

"""Tests for corral.supervisor.process.spawner: one long-lived thread forks every
provider with a parent-death signal, so providers die with the daemon (and not
with the session thread that asked for them)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from corral.supervisor.process import ProviderProcess
from corral.supervisor.process.spawner import (
    Spawner,
    default_spawner,
    die_with_parent,
    release,
    spawn_provider,
)
from corral.supervisor.process.tree import default_tracker
from tests.support.proc import (
    PY,
    SLEEP,
    Harness,
    Rec,
    harness_fixture,  # noqa: F401  (the ``h`` fixture)
    kill_if_same,
    pid_alive,
    proc_stat,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)

PR_GET_PDEATHSIG = 2
PRINT_PDEATHSIG = (
    "import ctypes, time\n"
    "v = ctypes.c_int(-1)\n"
    f"ctypes.CDLL(None).prctl({PR_GET_PDEATHSIG}, ctypes.byref(v), 0, 0, 0)\n"
    "print(v.value, flush=True)\n"
    "time.sleep(60)\n"
)


# ------------------------------------------------------------ the thread


def test_every_call_runs_on_the_one_spawner_thread() -> None:
    spawner = Spawner("spawner-test")
    try:
        names: list[str] = []
        idents: list[int | None] = []

        def ask() -> None:
            names.append(spawner.run(lambda: threading.current_thread().name))
            idents.append(spawner.run(threading.get_ident))

        callers = [threading.Thread(target=ask) for _ in range(3)]
        for t in callers:
            t.start()
        for t in callers:
            t.join(5)
        assert names == ["spawner-test"] * 3
        assert spawner.thread is not None
        assert set(idents) == {spawner.thread.ident}
        # every caller thread is gone; the spawner still runs
        assert spawner.thread.is_alive()
    finally:
        spawner.close()
    assert spawner.thread is not None and not spawner.thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        spawner.run(lambda: None)


def test_an_exception_is_raised_in_the_caller() -> None:
    spawner = Spawner("spawner-test")
    try:
        with pytest.raises(FileNotFoundError):
            spawner.run(lambda: open("/nonexistent/corral-spawner-test"))  # noqa: SIM115
        assert spawner.run(lambda: 41 + 1) == 42  # the thread survived it
    finally:
        spawner.close()


def test_a_late_result_goes_to_abandon_after_the_timeout() -> None:
    spawner = Spawner("spawner-test")
    release_fn = threading.Event()
    abandoned: list[str] = []
    got_it = threading.Event()

    def slow() -> str:
        release_fn.wait(5)
        return "late"

    def abandon(result: str) -> None:
        abandoned.append(result)
        got_it.set()

    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            spawner.run(slow, timeout=0.2, abandon=abandon)
        assert time.monotonic() - t0 < 2.0
        assert abandoned == []
        release_fn.set()
        assert got_it.wait(5)
        assert abandoned == ["late"]
        # a call that finishes in time is not abandoned
        assert spawner.run(lambda: "ok", timeout=5, abandon=abandon) == "ok"
        assert abandoned == ["late"]
    finally:
        release_fn.set()
        spawner.close()


# ------------------------------------------------- the parent-death signal


def test_children_die_when_the_spawner_thread_ends_not_the_caller(tmp_path: Path) -> None:
    spawner = Spawner("spawner-test")
    tracker = default_tracker()
    spawned: list[tuple[subprocess.Popen[bytes], object]] = []

    def caller() -> None:
        spawned.append(
            spawn_provider(
                [SLEEP, "60"],
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                cwd=str(tmp_path),
                stdin_pipe=False,
                tracker=tracker,
                ledger=None,
                name="pdeathsig-test",
                spawner=spawner,
            )
        )

    thread = threading.Thread(target=caller)
    thread.start()
    thread.join(10)
    assert spawned, "spawn_provider did not return"
    proc, tree = spawned[0]
    start = proc_stat(proc.pid).start  # type: ignore[union-attr]
    try:
        st = proc_stat(proc.pid)
        assert st is not None and st.session == proc.pid and st.pgrp == proc.pid
        time.sleep(0.3)  # the caller's thread has ended: the child lives on
        assert pid_alive(proc.pid)
        spawner.close()  # the forking thread ends: SIGKILL
        assert proc.wait(5) == -signal.SIGKILL
    finally:
        kill_if_same(proc.pid, start)
        proc.wait(5)
        release(tracker, tree, None, proc.pid)  # type: ignore[arg-type]
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_an_orphan_kills_itself_before_exec(tmp_path: Path) -> None:
    """The race: the parent died before the prctl (the check sees another parent)."""
    not_our_pid = os.getppid()
    proc = subprocess.Popen([SLEEP, "60"], cwd=tmp_path, preexec_fn=die_with_parent(not_our_pid))
    try:
        assert proc.wait(5) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_with_the_right_parent_the_child_runs_with_the_signal_set(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [PY, "-c", PRINT_PDEATHSIG],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        preexec_fn=die_with_parent(os.getpid()),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == str(int(signal.SIGKILL)).encode()
    finally:
        proc.kill()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_provider_has_the_signal_and_outlives_the_thread_that_started_it(
    h: Harness,
) -> None:
    rec = Rec()
    started: list[ProviderProcess] = []

    def session_thread() -> None:
        p, _ = h.spawn(PRINT_PDEATHSIG, rec)
        started.append(p)

    thread = threading.Thread(target=session_thread, name="session-like")
    thread.start()
    thread.join(10)
    assert started
    p = started[0]
    assert rec.wait_lines(1) == [str(int(signal.SIGKILL)).encode()]
    time.sleep(0.3)  # the thread that called start() is gone
    assert p.alive and p.pid is not None and pid_alive(p.pid)
    spawner = default_spawner()
    assert spawner.thread is not None and spawner.thread.is_alive()
    p.terminate(())
    info = p.wait(5)
    assert info is not None and info.signal == signal.SIGKILL
    assert wait_until(lambda: rec.exits != [], 2.0)

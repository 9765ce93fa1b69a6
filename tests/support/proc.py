"""Process helpers for tests: /proc questions the daemon never asks, and a child harness.

The /proc part answers "which processes are in this group?", "which
descend from this one?", "is this PID still a live process?" without
signalling anything; zombies (state ``Z``) and dead tasks (``X``) count as
*not* alive.  It re-exports the runtime reads it is built on
(:func:`proc_stat`, :func:`children_of`, the subreaper ``prctl``), so a
helper process can take everything from here.

The harness part (:class:`Harness`, :class:`Rec`) starts
:class:`~corral.supervisor.process.ProviderProcess` children in a temp dir,
records their callbacks, and stops every one of them by PID afterwards.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from corral.actors.ports import ExitReport
from corral.supervisor.process import ProviderProcess
from corral.supervisor.process.procfs import (
    ProcStat,
    all_stats,
    become_subreaper,
    children_of,
    is_subreaper,
    proc_stat,
)

__all__ = [
    "DESCENDANTS_LIMIT",
    "PY",
    "READY_IGNORING_TERM",
    "SLEEP",
    "Harness",
    "ProcStat",
    "Rec",
    "become_subreaper",
    "children_of",
    "descendants",
    "is_subreaper",
    "kill_if_same",
    "parent_of",
    "pid_alive",
    "pids_in_group",
    "proc_stat",
    "process_group_of",
    "read_line",
    "read_stat",
    "wait_until",
]

#: Default bound on how many processes :func:`descendants` returns.
DESCENDANTS_LIMIT = 4096

PY = sys.executable
SLEEP = shutil.which("sleep") or "sleep"

READY_IGNORING_TERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


# ------------------------------------------------------------------ /proc


def read_stat(pid: int) -> tuple[str, int, int] | None:
    """Return ``(state, ppid, pgrp)`` of ``pid``, or ``None`` (see :func:`proc_stat`)."""
    st = proc_stat(pid)
    return None if st is None else (st.state, st.ppid, st.pgrp)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (or otherwise dead task)."""
    st = proc_stat(pid)
    return st is not None and not st.dead


def process_group_of(pid: int) -> int | None:
    """The process group of a live (non-zombie) ``pid``, or ``None``."""
    st = proc_stat(pid)
    if st is None or st.dead:
        return None
    return st.pgrp


def parent_of(pid: int) -> int | None:
    """The parent PID of ``pid`` (zombies included), or ``None`` if it is gone."""
    st = proc_stat(pid)
    return None if st is None else st.ppid


def pids_in_group(pgid: int, *, include_zombies: bool = False) -> list[int]:
    """PIDs whose process group is ``pgid``, sorted; zombies left out by default."""
    if pgid <= 0:
        return []
    return sorted(
        st.pid for st in all_stats() if st.pgrp == pgid and (include_zombies or not st.dead)
    )


def descendants(pid: int, *, limit: int = DESCENDANTS_LIMIT) -> list[int]:
    """The live descendants of ``pid`` (children, their children, ...), sorted.

    At most ``limit`` of them.  A child that exits while the tree is walked
    is skipped, and a PID is only followed while ``/proc`` still shows it as
    a child of the process it was listed under.
    """
    found: set[int] = set()
    todo = [pid]
    while todo and len(found) < limit:
        parent = todo.pop()
        for child in children_of(parent):
            if child in found or child == pid:
                continue
            st = proc_stat(child)
            if st is None or st.dead or st.ppid != parent:
                continue
            found.add(child)
            todo.append(child)
            if len(found) >= limit:
                break
    return sorted(found)


# ---------------------------------------------------------------- harness


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
    """Poll ``pred`` every 10 ms for up to ``timeout`` seconds; its last answer."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


@dataclass
class Rec:
    """Records a ProviderProcess's callbacks and the threads they ran on."""

    lines: list[bytes] = field(default_factory=list)
    exits: list[ExitReport] = field(default_factory=list)
    lines_at_exit: int = -1
    exit_thread: str = ""
    line_threads: set[str] = field(default_factory=set)

    def on_line(self, line: bytes) -> None:
        self.line_threads.add(threading.current_thread().name)
        self.lines.append(line)

    def on_exit(self, info: ExitReport) -> None:
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


@pytest.fixture(name="h")
def harness_fixture(tmp_path: Path) -> Iterator[Harness]:
    """The ``h`` fixture: a :class:`Harness` in ``tmp_path``, cleaned up after the test
    (a test module registers it with ``from tests.support.proc import harness_fixture``)."""
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        harness.cleanup()

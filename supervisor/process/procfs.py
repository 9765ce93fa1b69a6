"""The ``/proc`` reads (and the one ``prctl``) that process supervision runs on.

Owns the questions "what is this process (state, parent, group, session,
start time)?", "which are its children?", "which processes are in this
session?" and "are we a child subreaper?", answered without signalling
anything.  Zombies (state ``Z``) and dead tasks (state ``X``) count as *not*
alive: they hold a PID but run nothing and cannot be killed any further.

Everything read from ``/proc`` is a snapshot: processes may start, exit or be
reparented while it is read, so every helper tolerates vanished entries.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Iterable
from typing import NamedTuple

__all__ = [
    "ProcStat",
    "all_stats",
    "become_subreaper",
    "children_of",
    "is_subreaper",
    "proc_stat",
    "session_members",
]

_PROC = "/proc"
_DEAD_STATES = frozenset("ZX")
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


class ProcStat(NamedTuple):
    """The fields of ``/proc/<pid>/stat`` process supervision uses."""

    pid: int
    state: str  # one letter: R, S, D, T, Z, X, ...
    ppid: int
    pgrp: int
    session: int
    start: int  # start time in clock ticks after boot (field 22)

    @property
    def dead(self) -> bool:
        """A zombie or a dead task: nothing left to signal."""
        return self.state in _DEAD_STATES


def proc_stat(pid: int) -> ProcStat | None:
    """Parse ``/proc/<pid>/stat``; ``None`` if the process does not exist.

    The command name field may contain spaces and parentheses, so the fixed
    fields are taken after the *last* ``)``.  ``(pid, start)`` identifies a
    process across PID reuse (two processes with one PID started in the same
    clock tick are not told apart).
    """
    if pid <= 0:
        return None
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    _, sep, rest = raw.rpartition(b")")
    if not sep:
        return None
    fields = rest.split()
    try:
        return ProcStat(
            pid,
            fields[0].decode("ascii", "replace"),
            int(fields[1]),
            int(fields[2]),
            int(fields[3]),
            int(fields[19]),
        )
    except (IndexError, ValueError):
        return None


def all_stats() -> list[ProcStat]:
    """Every process ``/proc`` shows right now (in no particular order)."""
    try:
        names = os.listdir(_PROC)
    except OSError:
        return []
    found: list[ProcStat] = []
    for name in names:
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None:
                found.append(st)
    return found


def session_members(sid: int, *, include_zombies: bool = False) -> list[ProcStat]:
    """The processes of session ``sid`` (by PID); zombies left out by default."""
    if sid <= 0:
        return []
    found = [st for st in all_stats() if st.session == sid and (include_zombies or not st.dead)]
    found.sort()
    return found


def children_of(pid: int, tids: Iterable[int] | None = None) -> list[int]:
    """The direct children of ``pid`` (of all its threads, or of those in ``tids``),
    zombies included.

    Read from ``/proc/<pid>/task/*/children``; empty if ``pid`` is gone.
    """
    if tids is not None:
        tasks = [str(tid) for tid in tids]
    else:
        try:
            tasks = os.listdir(f"{_PROC}/{pid}/task")
        except OSError:
            return []
    found: list[int] = []
    for tid in tasks:
        try:
            with open(f"{_PROC}/{pid}/task/{tid}/children", "rb") as fh:
                found += [int(part) for part in fh.read().split()]
        except (OSError, ValueError):
            continue
    return found


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def become_subreaper() -> bool:
    """Make this process a child subreaper (``PR_SET_CHILD_SUBREAPER``).

    Orphaned descendants are then reparented to this process instead of
    init, so it can still find, kill and must reap them.  The attribute is
    not inherited by children.  ``False`` if unsupported (not Linux, or the
    call failed).
    """
    libc = _libc()
    if libc is None:
        return False
    try:
        rc = libc.prctl(
            ctypes.c_int(_PR_SET_CHILD_SUBREAPER),
            ctypes.c_ulong(1),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
    except (AttributeError, OSError):
        return False
    return int(rc) == 0


def is_subreaper() -> bool:
    """True if this process is a child subreaper (``PR_GET_CHILD_SUBREAPER``)."""
    libc = _libc()
    if libc is None:
        return False
    value = ctypes.c_int(0)
    try:
        rc = libc.prctl(
            ctypes.c_int(_PR_GET_CHILD_SUBREAPER),
            ctypes.byref(value),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
    except (AttributeError, OSError):
        return False
    return int(rc) == 0 and value.value != 0

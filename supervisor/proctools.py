"""Small Linux process helpers read from ``/proc``.

Owns the questions "which processes are in this process group?" and "is this
PID still a live process?", answered without signalling anything.  Zombies
(state ``Z``) and dead tasks (state ``X``) count as *not* alive: they hold a
PID but run nothing and cannot be killed any further.
"""

from __future__ import annotations

import os

__all__ = ["pid_alive", "pids_in_group", "process_group_of", "read_stat"]

_PROC = "/proc"
_DEAD_STATES = frozenset("ZX")


def read_stat(pid: int) -> tuple[str, int, int] | None:
    """Return ``(state, ppid, pgrp)`` of ``pid`` from ``/proc/<pid>/stat``.

    ``None`` when the process does not exist (or the file cannot be parsed).
    The command name field may contain spaces and parentheses, so the fixed
    fields are taken after the *last* ``)``.
    """
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
        return fields[0].decode("ascii", "replace"), int(fields[1]), int(fields[2])
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (or otherwise dead task)."""
    if pid <= 0:
        return False
    stat = read_stat(pid)
    return stat is not None and stat[0] not in _DEAD_STATES


def process_group_of(pid: int) -> int | None:
    """The process group of a live (non-zombie) ``pid``, or ``None``."""
    stat = read_stat(pid)
    if stat is None or stat[0] in _DEAD_STATES:
        return None
    return stat[2]


def pids_in_group(pgid: int, *, include_zombies: bool = False) -> list[int]:
    """PIDs whose process group is ``pgid``, sorted; zombies left out by default.

    A snapshot: processes may start or exit while ``/proc`` is being scanned.
    """
    if pgid <= 0:
        return []
    try:
        names = os.listdir(_PROC)
    except OSError:
        return []
    found: list[int] = []
    for name in names:
        if not name.isdigit():
            continue
        pid = int(name)
        stat = read_stat(pid)
        if stat is None or stat[2] != pgid:
            continue
        if not include_zombies and stat[0] in _DEAD_STATES:
            continue
        found.append(pid)
    found.sort()
    return found

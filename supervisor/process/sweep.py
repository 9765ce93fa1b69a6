"""At daemon start: killing what the providers of the last run left running.

A daemon that was killed outright left its ledger
(:mod:`~corral.supervisor.process.ledger`) behind.  Its providers died with
it (the parent-death signal, :mod:`~corral.supervisor.process.spawner`),
but not necessarily what they started: children in their process group or
session, and tools that started a session of their own.  Before anything
else runs, :func:`sweep_ledger` reads the ledger and, for each provider,
kills what is left (:func:`survivors`):

* the provider and each recorded descendant that is still the same process
  (same PID *and* start time);
* the members of the process group and session each of those led (their
  ID is their leader's PID), started no earlier than it;
* whatever descends from those (parent chain).

A PID that now names another process (a different start time) was reused:
that process is never touched, nor its group or session.  This is sound
because Linux keeps a PID in use while a group or session of that ID has
members: members of a gone leader's group or session are its own, unless
the ID was reused *and* abandoned again in between (a new process with that
PID led a session, left members in it and died, all while no daemon ran).
The sweeping daemon itself, its ancestors and its session are never killed.

Killing freezes first (SIGSTOP, so nothing forks any more), then SIGKILLs
(:func:`~corral.supervisor.process.kill.freeze_and_kill`), through pidfds
held on ``(pid, start)``.  One log line per process killed.  Then the
ledger is emptied.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from corral.supervisor.process.kill import MAX_PINNED, freeze_and_kill
from corral.supervisor.process.ledger import LedgerEntry, read_ledger, write_ledger
from corral.supervisor.process.procfs import all_stats, children_of, proc_stat

__all__ = ["survivors", "sweep_entry", "sweep_ledger"]

log = logging.getLogger("corral.process")

# Rounds of "find what is left, freeze it, kill it" per provider.
_ROUNDS = 3
# How long one round waits for what it killed to die.
_DEATH_WAIT = 2.0


def _protected() -> tuple[set[int], int]:
    """This process and its ancestors; our session id."""
    chain: set[int] = set()
    pid = os.getpid()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        st = proc_stat(pid)
        if st is None:
            break
        pid = st.ppid
    return chain, os.getsid(0)


def survivors(entry: LedgerEntry) -> dict[int, int]:
    """What is left of ``entry``'s processes now, as PID -> start time (see the module)."""
    stats = {st.pid: st for st in all_stats()}
    found: dict[int, int] = {}
    # Group / session id -> start time of the process that led it.
    led: dict[int, int] = {}
    for pid, start in {**entry.descendants, entry.pid: entry.start}.items():
        st = stats.get(pid)
        if st is not None and st.start != start:
            if pid == entry.pid:
                log.info(
                    "provider pid %d (%s) of the last run is gone; the pid is reused: not touched",
                    pid,
                    entry.name or "?",
                )
            continue
        led[pid] = start
        if st is not None and not st.dead:
            found[pid] = start
    for st in stats.values():
        if st.dead or st.pid in found:
            continue
        for ident in (st.session, st.pgrp):
            leader_start = led.get(ident)
            if leader_start is not None and st.start >= leader_start:
                found[st.pid] = st.start
                break
    todo = list(found)
    while todo and len(found) < MAX_PINNED:
        parent = todo.pop()
        for child in children_of(parent):
            if child in found:
                continue
            cst = proc_stat(child)
            if cst is None or cst.dead or cst.ppid != parent:
                continue
            found[child] = cst.start
            todo.append(child)
    chain, our_sid = _protected()
    for pid in list(found):
        st = stats.get(pid) or proc_stat(pid)
        if pid in chain or (st is not None and st.session == our_sid):
            del found[pid]
    return found


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", "rb") as fh:
            return fh.read().decode("utf-8", "replace").strip() or "?"
    except OSError:
        return "?"


def _wait_gone(killed: dict[int, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(killed)
    while pending and time.monotonic() < deadline:
        for pid, start in list(pending.items()):
            st = proc_stat(pid)
            if st is None or st.dead or st.start != start:
                del pending[pid]
        if pending:
            time.sleep(0.01)


def sweep_entry(entry: LedgerEntry) -> dict[int, int]:
    """Kill what is left of one recorded provider; what was killed (PID -> start time)."""
    done: dict[int, int] = {}
    for _ in range(_ROUNDS):
        targets = {pid: start for pid, start in survivors(entry).items() if done.get(pid) != start}
        if not targets:
            break
        names = {pid: _comm(pid) for pid in targets}
        killed = freeze_and_kill(targets)
        for pid, start in sorted(killed.items()):
            if done.get(pid) == start:
                continue
            done[pid] = start
            log.warning(
                "killed pid %d (%s) left running by provider %s (pid %d) of the last run",
                pid,
                names.get(pid) or _comm(pid),
                entry.name or "?",
                entry.pid,
            )
        _wait_gone(killed, _DEATH_WAIT)
    return done


def sweep_ledger(path: Path) -> dict[int, int]:
    """Kill what the providers recorded in ``path`` left running, then empty it.

    Returns what was killed (PID -> start time).  Never raises for a
    missing or unreadable ledger (logged).
    """
    killed: dict[int, int] = {}
    entries = read_ledger(path)
    for entry in entries:
        try:
            killed.update(sweep_entry(entry))
        except Exception:
            log.exception("sweeping what provider pid %d left failed", entry.pid)
    if entries or path.exists():
        try:
            write_ledger(path, [])
        except OSError as exc:
            log.warning("provider ledger %s: cannot empty it: %s", path, exc)
    return killed

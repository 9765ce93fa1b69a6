"""Every provider's process tree: the descendant tracker, and killing what a leader leaves.

Descendants outside the group.  A provider may start processes in a session
of their own (Claude Code runs every Bash tool under ``setsid``), out of
reach of a group kill; when the provider dies without cleaning up (SIGKILL,
OOM killer, crash) they would be orphaned and keep running.  So one
:class:`DescendantTracker` (the daemon creates one and hands it to every
:class:`~corral.supervisor.process.ProviderProcess`; :func:`default_tracker`
is the shared fallback) runs one thread, ``corral-descendants``, that keeps
a snapshot of every provider's descendants as ``(pid, start time)`` pairs,
refreshed every ``interval`` seconds (``TRACK_INTERVAL`` by default) and
right before each ladder signal.  Once the leader exited, its waiter freezes
(SIGSTOP) and then SIGKILLs what is left: the process group, the session,
and every recorded descendant that is still the same process, plus whatever
those started meanwhile (:meth:`DescendantTracker.kill_leftovers`).  Signals
go through a pidfd opened and then checked against the recorded start time
(:mod:`~corral.supervisor.process.kill`), so a reused PID is never hit
(without pidfd support the start time is checked right before ``kill()``: a
small window remains).

The daemon makes itself a child subreaper
(:func:`~corral.supervisor.process.procfs.become_subreaper`), so orphans of a
provider tree are reparented to it rather than to init, and the tracker also
looks at the daemon's own children:

* zombies are reaped by PID (never ``waitpid(-1)``, which would steal exit
  statuses from ``subprocess`` users elsewhere in the daemon), and only when
  nobody else can be waiting for them: recorded provider descendants, and
  processes in a session that is neither ours nor their own (a process we
  fork can only be in one of those two);
* a live orphan (a child of ours outside our session that no provider
  knows) goes to the provider that has a process in its session, else to the
  one provider started before it; with several such candidates it stays
  unclaimed until only one still runs, so it is never killed while its
  owner may still be running, and is killed once none of them runs;
* when a leader dies, the children of ours that appeared since it was last
  seen alive were handed over by its death (its own children, perhaps too
  young for the last snapshot): they are killed with the rest.

The exit path also reaps, by PID, the leftovers it killed that became our
children.  This relies on one rule: whatever the daemon itself spawns in a session of
its own is a provider leader registered with the tracker under
``spawn_lock``; anything else must stay in the daemon's session.  All
providers of one daemon must share one tracker (two trackers would each
take the other's leaders for orphans).  Without subreaper (unit tests, or no
``prctl``) only the snapshot helps: descendants born and orphaned between
two refreshes escape.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from corral.supervisor.process.kill import freeze_and_kill, reap_pid
from corral.supervisor.process.process_wide import ProcessWide
from corral.supervisor.process.procfs import (
    ProcStat,
    children_of,
    is_subreaper,
    proc_stat,
    session_members,
)

__all__ = [
    "TRACK_INTERVAL",
    "DescendantTracker",
    "ProcessTree",
    "SessionScan",
    "default_tracker",
]

log = logging.getLogger("corral.process")


class SessionScan(Protocol):
    """A read of ``/proc`` taken earlier: who was in a session then."""

    def session_members(self, sid: int) -> list[ProcStat]: ...


#: Seconds between two refreshes of every provider's descendant snapshot.
TRACK_INTERVAL = 0.5
#: A tree whose walks keep finding the same descendants is walked only every
#: (1 + this) cycles (2 s); its leader is still checked every cycle (by
#: reading /proc, unless its exit is watched through a pidfd), and a stop
#: walks it afresh. Idle providers are most of them: this is most of the
#: tracker's cost with many sessions.
QUIET_WALKS = 3
#: With many providers, quiet trees rest longer: about this many of them are
#: walked per ``interval`` (1,000 idle providers: each every 50 s).
QUIET_WALKS_PER_CYCLE = 10
#: Past this many providers, cycles come less often, in proportion (1,000: every 2 s).
SCALE_TREES = 250
# At most this many descendants are remembered per provider (and as orphans).
_MAX_TRACKED = 4096
# How many rounds of "find what is left, freeze it, SIGKILL it" after the
# leader exited (killing one process can hand its children to us).
_KILL_ROUNDS = 5
# How long the exit path waits for killed leftovers to die (reaping ours).
_REAP_TIMEOUT = 1.0


@dataclass(eq=False)
class ProcessTree:
    """What the tracker knows about one provider's processes."""

    leader: int
    leader_start: int
    # Descendants seen and not known to be gone: pid -> start time.  They stay
    # here after being reparented (to us or to init), so they can be killed.
    known: dict[int, int] = field(default_factory=dict)
    # Session ids of the leader and of the live known descendants.
    sessions: set[int] = field(default_factory=set)
    # Subreaper only: our live children (pid, start) at the last scan after
    # which the leader was still alive.  Whatever became our child later may
    # have been handed to us by the leader's death.
    children_before: frozenset[tuple[int, int]] | None = None
    # Cycles in a row whose walk found nothing new (at most QUIET_WALKS), and
    # how many more cycles skip the walk (the leader is still checked).
    quiet: int = 0
    rest: int = 0
    # Its process watches the leader's exit (a pidfd) and sets ``exited`` at
    # once: resting cycles trust that instead of reading /proc.
    exit_watched: bool = False
    exited: bool = False


class DescendantTracker:
    """One thread keeping every provider's descendant snapshot fresh.

    When this process is a child subreaper it also looks at its own children
    (see the module docstring): it reaps, by PID, zombies that are orphans of
    provider trees, and attributes live orphans to a provider.  All state is
    guarded by ``_lock``; ``spawn_lock`` (always taken before ``_lock``) is
    held while a leader is spawned and registered, and while our children
    are examined, so a brand-new leader is never mistaken for an orphan.

    The thread starts with the first :meth:`add` and sleeps while there is
    nothing to watch; :meth:`close` ends it.  One per process: every
    provider of a daemon must be registered with the same tracker.
    """

    def __init__(self, interval: float = TRACK_INTERVAL) -> None:
        self.interval = interval
        self.spawn_lock = threading.Lock()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._trees: dict[int, ProcessTree] = {}
        # Identities that may still become zombie children of ours: reap them.
        self._orphans: dict[int, int] = {}
        # Live orphans that could belong to more than one provider: (pid,
        # start) -> the leaders that may own them.  Such an orphan is claimed
        # once a single possible owner is left, so it is killed only when its
        # owner has exited, whichever that was.
        self._unclaimed: dict[tuple[int, int], set[int]] = {}
        # The last scan found live children of ours outside our session.
        self._strays = False
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stop = threading.Event()
        # The threads that forked providers: with the main thread (where the
        # kernel hands orphans to a subreaper, and the children of a thread that
        # ended), the only ones whose children file can list ours. Reading just
        # these, not one file per daemon thread (four per session), keeps a scan
        # of our children cheap with a thousand sessions.
        self._forking_tids: set[int] = set()

    # ----------------------------------------------------------- public

    def add(self, leader: int) -> ProcessTree:
        """Start tracking the provider led by ``leader`` (hold ``spawn_lock``).

        Raises ``RuntimeError`` once the tracker is closed.
        """
        first = proc_stat(leader)
        tree = ProcessTree(leader, first.start if first is not None else 0, sessions={leader})
        with self._lock:
            self._forking_tids.add(threading.get_native_id())  # the caller forked it
            if self._closed:
                raise RuntimeError("descendant tracker is closed")
            self._trees[leader] = tree
            if is_subreaper():
                ours = self._scan_ours_locked(os.getpid())
                st = proc_stat(leader)  # after the scan: see ProcessTree.children_before
                if st is not None and not st.dead:
                    tree.children_before = _live_idents(ours)
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(target=self._run, name="corral-descendants", daemon=True)
                thread.start()
                self._thread = thread
            self._wake.notify_all()
        return tree

    @property
    def closed(self) -> bool:
        """:meth:`close` was called (stable while ``spawn_lock`` is held)."""
        return self._closed

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (waiting up to ``timeout`` seconds for it); idempotent.

        Trees still tracked keep working (their exit path refreshes, kills
        and reaps by itself), but nothing is refreshed or reaped in the
        background any more and :meth:`add` refuses new leaders.
        """
        with self.spawn_lock, self._lock:
            self._closed = True
            self._stop.set()
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def remove(self, tree: ProcessTree) -> None:
        """Stop tracking ``tree``, whose leader exited; kill what is still left of it.

        Normally the exit path killed everything already; what a concurrent
        refresh claimed for the tree after that is killed here.  Unclaimed
        orphans it may have owned go to the one possible owner left that
        still runs; if none runs any more (they exited together), they are
        killed here too.  What becomes our zombie later is reaped.
        """
        with self._lock:
            if self._trees.get(tree.leader) is tree:
                del self._trees[tree.leader]
            doomed = dict(tree.known)
            tree.known = {}
            tree.sessions = set()
            for ident, owners in list(self._unclaimed.items()):
                if tree.leader not in owners:
                    continue
                owners.discard(tree.leader)
                running = [self._trees[o] for o in owners if self._leader_runs_locked(o)]
                if not running:
                    log.debug("orphan %d: every possible owner exited", ident[0])
                    del self._unclaimed[ident]
                    doomed[ident[0]] = ident[1]
                elif len(running) == 1:
                    self._claim_locked(running[0], ident, "its only possible owner left")
        if doomed:
            killed = freeze_and_kill(doomed)
            if killed:
                log.info(
                    "pid %d: killed %d late leftover(s): %s",
                    tree.leader,
                    len(killed),
                    killed,
                )
            self.reap_later({**doomed, **killed})

    def refresh(self, tree: ProcessTree) -> None:
        """Walk ``tree`` now (it must still be tracked)."""
        with self._lock:
            if self._trees.get(tree.leader) is tree:
                self._refresh_locked(tree, os.getpid(), is_subreaper())

    def snapshot(self, tree: ProcessTree) -> dict[int, int]:
        """A copy of ``tree``'s known descendants (pid -> start time)."""
        with self._lock:
            return dict(tree.known)

    def claim_orphans(self, tree: ProcessTree) -> None:
        """After ``tree``'s leader died: claim the orphans that must be its own.

        Subreaper only.  First our children that appeared since the leader
        was last seen alive, are not in our session (so this process did not
        fork them), did not start before the leader and are not known to
        another provider: its death handed them to us (its children the
        snapshot missed).  The live ones join the tree, the zombies are
        reaped.  Then the orphans this provider was the last possible owner of.
        """
        if not is_subreaper():
            return
        me = os.getpid()
        our_sid = os.getsid(0)
        with self.spawn_lock, self._lock:
            if self._trees.get(tree.leader) is not tree:
                return
            ours = self._scan_ours_locked(me)
            before = tree.children_before
            others = [t for t in self._trees.values() if t is not tree]
            for st in ours:
                ident = (st.pid, st.start)
                if before is None or ident in before or st.pid in tree.known:
                    continue
                if st.session == our_sid or st.start < tree.leader_start:
                    continue
                if any(st.pid in t.known or st.session in t.sessions for t in others):
                    continue
                if st.dead:
                    reap_pid(st.pid)  # e.g. a child the leader never waited for
                else:
                    self._claim_locked(tree, ident, "handed over by its exit")
            for ident, owners in list(self._unclaimed.items()):
                if tree.leader in owners and not any(
                    self._leader_runs_locked(o) for o in owners - {tree.leader}
                ):
                    self._claim_locked(tree, ident, "no other possible owner runs")

    def reap_later(self, idents: Mapping[int, int]) -> None:
        """Reap these (pid -> start) once they are zombie children of ours."""
        if not idents or not is_subreaper():
            return
        with self._lock:
            self._remember_orphans_locked(idents)
            self._wake.notify_all()

    def kill_leftovers(
        self,
        tree: ProcessTree | None,
        pgid: int,
        name: str,
        scan: SessionScan | None = None,
    ) -> int:
        """SIGKILL what is left of a provider's tree after its leader exited; return how many.

        Runs while the leader's zombie pins its PID (= group and session id
        ``pgid``).  Each round: refresh the snapshot, take the group, the
        session and the tracked descendants, freeze and kill them (with
        whatever they started meanwhile).  Then wait (bounded) for them to
        die, reaping those that were reparented to us.  ``name`` labels the
        log lines.  ``scan``, if given, answers the first round's question
        "who is in the session" (a scan of ``/proc`` taken after the exit,
        shared by many exits); later rounds read ``/proc`` afresh.
        """
        killed: dict[int, int] = {}
        seen: set[tuple[int, int]] = set()
        for round_ in range(_KILL_ROUNDS):
            targets = self._leftover_targets(tree, pgid, scan if round_ == 0 else None)
            if not targets:
                break
            fresh = sorted(pid for pid, start in targets.items() if (pid, start) not in seen)
            seen.update(targets.items())
            if fresh:
                log.info(
                    "%s: killing %d leftover process(es) of pid %d: %s",
                    name,
                    len(fresh),
                    pgid,
                    fresh,
                )
            killed.update(freeze_and_kill(targets, pgid))
            time.sleep(0.02)
        if killed:
            self._reap_killed(killed, name)
        return len(killed)

    # ---------------------------------------------------------- internals

    def _leftover_targets(
        self, tree: ProcessTree | None, pgid: int, scan: SessionScan | None
    ) -> dict[int, int]:
        """Live processes of this tree, as pid -> start time (the leader left out)."""
        targets: dict[int, int] = {}
        if tree is not None:
            self.refresh(tree)
            self.claim_orphans(tree)
            targets.update(self.snapshot(tree))
        members = session_members(pgid) if scan is None else scan.session_members(pgid)
        for st in members:  # the group is part of the session
            targets[st.pid] = st.start
        targets.pop(pgid, None)
        return targets

    def _reap_killed(self, killed: Mapping[int, int], name: str) -> None:
        """Wait (bounded) until ``killed`` are dead; reap, by PID, those that are our children.

        Only processes recorded as this provider's (never the leader, never
        a process this daemon forked itself) are reaped; those still pending
        at the deadline are left to the tracker.
        """
        me = os.getpid()
        pending = dict(killed)
        deadline = time.monotonic() + _REAP_TIMEOUT
        while pending:
            for pid, start in list(pending.items()):
                st = proc_stat(pid)
                if st is None or st.start != start:
                    del pending[pid]  # gone: reaped by its parent
                elif not st.dead:
                    continue  # SIGKILL not acted upon yet
                elif st.ppid == me:
                    if reap_pid(pid):
                        del pending[pid]
                elif st.ppid not in pending:
                    del pending[pid]  # its parent (not one being killed) reaps it
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        if pending:
            log.warning(
                "%s: leftover process(es) %s still not gone %.1fs after SIGKILL",
                name,
                sorted(pending),
                _REAP_TIMEOUT,
            )
            self.reap_later(pending)

    def _remember_orphans_locked(self, idents: Mapping[int, int]) -> None:
        self._orphans.update(idents)
        while len(self._orphans) > _MAX_TRACKED:
            del self._orphans[next(iter(self._orphans))]

    def _leader_runs_locked(self, leader: int) -> bool:
        """``leader`` is tracked and has not exited (tracked leaders are not reaped yet)."""
        st = proc_stat(leader)
        return leader in self._trees and st is not None and not st.dead

    def _claim_locked(self, tree: ProcessTree, ident: tuple[int, int], why: str) -> None:
        log.debug("pid %d: claiming orphan %d (%s)", tree.leader, ident[0], why)
        tree.known[ident[0]] = ident[1]
        self._unclaimed.pop(ident, None)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not (self._closed or self._trees or self._orphans or self._strays):
                    self._wake.wait()
                if self._closed:
                    return
            try:
                self._cycle()
            except Exception:
                log.exception("descendant tracker: refresh failed")
            with self._lock:
                pause = self.interval * max(1.0, len(self._trees) / SCALE_TREES)
            if self._stop.wait(pause):
                return

    def _cycle(self) -> None:
        me = os.getpid()
        subreaper = is_subreaper()
        with self.spawn_lock, self._lock:
            before = _live_idents(self._scan_ours_locked(me)) if subreaper else None
            if not subreaper:
                self._strays = False
                self._unclaimed.clear()
            # Quiet trees share a budget of walks per cycle, so idle cost stays flat.
            n = len(self._trees)
            walks = QUIET_WALKS_PER_CYCLE * max(1.0, n / SCALE_TREES)  # per second: the same
            spread = max(QUIET_WALKS, math.ceil(n / walks))
            for tree in list(self._trees.values()):
                if tree.rest > 0:
                    tree.rest -= 1
                    if tree.exit_watched:
                        leader_alive = not tree.exited
                    else:
                        leader = proc_stat(tree.leader)
                        leader_alive = leader is not None and not leader.dead
                else:
                    seen = (tree.known, tree.sessions)  # the walk replaces both
                    leader_alive = self._refresh_locked(tree, me, subreaper)
                    same = seen == (tree.known, tree.sessions)
                    tree.quiet = min(tree.quiet + 1, QUIET_WALKS) if same else 0
                    tree.rest = tree.quiet if tree.quiet < QUIET_WALKS else spread
                if before is not None and leader_alive:
                    tree.children_before = before
            for pid, start in list(self._orphans.items()):
                if self._orphan_settled(pid, start, me):
                    del self._orphans[pid]

    @staticmethod
    def _orphan_settled(pid: int, start: int, me: int) -> bool:
        """Reap ``pid`` if it is our zombie; ``True`` once there is nothing left to reap."""
        st = proc_stat(pid)
        if st is None or st.start != start:
            return True  # gone
        if not st.dead:
            return False
        return reap_pid(pid) if st.ppid == me else False

    def _refresh_locked(self, tree: ProcessTree, me: int, subreaper: bool) -> bool:
        """Re-walk ``tree``; return whether its leader was alive (checked last)."""
        stats: dict[int, ProcStat] = {}
        todo: list[int] = []
        for pid, start in tree.known.items():
            st = proc_stat(pid)
            if st is None or st.start != start:
                continue  # gone
            if st.dead:
                # A recorded descendant: reap it if it is ours, or once it is.
                if st.ppid == me:
                    reap_pid(pid)
                elif subreaper:
                    self._remember_orphans_locked({pid: start})
                continue
            stats[pid] = st
            todo.append(pid)
        leader = proc_stat(tree.leader)
        leader_alive = leader is not None and not leader.dead
        if leader_alive:
            todo.append(tree.leader)
        while todo and len(stats) < _MAX_TRACKED:
            parent = todo.pop()
            for child in children_of(parent):
                if child in stats or child == tree.leader:
                    continue
                st = proc_stat(child)
                if st is None or st.dead or st.ppid != parent:
                    continue
                stats[child] = st
                todo.append(child)
        tree.known = {pid: st.start for pid, st in stats.items()}
        tree.sessions = {tree.leader} | {st.session for st in stats.values()}
        return leader_alive

    def _scan_ours_locked(self, me: int) -> list[ProcStat]:
        """Our own children (subreaper), tracked leaders left out; hold both locks.

        Reaps the zombies that are orphans of provider trees and attributes
        the live orphans nobody knows yet (:meth:`_attribute_locked`).
        """
        our_sid = os.getsid(0)
        recorded = set(self._orphans.items())
        for tree in self._trees.values():
            recorded.update(tree.known.items())
        found: list[ProcStat] = []
        strays: set[tuple[int, int]] = set()
        tids = {me} | {t for t in self._forking_tids if os.path.exists(f"/proc/{me}/task/{t}")}
        self._forking_tids &= tids
        for pid in children_of(me, tids):
            if pid in self._trees:
                continue  # a provider leader: its ProviderProcess reaps it
            st = proc_stat(pid)
            if st is None or st.ppid != me:
                continue
            found.append(st)
            ident = (pid, st.start)
            if st.dead:
                # Nobody in this process waits for such a zombie: it is a
                # recorded orphan, or its session is one no child we forked
                # can be in (ours, or its own).
                orphan = ident in recorded or ident in self._unclaimed
                if (orphan or st.session not in (our_sid, pid)) and reap_pid(pid):
                    self._orphans.pop(pid, None)
                continue
            if st.session == our_sid:
                continue  # forked by this process (or orphaned by such a child)
            strays.add(ident)
            if ident not in recorded:
                self._attribute_locked(st)
        self._strays = bool(strays)
        for ident in list(self._unclaimed):
            if ident not in strays:
                del self._unclaimed[ident]
        return found

    def _attribute_locked(self, st: ProcStat) -> None:
        """Give a live orphan (in another session than ours) to the provider it must be from.

        By session if a provider has a known process in it; else by start
        time: only providers started before it can own it.  With several
        candidates it stays unclaimed until one is left.
        """
        ident = (st.pid, st.start)
        for tree in self._trees.values():
            if st.session in tree.sessions:
                self._claim_locked(tree, ident, f"in its session {st.session}")
                return
        if ident in self._unclaimed:
            return
        owners = {t.leader for t in self._trees.values() if t.leader_start <= st.start}
        if len(owners) == 1:
            self._claim_locked(self._trees[owners.pop()], ident, "its only possible owner")
        elif owners:
            log.debug("orphan %d: one of %s owns it", st.pid, sorted(owners))
            self._unclaimed[ident] = owners


def _live_idents(stats: list[ProcStat]) -> frozenset[tuple[int, int]]:
    """``(pid, start)`` of the live ones."""
    return frozenset((st.pid, st.start) for st in stats if not st.dead)


_default = ProcessWide(DescendantTracker)


def default_tracker() -> DescendantTracker:
    """The process-wide tracker, created on first use, for callers that inject none.

    Its thread starts only when a first provider is added.  A daemon should
    create its own :class:`DescendantTracker` and give it to every provider
    instead, and never mix the two in one process.
    """
    return _default.get()

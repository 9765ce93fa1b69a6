"""One provider child process (a CLI agent), supervised.

Owns spawning the provider CLI in its own session/process group, reading its
stdout line by line and its stderr into a bounded tail, writing to its stdin,
signalling and stopping the whole group (a signal ladder ending in SIGKILL),
and reporting the exit exactly once.  Nothing here parses the output.

Threads per process (all daemon threads):

``<name>-stdout``
    Reads stdout, splits it into lines (:class:`LineSplitter`) and calls
    ``on_line`` for each, in order.  After stdout ends and the process is
    reaped it calls ``on_exit`` once; it joins the other threads first.
``<name>-stderr``
    Keeps the last ``stderr_tail_bytes`` of stderr.
``<name>-wait``
    Waits for the group leader to exit *without reaping it*
    (``waitid(WNOWAIT)``), kills whatever is left of its tree (process group,
    session, tracked descendants; see below) while the leader's zombie still
    pins the PID (so the group and session ids cannot have been reused),
    then reaps it.  Killing the leftovers is what makes stdout reach EOF
    when a grandchild inherited stdout and outlived the leader.
``<name>-stop``
    Only while :meth:`ProviderProcess.terminate` runs its signal ladder.

Descendants outside the group.  A provider may start processes in a session
of their own (Claude Code runs every Bash tool under ``setsid``), out of
reach of a group kill; when the provider dies without cleaning up (SIGKILL,
OOM killer, crash) they would be orphaned and keep running.  So one
module-level thread, ``corral-descendants``, shared by all instances, keeps
a snapshot of every provider's descendants as ``(pid, start time)`` pairs,
refreshed every ``_TRACK_INTERVAL`` seconds and right before each ladder
signal.  Once the leader exited, the waiter freezes (SIGSTOP) and then
SIGKILLs what is left: the process group, the session, and every recorded
descendant that is still the same process, plus whatever those started
meanwhile.  Signals go through a pidfd opened and then checked against the
recorded start time, so a reused PID is never hit (without pidfd support the
start time is checked right before ``kill()``: a small window remains).

The daemon makes itself a child subreaper (:func:`become_subreaper`), so
orphans of a provider tree are reparented to it rather than to init, and the
tracker also looks at the daemon's own children:

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
children.  This relies on one rule: whatever the daemon itself spawns in a
session of its own is a :class:`ProviderProcess` (registered under
``spawn_lock``); anything else must stay in the daemon's session.  Without
subreaper (unit tests, or no ``prctl``) only the snapshot helps: descendants
born and orphaned between two refreshes escape.

If something outside the provider's tree still holds stdout or stderr open
after the leader exited, the readers stop after the stream has been idle for
``drain_timeout`` seconds (and at the latest ``_DRAIN_HARD_CAP`` seconds
after the exit), so ``on_exit`` always comes.

Over-long lines: a stdout line longer than ``max_line_bytes`` is delivered
as its first ``max_line_bytes`` bytes as soon as the limit is crossed; the
rest of that line is read and discarded.  No in-band marker is injected (it
could be mistaken for provider output); the cut line is normally not valid
JSON, so parsers see it as unparseable.  Each cut is logged and counted in
:attr:`ProviderProcess.truncated_lines`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from corral.supervisor.proctools import (
    ProcStat,
    children_of,
    is_subreaper,
    proc_stat,
    session_members,
)

__all__ = ["ExitInfo", "LineSplitter", "ProviderProcess"]

log = logging.getLogger("corral.process")

_CHUNK = 64 * 1024
# Latest moment (seconds after the leader's exit) at which the readers stop,
# even if something outside the group keeps writing to the pipes.
_DRAIN_HARD_CAP = 30.0
# Bounded waits used on the exit path.
_JOIN_TIMEOUT = 5.0
_STDIN_LOCK_TIMEOUT = 1.0
# How many rounds of "find what is left, freeze it, SIGKILL it" after the
# leader exited (killing one process can hand its children to us).
_KILL_ROUNDS = 5
# Seconds between two refreshes of every provider's descendant snapshot.
_TRACK_INTERVAL = 0.5
# At most this many descendants are remembered per provider (and as orphans).
_MAX_TRACKED = 4096
# How long the exit path waits for killed leftovers to die (reaping ours).
_REAP_TIMEOUT = 1.0


@dataclass(frozen=True)
class ExitInfo:
    """How a provider process ended."""

    pid: int
    returncode: int | None  # as Popen reports it (negative = killed by signal)
    signal: int | None  # the signal that killed it, if any
    stderr_tail: str  # last bytes of stderr, decoded with errors="replace"
    stopped_by_us: bool  # terminate() was called before it exited
    leftover_killed: int  # processes of its tree still alive after it exited, killed by us


class LineSplitter:
    """Split a byte stream into lines of at most ``max_line_bytes`` bytes.

    Lines are returned without the ``\\n`` and without one trailing ``\\r``.
    Memory use is bounded by ``max_line_bytes`` (plus the chunk being fed).
    A longer line yields its first ``max_line_bytes`` bytes once, immediately;
    the rest of it is dropped.
    """

    def __init__(self, max_line_bytes: int) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be >= 1")
        self._max = max_line_bytes
        self._buf = bytearray()
        self._discarding = False
        self.truncated_lines = 0
        self.discarded_bytes = 0

    @property
    def max_line_bytes(self) -> int:
        """The per-line cap."""
        return self._max

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the lines it completed (or cut)."""
        out: list[bytes] = []
        limit = self._max + 1  # room for a trailing "\r" that gets stripped
        start = 0
        n = len(data)
        while start < n:
            nl = data.find(b"\n", start)
            end = n if nl == -1 else nl
            if self._discarding:
                self.discarded_bytes += end - start
            elif not self._buf and nl != -1 and end - start <= limit:
                # Fast path: a whole line inside this chunk.
                out.append(self._finish_line(data[start:end]))
                start = nl + 1
                continue
            else:
                take = min(limit - len(self._buf), end - start)
                self._buf += data[start : start + take]
                if take < end - start:
                    out.append(bytes(self._buf[: self._max]))
                    self.discarded_bytes += len(self._buf) - self._max + (end - start - take)
                    self.truncated_lines += 1
                    self._buf.clear()
                    self._discarding = True
            if nl == -1:
                break
            if self._discarding:
                self._discarding = False
            else:
                out.append(self._finish_line(bytes(self._buf)))
                self._buf.clear()
            start = nl + 1
        return out

    def finish(self) -> bytes | None:
        """End of stream: the last line if it had no newline, else ``None``."""
        if self._discarding:
            self._discarding = False
            return None
        if not self._buf:
            return None
        line = self._finish_line(bytes(self._buf))
        self._buf.clear()
        return line

    def _finish_line(self, line: bytes) -> bytes:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self._max:
            self.discarded_bytes += len(line) - self._max
            self.truncated_lines += 1
            line = line[: self._max]
        return line


# ------------------------------------------------------------ descendant tracking


class _Pinned:
    """A process held by its identity ``(pid, start)``: signals never hit a reused PID.

    With a pidfd the hold is exact.  Without one (no kernel support, or a
    seccomp filter) the start time is checked again right before each
    ``kill()``; a PID reused in between could still be hit, unless the
    process is an unreaped child of ours (then its PID cannot be reused).
    """

    __slots__ = ("fd", "pid", "start")

    def __init__(self, pid: int, start: int, fd: int | None) -> None:
        self.pid = pid
        self.start = start
        self.fd = fd

    def send(self, sig: int) -> bool:
        """Send ``sig``; ``False`` if the process is gone or may not be signalled."""
        try:
            if self.fd is not None:
                signal.pidfd_send_signal(self.fd, sig)
            else:
                st = proc_stat(self.pid)
                if st is None or st.start != self.start:
                    return False
                os.kill(self.pid, sig)
        except OSError:  # ProcessLookupError, PermissionError
            return False
        return True

    def close(self) -> None:
        """Release the pidfd (if any)."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def _pin(pid: int, start: int) -> _Pinned | None:
    """Hold ``pid`` if it is still the live process that started at ``start``."""
    fd: int | None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except (AttributeError, OSError):  # no pidfd support: fall back to kill()
        fd = None
    st = proc_stat(pid)  # read after pidfd_open: the fd refers to this very process
    if st is None or st.dead or st.start != start:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        return None
    return _Pinned(pid, start, fd)


def _freeze_and_kill(targets: Mapping[int, int], pgid: int = 0) -> dict[int, int]:
    """SIGSTOP ``targets`` (pid -> start time) and, once stopped, their children; then SIGKILL.

    A stopped process cannot fork any more (a fork racing with the signal is
    undone), so walking the children of stopped processes finds everything.
    ``pgid``, if given, is frozen and killed as a group too (its leader must
    pin it).  Returns what was signalled (pid -> start time).
    """
    pinned: dict[int, _Pinned] = {}
    if pgid > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGSTOP)
    try:
        frontier = dict(targets)
        while frontier and len(pinned) < _MAX_TRACKED:
            stopped: list[int] = []
            for pid, start in frontier.items():
                if pid in pinned or pid == pgid:
                    continue
                pin = _pin(pid, start)
                if pin is None:
                    continue
                if not pin.send(signal.SIGSTOP):
                    pin.close()
                    continue
                pinned[pid] = pin
                stopped.append(pid)
            frontier = {}
            for parent in stopped:
                for child in children_of(parent):
                    st = proc_stat(child)
                    if st is not None and not st.dead and st.ppid == parent:
                        frontier[child] = st.start
    finally:
        if pgid > 0:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for pin in pinned.values():
            pin.send(signal.SIGKILL)
            pin.close()
    return {pid: pin.start for pid, pin in pinned.items()}


def _reap_pid(pid: int) -> bool:
    """``waitpid(pid, WNOHANG)`` on a child of ours; ``True`` once it is reaped (or gone)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    except OSError:
        return False
    return done == pid


@dataclass(eq=False)
class _Tree:
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


class _Tracker:
    """One thread keeping every provider's descendant snapshot fresh.

    When this process is a child subreaper it also looks at its own children
    (see the module docstring): it reaps, by PID, zombies that are orphans of
    provider trees, and attributes live orphans to a provider.  All state is
    guarded by ``_lock``; ``spawn_lock`` (always taken before ``_lock``) is
    held while a leader is spawned and registered, and while our children
    are examined, so a brand-new leader is never mistaken for an orphan.
    """

    def __init__(self) -> None:
        self.spawn_lock = threading.Lock()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._trees: dict[int, _Tree] = {}
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

    # ----------------------------------------------------------- public

    def add(self, leader: int) -> _Tree:
        """Start tracking the provider led by ``leader`` (hold ``spawn_lock``)."""
        first = proc_stat(leader)
        tree = _Tree(leader, first.start if first is not None else 0, sessions={leader})
        with self._lock:
            self._trees[leader] = tree
            if is_subreaper():
                ours = self._scan_ours_locked(os.getpid())
                st = proc_stat(leader)  # after the scan: see _Tree.children_before
                if st is not None and not st.dead:
                    tree.children_before = _live_idents(ours)
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(target=self._run, name="corral-descendants", daemon=True)
                thread.start()
                self._thread = thread
            self._wake.notify_all()
        return tree

    def remove(self, tree: _Tree) -> None:
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
            killed = _freeze_and_kill(doomed)
            if killed:
                log.info("pid %d: killed %d late leftover(s): %s", tree.leader, len(killed), killed)
            self.reap_later({**doomed, **killed})

    def refresh(self, tree: _Tree) -> None:
        """Walk ``tree`` now (it must still be tracked)."""
        with self._lock:
            if self._trees.get(tree.leader) is tree:
                self._refresh_locked(tree, os.getpid(), is_subreaper())

    def snapshot(self, tree: _Tree) -> dict[int, int]:
        """A copy of ``tree``'s known descendants (pid -> start time)."""
        with self._lock:
            return dict(tree.known)

    def claim_orphans(self, tree: _Tree) -> None:
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
                    _reap_pid(st.pid)  # e.g. a child the leader never waited for
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

    # ---------------------------------------------------------- internals

    def _remember_orphans_locked(self, idents: Mapping[int, int]) -> None:
        self._orphans.update(idents)
        while len(self._orphans) > _MAX_TRACKED:
            del self._orphans[next(iter(self._orphans))]

    def _leader_runs_locked(self, leader: int) -> bool:
        """``leader`` is tracked and has not exited (tracked leaders are not reaped yet)."""
        st = proc_stat(leader)
        return leader in self._trees and st is not None and not st.dead

    def _claim_locked(self, tree: _Tree, ident: tuple[int, int], why: str) -> None:
        log.debug("pid %d: claiming orphan %d (%s)", tree.leader, ident[0], why)
        tree.known[ident[0]] = ident[1]
        self._unclaimed.pop(ident, None)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not (self._trees or self._orphans or self._strays):
                    self._wake.wait()
            try:
                self._cycle()
            except Exception:
                log.exception("descendant tracker: refresh failed")
            time.sleep(_TRACK_INTERVAL)

    def _cycle(self) -> None:
        me = os.getpid()
        subreaper = is_subreaper()
        with self.spawn_lock, self._lock:
            before = _live_idents(self._scan_ours_locked(me)) if subreaper else None
            if not subreaper:
                self._strays = False
                self._unclaimed.clear()
            for tree in list(self._trees.values()):
                leader_alive = self._refresh_locked(tree, me, subreaper)
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
        return _reap_pid(pid) if st.ppid == me else False

    def _refresh_locked(self, tree: _Tree, me: int, subreaper: bool) -> bool:
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
                    _reap_pid(pid)
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
        for pid in children_of(me):
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
                if (orphan or st.session not in (our_sid, pid)) and _reap_pid(pid):
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


_TRACKER = _Tracker()


class ProviderProcess:
    """A provider CLI child process in its own process group.

    Callbacks: ``on_line(bytes)`` for each stdout line, or ``on_lines(list)``
    once per read with the lines it completed (fewer hand-offs under a flood),
    and then ``on_exit(ExitInfo)`` exactly once, all on the stdout reader thread.
    Exceptions from either callback are logged and swallowed.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str],
        cwd: str,
        on_line: Callable[[bytes], None] | None = None,
        on_exit: Callable[[ExitInfo], None],
        on_lines: Callable[[list[bytes]], None] | None = None,
        stdin_pipe: bool = False,
        stderr_tail_bytes: int = 64 * 1024,
        max_line_bytes: int = 8 * 1024 * 1024,
        name: str = "provider",
        drain_timeout: float = 2.0,
    ) -> None:
        if not argv:
            raise ValueError("argv must not be empty")
        if (on_line is None) == (on_lines is None):
            raise ValueError("give exactly one of on_line and on_lines")
        self._argv = list(argv)
        self._env = dict(env)
        self._cwd = cwd
        self._on_line = on_line
        self._on_lines = on_lines
        self._on_exit = on_exit
        self._stdin_pipe = stdin_pipe
        self._stderr_cap = max(0, stderr_tail_bytes)
        self._splitter = LineSplitter(max_line_bytes)
        self._name = name
        self._drain_timeout = max(0.0, drain_timeout)

        self._proc: subprocess.Popen[bytes] | None = None
        self._pgid = 0
        self._tree: _Tree | None = None
        # _cond guards: _exited, _stopped_by_us, _kill_deadline, _stop_thread.
        self._cond = threading.Condition(threading.Lock())
        self._exited = False
        self._stopped_by_us = False
        self._kill_deadline = math.inf
        self._stop_thread: threading.Thread | None = None

        self._stdin_lock = threading.Lock()
        self._stdin_fd: int | None = None

        self._stderr_lock = threading.Lock()
        self._stderr_buf = bytearray()

        self._wake_r = -1
        self._wake_w = -1
        self._returncode: int | None = None
        self._leftover_killed = 0
        self._reaped = threading.Event()
        self._done = threading.Event()
        self._exit_info: ExitInfo | None = None
        self._stdout_thread: threading.Thread | None = None
        self._stderr_thread: threading.Thread | None = None
        self._wait_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Spawn the child and its threads.

        Raises ``OSError`` (e.g. ``FileNotFoundError``, ``PermissionError``)
        if it cannot be spawned; no callback is called then.
        """
        if self._proc is not None:
            raise RuntimeError(f"{self._name}: already started")
        wake_r, wake_w = os.pipe()
        try:
            with _TRACKER.spawn_lock:
                proc = subprocess.Popen(
                    self._argv,
                    stdin=subprocess.PIPE if self._stdin_pipe else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=self._cwd,
                    env=self._env,
                    close_fds=True,
                    start_new_session=True,
                    bufsize=0,
                )
                self._tree = _TRACKER.add(proc.pid)
        except BaseException:
            os.close(wake_r)
            os.close(wake_w)
            raise
        self._wake_r, self._wake_w = wake_r, wake_w
        self._proc = proc
        self._pgid = proc.pid  # start_new_session: the child leads its group
        if proc.stdin is not None:
            self._stdin_fd = proc.stdin.fileno()
            # Non-blocking, so a write can give up at its deadline (see write()).
            os.set_blocking(self._stdin_fd, False)
        log.debug("%s: started pid %d: %s", self._name, proc.pid, self._argv[0])

        self._wait_thread = threading.Thread(
            target=self._wait_main, name=f"{self._name}-wait", daemon=True
        )
        self._stderr_thread = threading.Thread(
            target=self._stderr_main, name=f"{self._name}-stderr", daemon=True
        )
        self._stdout_thread = threading.Thread(
            target=self._stdout_main, name=f"{self._name}-stdout", daemon=True
        )
        try:
            self._wait_thread.start()
            self._stderr_thread.start()
            self._stdout_thread.start()
        except BaseException:
            # Out of threads: do not leave an unsupervised child behind.  A
            # waiter that did start keeps its wake fds; they are leaked then.
            with contextlib.suppress(OSError):
                os.killpg(self._pgid, signal.SIGKILL)
            if not self._wait_thread.is_alive():
                with contextlib.suppress(Exception):
                    proc.wait(1.0)
                _TRACKER.remove(self._tree)
            raise

    # ------------------------------------------------------------- properties

    @property
    def pid(self) -> int | None:
        """The child's PID (also its process group id), once started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        """Started and the group leader has not exited yet."""
        with self._cond:
            return self._proc is not None and not self._exited

    @property
    def descendants(self) -> list[int]:
        """PIDs of the descendants in the latest snapshot, sorted; empty once it exited.

        Includes those that were reparented after their parent died; refreshed
        every ``_TRACK_INTERVAL`` seconds and before every ladder signal.
        """
        tree = self._tree
        return [] if tree is None else sorted(_TRACKER.snapshot(tree))

    @property
    def stderr_tail(self) -> str:
        """The last ``stderr_tail_bytes`` of stderr so far, decoded leniently."""
        with self._stderr_lock:
            return self._stderr_buf.decode("utf-8", errors="replace")

    @property
    def truncated_lines(self) -> int:
        """How many stdout lines were cut at ``max_line_bytes``."""
        return self._splitter.truncated_lines

    # ------------------------------------------------------------------ stdin

    def write(self, data: bytes, timeout: float | None = None) -> bool:
        """Write all of ``data`` to the child's stdin.

        Thread-safe; never raises.  ``False`` if there is no stdin pipe, it
        was closed, the child is gone (broken pipe), or the pipe stayed full
        for ``timeout`` seconds (a child that stopped reading; ``None`` waits
        until :meth:`terminate` ends it).  After a timeout part of ``data`` may
        have been written: the caller should treat the child as unusable.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._stdin_lock:
            fd = self._stdin_fd
            if fd is None:
                return False
            view = memoryview(data)
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            try:
                while view:
                    try:
                        written = os.write(fd, view)
                    except BlockingIOError:
                        if deadline is None:
                            wait_ms = 1000
                        else:
                            left = deadline - time.monotonic()
                            if left <= 0:
                                log.warning(
                                    "%s: stdin full for %.1fs; giving up a write",
                                    self._name,
                                    timeout,
                                )
                                return False
                            wait_ms = max(1, min(1000, math.ceil(left * 1000)))
                        poller.poll(wait_ms)
                        if self._stdin_fd is None:
                            return False
                        continue
                    view = view[written:]
            except OSError as exc:  # BrokenPipeError and friends
                log.debug("%s: stdin write failed: %s", self._name, exc)
                return False
            return True

    def close_stdin(self) -> None:
        """Close the child's stdin (EOF for the child).  Idempotent, thread-safe."""
        with self._stdin_lock:
            self._close_stdin_locked()

    def _close_stdin_locked(self) -> None:
        proc = self._proc
        self._stdin_fd = None
        if proc is not None and proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    # ---------------------------------------------------------------- signals

    def send_signal(self, sig: int) -> bool:
        """Send ``sig`` to the whole process group; ``False`` if it is gone."""
        with self._cond:
            if self._proc is None or self._exited:
                return False
            return self._killpg_locked(sig)

    def _killpg_locked(self, sig: int) -> bool:
        # Called with _cond held and _exited False: the leader is not reaped
        # yet, so its PID (= our group id) cannot have been reused.
        try:
            os.killpg(self._pgid, sig)
        except ProcessLookupError:
            return False
        except PermissionError as exc:
            log.warning("%s: cannot signal group %d: %s", self._name, self._pgid, exc)
            return False
        return True

    def terminate(
        self,
        ladder: Sequence[tuple[int, float]] = ((signal.SIGTERM, 3.0),),
        *,
        kill_after: float = 0.0,
    ) -> None:
        """Stop the process group, without blocking.

        On a background thread: for each ``(sig, grace)`` send ``sig`` to the
        group (followed by SIGCONT, so a stopped group can act on it) and wait
        up to ``grace`` seconds for the leader to exit; then wait
        ``kill_after`` more seconds and SIGKILL the group.  Callable from any
        thread at any time.  While a ladder runs, another call only makes it
        more urgent: the final SIGKILL moves to the earlier of the two
        deadlines (``terminate(())`` therefore kills right away).
        """
        steps = tuple((int(sig), max(0.0, float(grace))) for sig, grace in ladder)
        deadline = time.monotonic() + sum(g for _, g in steps) + max(0.0, kill_after)
        with self._cond:
            if self._proc is None or self._exited:
                return
            self._stopped_by_us = True
            if self._stop_thread is not None:
                if deadline < self._kill_deadline:
                    self._kill_deadline = deadline
                    self._cond.notify_all()
                return
            self._kill_deadline = deadline
            self._stop_thread = threading.Thread(
                target=self._ladder_main, args=(steps,), name=f"{self._name}-stop", daemon=True
            )
            self._stop_thread.start()

    def _ladder_main(self, steps: tuple[tuple[int, float], ...]) -> None:
        with self._cond:
            for sig, grace in steps:
                if self._exited:
                    return
                if time.monotonic() >= self._kill_deadline:
                    break
                log.debug("%s: sending signal %d to group %d", self._name, sig, self._pgid)
                self._refresh_tree()
                self._killpg_locked(sig)
                if sig not in (signal.SIGKILL, signal.SIGCONT):
                    self._killpg_locked(signal.SIGCONT)
                step_end = time.monotonic() + grace
                while not self._exited:
                    remaining = min(step_end, self._kill_deadline) - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            while not self._exited:
                remaining = self._kill_deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._exited:
                return
            log.info("%s: killing group %d", self._name, self._pgid)
            self._refresh_tree()
            self._killpg_locked(signal.SIGKILL)

    def _refresh_tree(self) -> None:
        """Refresh the descendant snapshot now (before a signal may kill the leader)."""
        if self._tree is not None:
            try:
                _TRACKER.refresh(self._tree)
            except Exception:
                log.exception("%s: refreshing descendants failed", self._name)

    # ------------------------------------------------------------------- wait

    def wait(self, timeout: float | None = None) -> ExitInfo | None:
        """Block until ``on_exit`` has been called; ``None`` on timeout.

        Returns ``None`` at once if never started, or if called from the
        stdout reader thread (e.g. inside ``on_line``) before the exit.
        """
        if self._proc is None:
            return None
        reader = self._stdout_thread
        if reader is threading.current_thread():
            return self._exit_info
        if not self._done.wait(timeout):
            return None
        if reader is not None:
            reader.join(_JOIN_TIMEOUT if timeout is None else max(0.0, timeout))
        return self._exit_info

    # ---------------------------------------------------------------- threads

    def _wait_main(self) -> None:
        proc = self._proc
        assert proc is not None
        pid = proc.pid
        leader_known = True
        try:
            # Wait for the exit but leave the zombie: it pins pid/pgid.
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            # Reaped elsewhere (or SIGCHLD ignored): the status is lost.
            leader_known = False
        except OSError as exc:
            log.error("%s: waitid(%d) failed: %s", self._name, pid, exc)
            leader_known = False
        try:
            self._leftover_killed = self._kill_leftovers()
        except Exception:
            log.exception("%s: killing leftovers of group %d failed", self._name, self._pgid)
        finally:
            if self._tree is not None:
                _TRACKER.remove(self._tree)
        with self._cond:
            self._exited = True
            self._cond.notify_all()
        if leader_known:
            try:
                self._returncode = proc.wait()
            except ChildProcessError:
                self._returncode = None
        # Level-triggered wake-up for both readers; the byte is never read.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._reaped.set()
        log.debug("%s: pid %d exited: %s", self._name, pid, self._returncode)

    def _kill_leftovers(self) -> int:
        """SIGKILL what is left of the tree after the leader exited; return how many.

        Runs while the leader's zombie pins its PID (= group and session id).
        Each round: refresh the snapshot, take the group, the session and the
        tracked descendants, freeze and kill them (with whatever they started
        meanwhile).  Then wait (bounded) for them to die, reaping those that
        were reparented to us.
        """
        killed: dict[int, int] = {}
        seen: set[tuple[int, int]] = set()
        for _ in range(_KILL_ROUNDS):
            targets = self._leftover_targets()
            if not targets:
                break
            fresh = sorted(pid for pid, start in targets.items() if (pid, start) not in seen)
            seen.update(targets.items())
            if fresh:
                log.info(
                    "%s: killing %d leftover process(es) of pid %d: %s",
                    self._name,
                    len(fresh),
                    self._pgid,
                    fresh,
                )
            killed.update(_freeze_and_kill(targets, self._pgid))
            time.sleep(0.02)
        if killed:
            self._reap_killed(killed)
        return len(killed)

    def _leftover_targets(self) -> dict[int, int]:
        """Live processes of this tree, as pid -> start time (the leader left out)."""
        targets: dict[int, int] = {}
        tree = self._tree
        if tree is not None:
            _TRACKER.refresh(tree)
            _TRACKER.claim_orphans(tree)
            targets.update(_TRACKER.snapshot(tree))
        for st in session_members(self._pgid):  # the group is part of the session
            targets[st.pid] = st.start
        targets.pop(self._pgid, None)
        return targets

    def _reap_killed(self, killed: Mapping[int, int]) -> None:
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
                    if _reap_pid(pid):
                        del pending[pid]
                elif st.ppid not in pending:
                    del pending[pid]  # its parent (not one being killed) reaps it
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        if pending:
            log.warning(
                "%s: leftover process(es) %s still not gone %.1fs after SIGKILL",
                self._name,
                sorted(pending),
                _REAP_TIMEOUT,
            )
            _TRACKER.reap_later(pending)

    def _pump(self, fd: int, sink: Callable[[bytes], None], what: str) -> None:
        """Read ``fd`` into ``sink`` until EOF, or until it idles after the exit."""
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        exited = False
        hard_deadline = idle_deadline = math.inf
        while True:
            timeout_ms: float | None = None
            if exited:
                now = time.monotonic()
                deadline = min(idle_deadline, hard_deadline)
                if now >= deadline:
                    log.warning(
                        "%s: %s still open %.1fs after the process exited "
                        "(held by a process outside its group?); stop reading",
                        self._name,
                        what,
                        now - (hard_deadline - _DRAIN_HARD_CAP),
                    )
                    return
                timeout_ms = math.ceil((deadline - now) * 1000)
            readable = False
            for efd, _ in poller.poll(timeout_ms):
                if efd == self._wake_r:
                    exited = True
                    poller.unregister(self._wake_r)
                    now = time.monotonic()
                    hard_deadline = now + _DRAIN_HARD_CAP
                    idle_deadline = now + self._drain_timeout
                else:
                    readable = True
            if not readable:
                continue
            try:
                data = os.read(fd, _CHUNK)
            except OSError as exc:
                log.warning("%s: reading %s failed: %s", self._name, what, exc)
                return
            if not data:
                return
            sink(data)
            if exited:
                idle_deadline = time.monotonic() + self._drain_timeout

    def _deliver(self, lines: list[bytes]) -> None:
        try:
            if self._on_lines is not None:
                self._on_lines(lines)
                return
            assert self._on_line is not None
            for line in lines:
                try:
                    self._on_line(line)
                except Exception:
                    log.exception("%s: on_line callback failed", self._name)
        except Exception:
            log.exception("%s: on_lines callback failed", self._name)

    def _on_stdout(self, data: bytes) -> None:
        before = self._splitter.truncated_lines
        lines = self._splitter.feed(data)
        if lines:
            self._deliver(lines)
        if self._splitter.truncated_lines != before:
            log.warning(
                "%s: stdout line longer than %d bytes cut (%d line(s) so far)",
                self._name,
                self._splitter.max_line_bytes,
                self._splitter.truncated_lines,
            )

    def _on_stderr(self, data: bytes) -> None:
        with self._stderr_lock:
            buf = self._stderr_buf
            buf += data
            excess = len(buf) - self._stderr_cap
            if excess > 0:
                del buf[:excess]

    def _stderr_main(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        try:
            self._pump(proc.stderr.fileno(), self._on_stderr, "stderr")
        except Exception:
            log.exception("%s: stderr reader failed", self._name)

    def _stdout_main(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        try:
            self._pump(proc.stdout.fileno(), self._on_stdout, "stdout")
        except Exception:
            log.exception("%s: stdout reader failed", self._name)
        last = self._splitter.finish()
        if last is not None:
            self._deliver([last])
        # stdout may end long before the exit (the child closed it): wait.
        self._reaped.wait()
        self._finish()

    def _finish(self) -> None:
        proc = self._proc
        assert proc is not None
        for thread in (self._wait_thread, self._stderr_thread):
            if thread is not None:
                thread.join(_JOIN_TIMEOUT + _DRAIN_HARD_CAP)
        stderr_done = self._stderr_thread is None or not self._stderr_thread.is_alive()
        if self._stdin_lock.acquire(timeout=_STDIN_LOCK_TIMEOUT):
            try:
                self._close_stdin_locked()
            finally:
                self._stdin_lock.release()
        else:
            log.warning("%s: stdin writer still blocked at exit", self._name)
        for stream in (proc.stdout, proc.stderr if stderr_done else None):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if stderr_done:
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
        rc = self._returncode
        with self._cond:
            stopped = self._stopped_by_us
        info = ExitInfo(
            pid=proc.pid,
            returncode=rc,
            signal=-rc if rc is not None and rc < 0 else None,
            stderr_tail=self.stderr_tail,
            stopped_by_us=stopped,
            leftover_killed=self._leftover_killed,
        )
        self._exit_info = info
        try:
            self._on_exit(info)
        except Exception:
            log.exception("%s: on_exit callback failed", self._name)
        finally:
            self._done.set()

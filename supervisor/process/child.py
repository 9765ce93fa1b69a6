"""One provider child process (a CLI agent), supervised.

Owns spawning the provider CLI in its own session/process group, reading its
stdout line by line and its stderr into a bounded tail, writing to its stdin,
signalling and stopping the whole group (a signal ladder ending in SIGKILL,
timed by :class:`~corral.supervisor.process.ladder.StopLadder`), and
reporting the exit exactly once, as an :class:`~corral.actors.ports.ExitReport`.
Nothing here parses the output.

No thread of its own: the process's pipes, a pidfd that turns readable when
it exits, and its timers (the stop ladder, the drain deadlines) are watched
by the daemon's one :class:`~corral.supervisor.process.loop.PipeLoop`
(injected; :func:`~corral.supervisor.process.loop.default_loop` otherwise),
and every callback runs on that loop's thread, so callbacks must not block.
Stdin writes go through a :class:`~corral.supervisor.process.stdin.StdinWriter`.
When the leader exits, a :class:`~corral.supervisor.process.reaper.Reaper`
worker kills whatever is left of its tree (process group, session, tracked
descendants: see :mod:`~corral.supervisor.process.tree`) while the leader's
zombie still pins the PID (so the group and session ids cannot have been
reused), then reaps it, by PID.  Killing the leftovers is what makes stdout
reach EOF when a grandchild inherited stdout and outlived the leader.  Where
the kernel has no pidfds, one thread per process waits for the exit instead.

Every provider is spawned (:mod:`~corral.supervisor.process.spawner`) so that
it dies with the daemon, registered with a
:class:`~corral.supervisor.process.tree.DescendantTracker` (injected; the
shared :func:`~corral.supervisor.process.tree.default_tracker` otherwise)
under its ``spawn_lock`` so the tracker never takes a brand-new leader for an
orphan, and recorded until reaped in the provider ledger (:mod:`.ledger`).

If something outside the provider's tree still holds stdout or stderr open
after the leader exited, reading stops once the stream has been idle for
``drain_timeout`` seconds (and at the latest ``DRAIN_HARD_CAP`` seconds
after the exit), so ``on_exit`` always comes.  While the owner paused
reading stdout (:meth:`ProviderProcess.pause_reading`, flow control) those
deadlines do not cut it.

A stdout line longer than ``max_line_bytes`` is dropped (see
:mod:`~corral.supervisor.process.lines`), logged and counted. A provider still
running ``STDOUT_EOF_GRACE_S`` after closing its stdout is stopped (SIGTERM,
then SIGKILL); its exit report says so (:data:`CLOSED_OUTPUT_REASON`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from corral.actors.ports import ExitReport
from corral.supervisor.process.kill import open_pidfd
from corral.supervisor.process.ladder import StopLadder
from corral.supervisor.process.ledger import ProviderLedger, current_ledger
from corral.supervisor.process.lines import DroppedLine
from corral.supervisor.process.loop import PipeLoop, Timer, default_loop
from corral.supervisor.process.outputs import DRAIN_HARD_CAP, ProviderOutput
from corral.supervisor.process.reaper import ProcScan, Reaper, default_reaper
from corral.supervisor.process.spawner import release, spawn_provider
from corral.supervisor.process.stdin import StdinWriter
from corral.supervisor.process.tree import (
    DescendantTracker,
    ProcessTree,
    default_tracker,
)

__all__ = [
    "CLOSED_OUTPUT_REASON",
    "DRAIN_HARD_CAP",
    "STDOUT_EOF_GRACE_S",
    "ProviderProcess",
]

log = logging.getLogger("corral.process")

#: How long a provider may live on after closing its stdout (it may be exiting).
STDOUT_EOF_GRACE_S = 1.0
#: The exit report's reason when it was stopped for that.
CLOSED_OUTPUT_REASON = "provider closed its output and was stopped"


class ProviderProcess:
    """A provider CLI child process in its own process group.

    Callbacks: ``on_line(bytes)`` for each stdout line, or ``on_lines(list)``
    once per read with the lines it completed (fewer hand-offs under a flood),
    and then ``on_exit(ExitReport)`` exactly once, all on the pipe loop's
    thread (they must not block). ``on_dropped_line(DroppedLine)`` (optional)
    hears of each over-long line, in order with the lines. Exceptions from the
    callbacks are logged and swallowed.

    ``tracker`` is the descendant tracker to register with (every provider
    of a process must share one; :func:`default_tracker` if not given).
    ``killpg(pgid, sig)`` sends every signal to the group (``os.killpg`` if
    not given; a test can record what the ladder sends and when).
    ``ledger`` records it while it lives (:func:`current_ledger` if not given).
    ``loop`` and ``reaper`` are the shared pipe loop and exit workers
    (the process-wide ones if not given).
    """

    def __init__(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str],
        cwd: str,
        on_line: Callable[[bytes], None] | None = None,
        on_exit: Callable[[ExitReport], None],
        on_lines: Callable[[list[bytes]], None] | None = None,
        stdin_pipe: bool = False,
        stderr_tail_bytes: int = 64 * 1024,
        max_line_bytes: int = 8 * 1024 * 1024,
        name: str = "provider",
        drain_timeout: float = 2.0,
        tracker: DescendantTracker | None = None,
        killpg: Callable[[int, int], None] | None = None,
        ledger: ProviderLedger | None = None,
        on_dropped_line: Callable[[DroppedLine], None] | None = None,
        loop: PipeLoop | None = None,
        reaper: Reaper | None = None,
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
        self._on_dropped_line = on_dropped_line
        self._reason: str | None = None  # for the exit report
        self._stdin_pipe = stdin_pipe
        self._stderr_cap = max(0, stderr_tail_bytes)
        self._max_line_bytes = max_line_bytes
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be >= 1")
        self._name = name
        self._drain_timeout = max(0.0, drain_timeout)
        self._tracker = tracker if tracker is not None else default_tracker()
        self._killpg = killpg if killpg is not None else os.killpg
        self._ledger = ledger if ledger is not None else current_ledger()
        self._loop = loop if loop is not None else default_loop()
        self._reaper = reaper if reaper is not None else default_reaper()

        self._proc: subprocess.Popen[bytes] | None = None
        self._pgid = 0
        self._tree: ProcessTree | None = None
        # _cond guards: _exited, _stopped_by_us, _ladder.
        self._cond = threading.Condition(threading.Lock())
        self._exited = False
        self._stopped_by_us = False
        self._ladder: StopLadder | None = None

        self._stdin: StdinWriter | None = None
        self._output: ProviderOutput | None = None
        self._returncode: int | None = None
        self._leftover_killed = 0
        self._done = threading.Event()
        self._exit_info: ExitReport | None = None

        # Loop thread only:
        self._pidfd: int | None = None
        self._reaped = False  # the loop learnt of the reap
        self._ladder_timer: Timer | None = None
        self._eof_timer: Timer | None = None
        self._finished = False

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Spawn the child and hand its pipes to the loop.

        Raises ``OSError`` (e.g. ``FileNotFoundError``, ``PermissionError``;
        ``TimeoutError`` if the spawner is stuck) if it cannot be spawned,
        ``RuntimeError`` if its tracker or loop is closed; no callback then.
        """
        if self._proc is not None:
            raise RuntimeError(f"{self._name}: already started")
        proc, self._tree = spawn_provider(
            self._argv,
            env=self._env,
            cwd=self._cwd,
            stdin_pipe=self._stdin_pipe,
            tracker=self._tracker,
            ledger=self._ledger,
            name=self._name,
        )
        self._proc = proc
        self._pgid = proc.pid  # start_new_session: the child leads its group
        log.debug("%s: started pid %d: %s", self._name, proc.pid, self._argv[0])
        pidfd: int | None = None
        try:
            assert proc.stdout is not None and proc.stderr is not None
            self._output = ProviderOutput(
                proc.stdout,
                proc.stderr,
                loop=self._loop,
                name=self._name,
                max_line_bytes=self._max_line_bytes,
                stderr_tail_bytes=self._stderr_cap,
                drain_timeout=self._drain_timeout,
                deliver=self._deliver,
                dropped=self._dropped,
                stdout_ended=self._stdout_ended,
                ended=self._try_finish,
            )
            if proc.stdin is not None:
                self._stdin = StdinWriter(proc.stdin, self._loop, self._name)
            pidfd = open_pidfd(proc.pid)
            self._pidfd = pidfd
            self._tree.exit_watched = pidfd is not None
            if pidfd is None:  # before the pipes are watched: a failure closes them here
                threading.Thread(
                    target=self._wait_main, name=f"{self._name}-wait", daemon=True
                ).start()
            self._loop.call_soon(self._register)
        except BaseException:
            # Out of threads, or the loop is closed: leave no unsupervised child behind.
            with contextlib.suppress(OSError):
                self._killpg(self._pgid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                proc.wait(1.0)
            release(self._tracker, self._tree, self._ledger, proc.pid)
            if pidfd is not None:
                with contextlib.suppress(OSError):
                    os.close(pidfd)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            raise

    def _register(self) -> None:
        """Loop thread: start watching the pipes and the exit."""
        assert self._output is not None
        self._output.register()
        if self._pidfd is not None:
            self._loop.add_reader(self._pidfd, self._pidfd_ready)

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
        by the tracker every ``interval`` seconds and before every ladder signal.
        """
        tree = self._tree
        return [] if tree is None else sorted(self._tracker.snapshot(tree))

    @property
    def stderr_tail(self) -> str:
        """The last ``stderr_tail_bytes`` of stderr so far, decoded leniently."""
        output = self._output
        return "" if output is None else output.stderr_tail

    @property
    def dropped_lines(self) -> int:
        """How many stdout lines were dropped as longer than ``max_line_bytes``."""
        output = self._output
        return 0 if output is None else output.dropped_lines

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the thread that runs this process's callbacks (the loop);
        dropped if the loop is closed."""
        try:
            self._loop.run(fn)
        except RuntimeError:
            log.debug("%s: the pipe loop is closed; a call is dropped", self._name)

    # ------------------------------------------------------------------ stdin

    def write(self, data: bytes, timeout: float | None = None) -> bool:
        """Write all of ``data`` to the child's stdin, after earlier writes.

        Thread-safe; never raises.  ``False`` if there is no stdin pipe, it
        was closed, the child is gone (broken pipe), or the pipe stayed full
        for ``timeout`` seconds (a child that stopped reading; ``None`` waits
        until it reads or is gone).  From a callback (the loop thread) the
        write is queued and ``True`` returned at once.  See
        :class:`~corral.supervisor.process.stdin.StdinWriter`.
        """
        stdin = self._stdin
        return stdin is not None and stdin.write(data, timeout)

    def close_stdin(self) -> None:
        """Close the child's stdin (EOF for the child) once what was written
        before is in the pipe.  Idempotent, thread-safe, never blocks."""
        if self._stdin is not None:
            self._stdin.close()

    def end_stdin(self, last: Sequence[bytes]) -> None:
        """Write ``last``, then close stdin, without blocking the caller."""
        stdin = self._stdin
        if stdin is None:
            return
        for line in last:
            if not stdin.send(line):
                break
        stdin.close()

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
            self._killpg(self._pgid, sig)
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

        In the background: for each ``(sig, grace)`` send ``sig`` to the group
        (followed by SIGCONT, so a stopped group can act on it) and wait up
        to ``grace`` seconds for the leader to exit; then wait ``kill_after``
        more seconds and SIGKILL the group.  Callable from any thread at any
        time.  While a ladder runs, another call only makes it more urgent:
        the final SIGKILL moves to the earlier of the two deadlines
        (``terminate(())`` therefore kills right away).
        """
        now = time.monotonic()
        with self._cond:
            if self._proc is None or self._exited:
                return
            self._stopped_by_us = True
            if self._ladder is not None:
                if not self._ladder.hurry(StopLadder.deadline_for(ladder, kill_after, now)):
                    return
            else:
                self._ladder = StopLadder(ladder, kill_after, now)
        self._ladder_step()

    def _ladder_step(self) -> None:
        """Send what the ladder has due, on a reaper thread: it refreshes the
        descendant snapshot first, which waits for the tracker's lock (the
        loop must not)."""
        self._reaper.submit(self._ladder_send)

    def _ladder_send(self, _scan: ProcScan) -> None:
        """Reaper thread: send every signal due, then arm the loop's timer for the next."""
        with self._cond:
            ladder = self._ladder
            if ladder is None or self._exited:
                return
            sig = ladder.due(time.monotonic())
            while sig is not None:
                if ladder.finished:
                    log.info("%s: killing group %d", self._name, self._pgid)
                else:
                    log.debug("%s: sending signal %d to group %d", self._name, sig, self._pgid)
                self._refresh_tree()
                self._killpg_locked(sig)
                if ladder.finished:
                    return
                if sig not in (signal.SIGKILL, signal.SIGCONT):
                    self._killpg_locked(signal.SIGCONT)
                ladder.sent(time.monotonic())
                sig = ladder.due(time.monotonic())
            wake = ladder.wake_at()
        if math.isfinite(wake):
            self.call_soon(lambda: self._arm_ladder(wake))

    def _arm_ladder(self, wake: float) -> None:
        """Loop thread: run the ladder's next step at ``wake`` (one timer at a time)."""
        if self._reaped:
            return
        if self._ladder_timer is not None:
            self._ladder_timer.cancel()
        self._ladder_timer = self._loop.call_at(wake, self._ladder_step)

    def _refresh_tree(self) -> None:
        """Refresh the descendant snapshot now (before a signal may kill the leader)."""
        if self._tree is not None:
            try:
                self._tracker.refresh(self._tree)
            except Exception:
                log.exception("%s: refreshing descendants failed", self._name)

    # ------------------------------------------------------------------- wait

    def wait(self, timeout: float | None = None) -> ExitReport | None:
        """Block until ``on_exit`` has been called; ``None`` on timeout.

        Returns at once (``None`` before the exit) if never started, or if
        called from a callback (the loop thread, which reports the exit).
        """
        if self._proc is None:
            return None
        if self._loop.on_loop():
            return self._exit_info
        if not self._done.wait(timeout):
            return None
        return self._exit_info

    # ------------------------------------------------------------- reading

    def pause_reading(self) -> None:
        """Stop reading stdout until :meth:`resume_reading` (flow control: the
        pipe fills and the provider blocks on its own output).  Thread-safe."""
        output = self._output
        if output is not None:
            self.call_soon(output.pause)

    def resume_reading(self) -> None:
        """Read stdout again after :meth:`pause_reading`.  Thread-safe."""
        output = self._output
        if output is not None:
            self.call_soon(output.resume)

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

    def _dropped(self, line: DroppedLine) -> None:
        if self._on_dropped_line is not None:
            try:
                self._on_dropped_line(line)
            except Exception:
                log.exception("%s: on_dropped_line callback failed", self._name)

    def _stdout_ended(self) -> None:
        """Loop thread: stdout ended before the exit: if the provider runs on, stop it."""
        if not self._reaped:
            self._eof_timer = self._loop.call_later(STDOUT_EOF_GRACE_S, self._stop_unheard)

    def _stop_unheard(self) -> None:
        """Loop thread: stdout ended but the leader still runs: stop it (unless a stop runs)."""
        with self._cond:
            if self._proc is None or self._exited or self._stopped_by_us:
                return
            # Exited but not reaped yet (its leftovers being killed)? Then nothing to do.
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            with contextlib.suppress(ChildProcessError):
                if os.waitid(os.P_PID, self._proc.pid, flags) is None:
                    self._stopped_by_us = True
            if not self._stopped_by_us:
                return
        self._reason = CLOSED_OUTPUT_REASON
        log.warning("%s: closed its stdout but kept running; stopping it", self._name)
        self.terminate()

    # ---------------------------------------------------------------- exit

    def _pidfd_ready(self) -> None:
        """Loop thread: the leader exited (its zombie waits): hand the exit work on."""
        fd = self._pidfd
        if fd is None:
            return
        self._pidfd = None
        if self._tree is not None:
            self._tree.exited = True  # the tracker's resting cycles trust this
        self._loop.forget(fd)
        with contextlib.suppress(OSError):
            os.close(fd)
        self._reaper.submit(self._after_exit)

    def _wait_main(self) -> None:
        """Without pidfds: wait on a thread of its own for the exit, without reaping."""
        proc = self._proc
        assert proc is not None
        with contextlib.suppress(OSError):
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        self._reaper.submit(self._after_exit)

    def _after_exit(self, scan: ProcScan) -> None:
        """Reaper thread: kill what the leader left (its zombie pins its ids), reap it."""
        proc = self._proc
        assert proc is not None
        pid = proc.pid
        try:
            self._kill_and_reap(proc, scan)
        except Exception:
            log.exception("%s: handling the exit of pid %d failed", self._name, pid)
        finally:
            with self._cond:
                self._exited = True  # (already, unless handling it failed)
                self._cond.notify_all()
            try:
                self._loop.call_soon(self._on_reaped)
            except RuntimeError:  # the loop is closed: nothing reads the pipes any more
                log.warning("%s: the pipe loop is closed; exit of %d not reported", self._name, pid)

    def _kill_and_reap(self, proc: subprocess.Popen[bytes], scan: ProcScan) -> None:
        pid = proc.pid
        leader_known = True
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            leader_known = False  # reaped elsewhere (or SIGCHLD ignored): the status is lost
        except OSError as exc:
            log.error("%s: waitid(%d) failed: %s", self._name, pid, exc)
            leader_known = False
        try:
            self._leftover_killed = self._tracker.kill_leftovers(
                self._tree, self._pgid, self._name, scan
            )
        except Exception:
            log.exception("%s: killing leftovers of group %d failed", self._name, self._pgid)
        finally:
            release(self._tracker, self._tree, self._ledger, pid)
        with self._cond:
            self._exited = True
            self._cond.notify_all()
        if leader_known:
            try:
                self._returncode = proc.wait()
            except ChildProcessError:
                self._returncode = None
        log.debug("%s: pid %d exited: %s", self._name, pid, self._returncode)

    def _on_reaped(self) -> None:
        """Loop thread: the leader is reaped: drain the pipes (bounded), then report."""
        self._reaped = True
        for timer in (self._ladder_timer, self._eof_timer):
            if timer is not None:
                timer.cancel()
        assert self._output is not None
        self._output.exited()
        self._try_finish()

    def _try_finish(self) -> None:
        """Loop thread: once both pipes ended and the leader is reaped, report the exit."""
        output = self._output
        if self._finished or not self._reaped or output is None or not output.done:
            return
        self._finished = True
        output.cancel()
        if self._stdin is not None:
            self._stdin.abort()
        proc = self._proc
        assert proc is not None
        rc = self._returncode
        with self._cond:
            stopped = self._stopped_by_us
        info = ExitReport(
            pid=proc.pid,
            returncode=rc,
            signal=-rc if rc is not None and rc < 0 else None,
            stderr_tail=self.stderr_tail,
            stopped_by_us=stopped,
            leftover_killed=self._leftover_killed,
            reason=self._reason,
        )
        self._exit_info = info
        try:
            self._on_exit(info)
        except Exception:
            log.exception("%s: on_exit callback failed", self._name)
        finally:
            self._done.set()

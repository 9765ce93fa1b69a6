"""One provider child process (a CLI agent), supervised.

Owns spawning the provider CLI in its own session/process group, reading its
stdout line by line and its stderr into a bounded tail, writing to its stdin,
signalling and stopping the whole group (a signal ladder ending in SIGKILL,
timed by :class:`~corral.supervisor.process.ladder.StopLadder`), and
reporting the exit exactly once, as an :class:`~corral.actors.ports.ExitReport`.
Nothing here parses the output.

Threads per process (all daemon threads):

``<name>-stdout``
    Reads stdout, splits it into lines
    (:class:`~corral.supervisor.process.lines.LineSplitter`) and calls
    ``on_line`` for each, in order.  After stdout ends and the process is
    reaped it calls ``on_exit`` once; it joins the other threads first.
``<name>-stderr``
    Keeps the last ``stderr_tail_bytes`` of stderr.
``<name>-wait``
    Waits for the group leader to exit *without reaping it*
    (``waitid(WNOWAIT)``), kills whatever is left of its tree (process group,
    session, tracked descendants: see
    :mod:`~corral.supervisor.process.tree`) while the leader's zombie still
    pins the PID (so the group and session ids cannot have been reused),
    then reaps it, by PID.  Killing the leftovers is what makes stdout reach
    EOF when a grandchild inherited stdout and outlived the leader.
``<name>-stop``
    Only while :meth:`ProviderProcess.terminate` runs its signal ladder.

Every provider is spawned (:mod:`~corral.supervisor.process.spawner`) so that
it dies with the daemon, registered with a
:class:`~corral.supervisor.process.tree.DescendantTracker` (injected; the
shared :func:`~corral.supervisor.process.tree.default_tracker` otherwise)
under its ``spawn_lock`` so the tracker never takes a brand-new leader for an
orphan, and recorded until reaped in the provider ledger (:mod:`.ledger`).

If something outside the provider's tree still holds stdout or stderr open
after the leader exited, the readers stop after the stream has been idle for
``drain_timeout`` seconds (and at the latest ``DRAIN_HARD_CAP`` seconds
after the exit: see :mod:`~corral.supervisor.process.pump`), so ``on_exit``
always comes.

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
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from corral.actors.ports import ExitReport
from corral.supervisor.process.ladder import StopLadder
from corral.supervisor.process.ledger import ProviderLedger, current_ledger
from corral.supervisor.process.lines import DroppedLine, LineSplitter, line_runs
from corral.supervisor.process.pump import DRAIN_HARD_CAP, pump
from corral.supervisor.process.spawner import release, spawn_provider
from corral.supervisor.process.tree import (
    DescendantTracker,
    ProcessTree,
    default_tracker,
)

__all__ = ["CLOSED_OUTPUT_REASON", "STDOUT_EOF_GRACE_S", "ProviderProcess"]

log = logging.getLogger("corral.process")

# Bounded waits used on the exit path.
_JOIN_TIMEOUT = 5.0
_STDIN_LOCK_TIMEOUT = 1.0

#: How long a provider may live on after closing its stdout (it may be exiting).
STDOUT_EOF_GRACE_S = 1.0
#: The exit report's reason when it was stopped for that.
CLOSED_OUTPUT_REASON = "provider closed its output and was stopped"


class ProviderProcess:
    """A provider CLI child process in its own process group.

    Callbacks: ``on_line(bytes)`` for each stdout line, or ``on_lines(list)``
    once per read with the lines it completed (fewer hand-offs under a flood),
    and then ``on_exit(ExitReport)`` exactly once, all on the stdout reader thread.
    ``on_dropped_line(DroppedLine)`` (optional) hears of each over-long line, in
    order with the lines. Exceptions from the callbacks are logged and swallowed.

    ``tracker`` is the descendant tracker to register with (every provider
    of a process must share one; :func:`default_tracker` if not given).
    ``killpg(pgid, sig)`` sends every signal to the group (``os.killpg`` if
    not given; a test can record what the ladder sends and when).
    ``ledger`` records it while it lives (:func:`current_ledger` if not given).
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
        self._reason: str | None = None  # for the exit report; stdout reader thread only
        self._stdin_pipe = stdin_pipe
        self._stderr_cap = max(0, stderr_tail_bytes)
        self._splitter = LineSplitter(max_line_bytes)
        self._name = name
        self._drain_timeout = max(0.0, drain_timeout)
        self._tracker = tracker if tracker is not None else default_tracker()
        self._killpg = killpg if killpg is not None else os.killpg
        self._ledger = ledger if ledger is not None else current_ledger()

        self._proc: subprocess.Popen[bytes] | None = None
        self._pgid = 0
        self._tree: ProcessTree | None = None
        # _cond guards: _exited, _stopped_by_us, _ladder, _stop_thread.
        self._cond = threading.Condition(threading.Lock())
        self._exited = False
        self._stopped_by_us = False
        self._ladder: StopLadder | None = None
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
        self._exit_info: ExitReport | None = None
        self._stdout_thread: threading.Thread | None = None
        self._stderr_thread: threading.Thread | None = None
        self._wait_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Spawn the child and its threads.

        Raises ``OSError`` (e.g. ``FileNotFoundError``, ``PermissionError``;
        ``TimeoutError`` if the spawner is stuck) if it cannot be spawned,
        ``RuntimeError`` if its tracker is closed; no callback is called then.
        """
        if self._proc is not None:
            raise RuntimeError(f"{self._name}: already started")
        wake_r, wake_w = os.pipe()
        try:
            proc, self._tree = spawn_provider(
                self._argv,
                env=self._env,
                cwd=self._cwd,
                stdin_pipe=self._stdin_pipe,
                tracker=self._tracker,
                ledger=self._ledger,
                name=self._name,
            )
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
                self._killpg(self._pgid, signal.SIGKILL)
            if not self._wait_thread.is_alive():
                with contextlib.suppress(Exception):
                    proc.wait(1.0)
                release(self._tracker, self._tree, self._ledger, proc.pid)
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
        by the tracker every ``interval`` seconds and before every ladder signal.
        """
        tree = self._tree
        return [] if tree is None else sorted(self._tracker.snapshot(tree))

    @property
    def stderr_tail(self) -> str:
        """The last ``stderr_tail_bytes`` of stderr so far, decoded leniently."""
        with self._stderr_lock:
            return self._stderr_buf.decode("utf-8", errors="replace")

    @property
    def dropped_lines(self) -> int:
        """How many stdout lines were dropped as longer than ``max_line_bytes``."""
        return self._splitter.dropped_lines

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

        On a background thread: for each ``(sig, grace)`` send ``sig`` to the
        group (followed by SIGCONT, so a stopped group can act on it) and wait
        up to ``grace`` seconds for the leader to exit; then wait
        ``kill_after`` more seconds and SIGKILL the group.  Callable from any
        thread at any time.  While a ladder runs, another call only makes it
        more urgent: the final SIGKILL moves to the earlier of the two
        deadlines (``terminate(())`` therefore kills right away).
        """
        now = time.monotonic()
        with self._cond:
            if self._proc is None or self._exited:
                return
            self._stopped_by_us = True
            if self._ladder is not None:
                if self._ladder.hurry(StopLadder.deadline_for(ladder, kill_after, now)):
                    self._cond.notify_all()
                return
            self._ladder = StopLadder(ladder, kill_after, now)
            self._stop_thread = threading.Thread(
                target=self._ladder_main, name=f"{self._name}-stop", daemon=True
            )
            self._stop_thread.start()

    def _ladder_main(self) -> None:
        with self._cond:
            ladder = self._ladder
            assert ladder is not None
            while not self._exited:
                sig = ladder.due(time.monotonic())
                if sig is None:
                    remaining = ladder.wake_at() - time.monotonic()
                    if remaining > 0:
                        self._cond.wait(remaining)
                    continue
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
            self._leftover_killed = self._tracker.kill_leftovers(self._tree, self._pgid, self._name)
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
        # Level-triggered wake-up for both readers; the byte is never read.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._reaped.set()
        log.debug("%s: pid %d exited: %s", self._name, pid, self._returncode)

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
        self._deliver_all(self._splitter.feed(data))

    def _deliver_all(self, found: list[bytes | DroppedLine]) -> None:
        """Hand ``found`` over in order: runs of lines at once, each drop on its own."""
        for run in line_runs(found):
            if isinstance(run, list):
                self._deliver(run)
                continue
            log.warning("%s: dropped a stdout line of %d bytes", self._name, run.size)
            if self._on_dropped_line is not None:
                try:
                    self._on_dropped_line(run)
                except Exception:
                    log.exception("%s: on_dropped_line callback failed", self._name)

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
            pump(
                proc.stderr.fileno(),
                self._wake_r,
                self._on_stderr,
                self._drain_timeout,
                self._name,
                "stderr",
            )
        except Exception:
            log.exception("%s: stderr reader failed", self._name)

    def _stdout_main(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        try:
            pump(
                proc.stdout.fileno(),
                self._wake_r,
                self._on_stdout,
                self._drain_timeout,
                self._name,
                "stdout",
            )
        except Exception:
            log.exception("%s: stdout reader failed", self._name)
        last = self._splitter.finish()
        if last is not None:
            self._deliver_all([last])
        # stdout may end before the exit (the child closed it): if it runs on, stop it.
        if not self._reaped.wait(STDOUT_EOF_GRACE_S):
            self._stop_unheard()
            self._reaped.wait()
        self._finish()

    def _stop_unheard(self) -> None:
        """stdout ended but the leader still runs: stop it (unless a stop runs already)."""
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

    def _finish(self) -> None:
        proc = self._proc
        assert proc is not None
        for thread in (self._wait_thread, self._stderr_thread):
            if thread is not None:
                thread.join(_JOIN_TIMEOUT + DRAIN_HARD_CAP)
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

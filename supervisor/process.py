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
    (``waitid(WNOWAIT)``), kills whatever is left in its process group while
    the leader's zombie still pins the PID (so the group id cannot have been
    reused), then reaps it.  Killing the group is what makes stdout reach EOF
    when a grandchild inherited stdout and outlived the leader.
``<name>-stop``
    Only while :meth:`ProviderProcess.terminate` runs its signal ladder.

If something that escaped the group (it called ``setsid`` itself) still holds
stdout or stderr open after the leader exited, the readers stop after the
stream has been idle for ``drain_timeout`` seconds (and at the latest
``_DRAIN_HARD_CAP`` seconds after the exit), so ``on_exit`` always comes.

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
from dataclasses import dataclass

from supervisor.proctools import pids_in_group

__all__ = ["ExitInfo", "LineSplitter", "ProviderProcess"]

log = logging.getLogger("corral.process")

_CHUNK = 64 * 1024
# Latest moment (seconds after the leader's exit) at which the readers stop,
# even if something outside the group keeps writing to the pipes.
_DRAIN_HARD_CAP = 30.0
# Bounded waits used on the exit path.
_JOIN_TIMEOUT = 5.0
_STDIN_LOCK_TIMEOUT = 1.0
# How many rounds of "scan the group, SIGKILL it" after the leader exited.
_GROUP_KILL_ROUNDS = 5


@dataclass(frozen=True)
class ExitInfo:
    """How a provider process ended."""

    pid: int
    returncode: int | None  # as Popen reports it (negative = killed by signal)
    signal: int | None  # the signal that killed it, if any
    stderr_tail: str  # last bytes of stderr, decoded with errors="replace"
    stopped_by_us: bool  # terminate() was called before it exited
    leftover_killed: int  # group members still alive after it exited, killed by us


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


class ProviderProcess:
    """A provider CLI child process in its own process group.

    Callbacks: ``on_line(bytes)`` for each stdout line and then
    ``on_exit(ExitInfo)`` exactly once, all on the stdout reader thread.
    Exceptions from either callback are logged and swallowed.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str],
        cwd: str,
        on_line: Callable[[bytes], None],
        on_exit: Callable[[ExitInfo], None],
        stdin_pipe: bool = False,
        stderr_tail_bytes: int = 64 * 1024,
        max_line_bytes: int = 8 * 1024 * 1024,
        name: str = "provider",
        drain_timeout: float = 2.0,
    ) -> None:
        if not argv:
            raise ValueError("argv must not be empty")
        self._argv = list(argv)
        self._env = dict(env)
        self._cwd = cwd
        self._on_line = on_line
        self._on_exit = on_exit
        self._stdin_pipe = stdin_pipe
        self._stderr_cap = max(0, stderr_tail_bytes)
        self._splitter = LineSplitter(max_line_bytes)
        self._name = name
        self._drain_timeout = max(0.0, drain_timeout)

        self._proc: subprocess.Popen[bytes] | None = None
        self._pgid = 0
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
        except BaseException:
            os.close(wake_r)
            os.close(wake_w)
            raise
        self._wake_r, self._wake_w = wake_r, wake_w
        self._proc = proc
        self._pgid = proc.pid  # start_new_session: the child leads its group
        if proc.stdin is not None:
            self._stdin_fd = proc.stdin.fileno()
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
    def stderr_tail(self) -> str:
        """The last ``stderr_tail_bytes`` of stderr so far, decoded leniently."""
        with self._stderr_lock:
            return self._stderr_buf.decode("utf-8", errors="replace")

    @property
    def truncated_lines(self) -> int:
        """How many stdout lines were cut at ``max_line_bytes``."""
        return self._splitter.truncated_lines

    # ------------------------------------------------------------------ stdin

    def write(self, data: bytes) -> bool:
        """Write all of ``data`` to the child's stdin.

        Thread-safe; never raises.  ``False`` if there is no stdin pipe, it
        was closed, or the child is gone (broken pipe).  Blocks while the pipe
        is full; a child that stops reading is unblocked by :meth:`terminate`.
        """
        with self._stdin_lock:
            fd = self._stdin_fd
            if fd is None:
                return False
            view = memoryview(data)
            try:
                while view:
                    written = os.write(fd, view)
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
            self._killpg_locked(signal.SIGKILL)

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
        """SIGKILL everything left in the group; return how many we found."""
        seen: set[int] = set()
        for _ in range(_GROUP_KILL_ROUNDS):
            members = pids_in_group(self._pgid)
            if not members:
                break
            fresh = set(members) - seen
            seen.update(members)
            if fresh:
                log.info(
                    "%s: killing %d leftover process(es) in group %d: %s",
                    self._name,
                    len(fresh),
                    self._pgid,
                    sorted(fresh),
                )
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pgid, signal.SIGKILL)
            time.sleep(0.02)
        return len(seen)

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

    def _deliver(self, line: bytes) -> None:
        try:
            self._on_line(line)
        except Exception:
            log.exception("%s: on_line callback failed", self._name)

    def _on_stdout(self, data: bytes) -> None:
        before = self._splitter.truncated_lines
        for line in self._splitter.feed(data):
            self._deliver(line)
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
            self._deliver(last)
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

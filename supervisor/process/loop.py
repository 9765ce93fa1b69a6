"""The one thread that watches every provider's pipes and exit: :class:`PipeLoop`.

Every :class:`~corral.supervisor.process.ProviderProcess` of a daemon
registers its stdout, its stderr, its stdin (only while a write waits for
room) and a pidfd (readable once the process exited) with one selector
(``epoll``) run by one thread, ``corral-pipes``.  The loop also runs the
timers of every process (stop ladders, drain deadlines) and the calls other
threads hand it (:meth:`PipeLoop.call_soon`).  So a live provider costs no
thread of its own: the session actor stays the one thread per session.

Everything that runs on the loop must not block: reads and writes are
non-blocking, callbacks hand work on by ``tell``, and the work that may take
time after an exit (killing what the provider left, reaping it) goes to the
:mod:`~corral.supervisor.process.reaper`.  An exception from a callback is
logged and swallowed; the loop goes on.

:func:`default_loop` is the process-wide loop, started on first use; a test
may create its own and :meth:`PipeLoop.close` it.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import selectors
import threading
import time
from collections import deque
from collections.abc import Callable

from corral.supervisor.process.process_wide import ProcessWide

__all__ = ["PipeLoop", "Timer", "default_loop"]

log = logging.getLogger("corral.process")

#: The longest the loop sleeps without a timer due (it wakes for any call anyway).
_IDLE_WAIT_S = 60.0
_JOIN_TIMEOUT_S = 5.0


class Timer:
    """A call scheduled on the loop; :meth:`cancel` makes it a no-op (thread-safe)."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run it (if it has not run yet)."""
        self.cancelled = True


class PipeLoop:
    """One selector thread for the pipes, pidfds and timers of every provider."""

    def __init__(self, name: str = "corral-pipes") -> None:
        self._name = name
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()  # guards _calls, _woken, _closed, _thread
        self._calls: deque[Callable[[], None]] = deque()
        self._woken = False
        self._closed = False
        self._timers: list[tuple[float, int, Timer]] = []  # loop thread only
        self._order = itertools.count()
        # fd -> (reader, writer) callbacks; loop thread only.
        self._handlers: dict[int, tuple[Callable[[], None] | None, Callable[[], None] | None]] = {}
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ any thread

    @property
    def thread(self) -> threading.Thread | None:
        """The loop's thread, once started."""
        return self._thread

    def on_loop(self) -> bool:
        """Whether the caller runs on the loop's thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop, after the calls handed over before it.

        Raises ``RuntimeError`` once the loop is closed.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            self._ensure_thread_locked()
            self._calls.append(fn)
            if not self._woken:
                self._woken = True
                # Under the lock: close() cannot release the pipe meanwhile.
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(self._wake_w, b"x")

    def run(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` now if on the loop, else as :meth:`call_soon`."""
        if self.on_loop():
            fn()
        else:
            self.call_soon(fn)

    def close(self) -> None:
        """Stop the thread (bounded wait) and release the selector.  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT_S)
        if thread is None or not thread.is_alive():
            self._release()

    # ------------------------------------------------------------ loop thread only

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        """Run ``fn`` on the loop ``delay`` seconds from now (loop thread only)."""
        return self.call_at(time.monotonic() + max(0.0, delay), fn)

    def call_at(self, when: float, fn: Callable[[], None]) -> Timer:
        """Run ``fn`` on the loop at monotonic time ``when`` (loop thread only)."""
        timer = Timer(when, fn)
        heapq.heappush(self._timers, (when, next(self._order), timer))
        return timer

    def add_reader(self, fd: int, fn: Callable[[], None]) -> None:
        """Call ``fn`` whenever ``fd`` is readable (loop thread only)."""
        _, writer = self._handlers.get(fd, (None, None))
        self._set(fd, fn, writer)

    def remove_reader(self, fd: int) -> None:
        """Stop watching ``fd`` for reading (loop thread only; no-op if not watched)."""
        if fd in self._handlers:
            self._set(fd, None, self._handlers[fd][1])

    def add_writer(self, fd: int, fn: Callable[[], None]) -> None:
        """Call ``fn`` whenever ``fd`` is writable (loop thread only)."""
        reader, _ = self._handlers.get(fd, (None, None))
        self._set(fd, reader, fn)

    def remove_writer(self, fd: int) -> None:
        """Stop watching ``fd`` for writing (loop thread only; no-op if not watched)."""
        if fd in self._handlers:
            self._set(fd, self._handlers[fd][0], None)

    def forget(self, fd: int) -> None:
        """Stop watching ``fd`` at all, before it is closed (loop thread only)."""
        if self._handlers.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(fd)

    @property
    def watched(self) -> int:
        """How many descriptors the loop watches (loop thread; for tests and stats)."""
        return len(self._handlers)

    # ------------------------------------------------------------ internals

    def _set(
        self,
        fd: int,
        reader: Callable[[], None] | None,
        writer: Callable[[], None] | None,
    ) -> None:
        events = (selectors.EVENT_READ if reader else 0) | (selectors.EVENT_WRITE if writer else 0)
        known = fd in self._handlers
        if not events:
            self.forget(fd)
            return
        if known:
            self._selector.modify(fd, events, None)
        else:
            self._selector.register(fd, events, None)
        self._handlers[fd] = (reader, writer)  # only once the selector took it

    def _ensure_thread_locked(self) -> None:
        if self._thread is None:
            thread = threading.Thread(target=self._main, name=self._name, daemon=True)
            thread.start()  # RuntimeError if no thread can start: the next call tries again
            self._thread = thread

    def _main(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closed:
                        break
                try:
                    self._run_once()
                except Exception:  # the selector itself failed: never let the loop die
                    log.exception("%s: the selector failed", self._name)
                    time.sleep(0.1)
        finally:
            self._release()

    def _release(self) -> None:
        """Close the selector and the wake-up pipe, once (the thread and close() may both call)."""
        with self._lock:
            fds = (self._wake_r, self._wake_w)
            self._wake_r = self._wake_w = -1
        if fds[0] < 0:
            return
        with contextlib.suppress(Exception):
            self._selector.close()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run_once(self) -> None:
        timeout = self._next_timeout()
        try:
            ready = self._selector.select(timeout)
        except InterruptedError:
            ready = []
        for key, mask in ready:
            fd = key.fd
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(self._wake_r, 4096)
                continue
            if mask & selectors.EVENT_READ:
                self._dispatch(fd, 0)
            if mask & selectors.EVENT_WRITE:
                self._dispatch(fd, 1)
        self._run_calls()
        self._run_timers()

    def _dispatch(self, fd: int, which: int) -> None:
        handlers = self._handlers.get(fd)
        if handlers is None:
            return  # forgotten by an earlier callback of this round
        fn = handlers[which]
        if fn is not None:
            self._guarded(fn)

    def _run_calls(self) -> None:
        with self._lock:
            calls = self._calls
            self._calls = deque()
            self._woken = False
        for fn in calls:
            self._guarded(fn)

    def _run_timers(self) -> None:
        now = time.monotonic()
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, timer = heapq.heappop(timers)
            if not timer.cancelled:
                timer.cancelled = True
                self._guarded(timer.callback)

    def _next_timeout(self) -> float:
        with self._lock:
            if self._calls:
                return 0.0
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
        if not timers:
            return _IDLE_WAIT_S
        return max(0.0, timers[0][0] - time.monotonic())

    def _guarded(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("%s: a callback failed", self._name)


_default = ProcessWide(PipeLoop)


def default_loop() -> PipeLoop:
    """The process-wide loop, created on first use (its thread starts with the first call)."""
    return _default.get()

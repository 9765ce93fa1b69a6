"""A provider's stdin: writes in order, never blocking the pipe loop: :class:`StdinWriter`.

A write goes straight into the pipe while it has room; what does not fit is
queued (``STDIN_QUEUE_CAP`` bytes at most) and written by the
:class:`~corral.supervisor.process.loop.PipeLoop` as the child reads.  A
caller on another thread waits (bounded by its timeout) until its bytes
are in the pipe; a caller on the loop thread cannot wait on the loop, so its
write is only queued.  The descriptor is closed on the loop thread, after
whatever was queued (:meth:`StdinWriter.close`) or at once
(:meth:`StdinWriter.abort`, when the process is gone), so the loop never
watches a descriptor number that was closed and reused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO

from corral.supervisor.process.loop import PipeLoop

__all__ = ["STDIN_QUEUE_CAP", "StdinWriter"]

log = logging.getLogger("corral.process")

#: Bytes that may wait for a child to read its stdin; a write past this fails.
STDIN_QUEUE_CAP = 16 * 1024 * 1024


class StdinWriter:
    """The write end of a child's stdin pipe (``pipe``, made non-blocking here; it
    is closed through ``pipe.close()``, so nothing else closes its number again)."""

    def __init__(
        self, pipe: IO[bytes], loop: PipeLoop, name: str, cap: int = STDIN_QUEUE_CAP
    ) -> None:
        fd = pipe.fileno()
        os.set_blocking(fd, False)
        self._pipe = pipe
        self._loop = loop
        self._name = name
        self._cap = cap
        self._cond = threading.Condition(threading.Lock())
        # All guarded by _cond; the descriptor is only closed with it held.
        self._fd: int | None = fd
        self._queue: deque[memoryview] = deque()
        self._queued = 0  # bytes in _queue
        self._accepted = 0  # bytes ever accepted
        self._written = 0  # bytes ever written to the pipe
        self._closing = False  # close once the queue is written
        self._watching = False  # the loop watches the pipe for room

    def write(self, data: bytes, timeout: float | None) -> bool:
        """Write ``data`` after what was written before; ``False`` if it cannot be.

        Off the loop: waits until all of ``data`` is in the pipe, at most
        ``timeout`` seconds (``None``: until the child reads it or is gone).
        After a timeout what is still queued is dropped and stdin is closed:
        a child that stops reading is unusable, and must not get the rest of
        a prompt its caller was told failed.  On the loop: as :meth:`send`.
        Never raises.
        """
        return self._put(data, timeout, wait=not self._loop.on_loop())

    def send(self, data: bytes) -> bool:
        """Queue ``data`` after what was written before, without waiting for
        the child to read it; ``False`` if stdin is closed or the queue full."""
        return self._put(data, None, wait=False)

    def _put(self, data: bytes, timeout: float | None, *, wait: bool) -> bool:
        view = memoryview(data)
        with self._cond:
            if self._fd is None or self._closing:
                return False
            if self._queued + len(view) > self._cap:
                log.warning(
                    "%s: %d bytes wait for stdin already; a write fails", self._name, self._queued
                )
                return False
            self._accepted += len(view)
            if self._queue:  # behind bytes still queued: all of it waits, in order
                self._queue.append(view)
                self._queued += len(view)
            elif not self._write_locked(view):
                return False
            target = self._accepted
            if self._written >= target:
                return True
            watch = not self._watching
            self._watching = True
        if watch:
            try:
                self._loop.run(self._watch)
            except RuntimeError:  # the loop is closed: nobody would write the rest
                self.abort()
                return False
        if not wait:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._written < target and self._fd is not None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    log.warning("%s: stdin full for %.1fs; giving up a write", self._name, timeout)
                    self._queue.clear()  # the loop closes it (it may be watching it)
                    self._queued = 0
                    self._closing = True
                    break
                self._cond.wait(left)
            else:
                return self._written >= target
        self.abort()
        return False

    def close(self) -> None:
        """Close once everything queued is written (at once if nothing is).  Idempotent."""
        with self._cond:
            if self._fd is None or self._closing:
                return
            self._closing = True
            now = not self._queue
        if now:
            self._loop_or_here(self._close_if_drained)

    def abort(self) -> None:
        """Close now, dropping what is queued (the child is gone).  Idempotent."""
        self._loop_or_here(self._close_now)

    @property
    def closed(self) -> bool:
        """Whether the descriptor is closed."""
        with self._cond:
            return self._fd is None

    # ------------------------------------------------------------ internals

    def _loop_or_here(self, fn: Callable[[], None]) -> None:
        try:
            self._loop.run(fn)
        except RuntimeError:  # the loop is closed: it watches nothing any more
            fn()

    def _write_locked(self, view: memoryview) -> bool:
        """Write what fits of ``view``, queue the rest; ``False`` if the pipe broke."""
        assert self._fd is not None
        try:
            n = os.write(self._fd, view)
        except BlockingIOError:
            n = 0
        except OSError as exc:  # BrokenPipeError and friends
            log.debug("%s: stdin write failed: %s", self._name, exc)
            self._drop_locked()
            return False
        self._written += n
        if n < len(view):
            self._queue.append(view[n:])
            self._queued += len(view) - n
        return True

    def _watch(self) -> None:
        """Loop thread: watch the pipe for room (unless it was closed meanwhile)."""
        with self._cond:
            if self._fd is None or not self._queue:
                self._watching = False
                return
            self._loop.add_writer(self._fd, self._on_room)

    def _on_room(self) -> None:
        """Loop thread: the pipe has room: write what is queued."""
        with self._cond:
            while self._queue and self._fd is not None:
                view = self._queue[0]
                try:
                    n = os.write(self._fd, view)
                except BlockingIOError:
                    break
                except OSError as exc:
                    log.debug("%s: stdin write failed: %s", self._name, exc)
                    self._drop_locked()
                    break
                self._written += n
                self._queued -= n
                if n < len(view):
                    self._queue[0] = view[n:]
                    break
                self._queue.popleft()
            if not self._queue and self._fd is not None:
                self._loop.remove_writer(self._fd)
                self._watching = False
                if self._closing:
                    self._close_locked()
            self._cond.notify_all()

    def _close_if_drained(self) -> None:
        with self._cond:
            if self._fd is not None and not self._queue:
                self._close_locked()

    def _close_now(self) -> None:
        with self._cond:
            self._drop_locked()

    def _drop_locked(self) -> None:
        self._queue.clear()
        self._queued = 0
        if self._fd is not None:
            self._close_locked()

    def _close_locked(self) -> None:
        fd = self._fd
        assert fd is not None
        if self._loop.on_loop():
            self._loop.forget(fd)
        self._fd = None
        self._watching = False
        with contextlib.suppress(OSError):
            self._pipe.close()
        self._cond.notify_all()

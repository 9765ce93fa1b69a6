"""Reading a provider's stdout and stderr on the pipe loop: :class:`ProviderOutput`.

Owns both output pipes of one :class:`~corral.supervisor.process.ProviderProcess`:
stdout split into bounded lines (:mod:`~corral.supervisor.process.lines`)
and handed on one run per read, stderr kept as a bounded tail, pausing
stdout for flow control, and the drain after the exit: a pipe something
outside the provider's tree still holds open is given up once idle for
``drain_timeout`` seconds, and at the latest ``DRAIN_HARD_CAP`` seconds after
the exit (a paused stdout is held back by its reader, not idle, so it is not
cut).  Everything but the stderr tail runs on the loop thread.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import IO

from corral.supervisor.process.lines import DroppedLine, LineSplitter, line_runs
from corral.supervisor.process.loop import PipeLoop, Timer

__all__ = ["DRAIN_HARD_CAP", "ProviderOutput"]

log = logging.getLogger("corral.process")

_CHUNK = 64 * 1024
#: Latest moment (seconds after the leader's exit) at which reading stops,
#: even if something outside the group keeps writing to the pipes.
DRAIN_HARD_CAP = 30.0


class _Pipe:
    """One output pipe being read, and where its data goes (loop thread only)."""

    __slots__ = ("fd", "file", "last_read", "open", "sink", "what")

    def __init__(self, file: IO[bytes], what: str, sink: Callable[[bytes], None]) -> None:
        self.file = file
        self.fd = file.fileno()
        self.what = what
        self.sink = sink
        self.open = True
        self.last_read = 0.0


class ProviderOutput:
    """The stdout and stderr of one provider, read on ``loop``.

    ``deliver(lines)`` gets each run of complete stdout lines,
    ``dropped(DroppedLine)`` each over-long one, in order;
    ``stdout_ended()`` is called once stdout ends (before the exit, the
    provider closed it) and ``ended()`` once both pipes are done.
    """

    def __init__(
        self,
        stdout: IO[bytes],
        stderr: IO[bytes],
        *,
        loop: PipeLoop,
        name: str,
        max_line_bytes: int,
        stderr_tail_bytes: int,
        drain_timeout: float,
        deliver: Callable[[list[bytes]], None],
        dropped: Callable[[DroppedLine], None],
        stdout_ended: Callable[[], None],
        ended: Callable[[], None],
    ) -> None:
        for pipe in (stdout, stderr):
            os.set_blocking(pipe.fileno(), False)
        self._loop = loop
        self._name = name
        self._splitter = LineSplitter(max_line_bytes)
        self._stderr_cap = max(0, stderr_tail_bytes)
        self._drain_timeout = max(0.0, drain_timeout)
        self._deliver = deliver
        self._dropped = dropped
        self._stdout_ended = stdout_ended
        self._ended = ended
        self._stderr_lock = threading.Lock()
        self._stderr_buf = bytearray()
        # Loop thread only:
        self._stdout = _Pipe(stdout, "stdout", self._split)
        self._stderr = _Pipe(stderr, "stderr", self._keep_tail)
        self._paused = False
        self._resumed_at = 0.0
        self._exited_at: float | None = None
        self._drain_timer: Timer | None = None

    @property
    def stderr_tail(self) -> str:
        """The last ``stderr_tail_bytes`` of stderr so far, decoded leniently."""
        with self._stderr_lock:
            return self._stderr_buf.decode("utf-8", errors="replace")

    @property
    def dropped_lines(self) -> int:
        """How many stdout lines were dropped as longer than ``max_line_bytes``."""
        return self._splitter.dropped_lines

    @property
    def done(self) -> bool:
        """Both pipes ended or were given up (loop thread)."""
        return not (self._stdout.open or self._stderr.open)

    # ------------------------------------------------------------ loop thread

    def register(self) -> None:
        """Start watching both pipes."""
        if not self._paused:
            self._watch(self._stdout)
        self._watch(self._stderr)

    def pause(self) -> None:
        """Stop reading stdout until :meth:`resume`."""
        if self._paused:
            return
        self._paused = True
        if self._stdout.open:
            self._loop.remove_reader(self._stdout.fd)

    def resume(self) -> None:
        """Read stdout again."""
        if not self._paused:
            return
        self._paused = False
        if self._stdout.open:
            now = time.monotonic()
            self._stdout.last_read = now  # the drain's idle time starts now
            self._resumed_at = now  # and so does its hard cap, for stdout
            self._watch(self._stdout)
            if self._exited_at is not None:
                self._drain_check()

    def exited(self) -> None:
        """The leader is reaped: read on while the pipes are busy, then give up (bounded)."""
        now = time.monotonic()
        self._exited_at = now
        for pipe in (self._stdout, self._stderr):
            pipe.last_read = now
        self._drain_check()

    def cancel(self) -> None:
        """Forget the drain timer (the process was reported)."""
        if self._drain_timer is not None:
            self._drain_timer.cancel()

    # ------------------------------------------------------------ internals

    def _watch(self, pipe: _Pipe) -> None:
        self._loop.add_reader(pipe.fd, lambda: self._on_readable(pipe))

    def _on_readable(self, pipe: _Pipe) -> None:
        """One read of ``pipe`` into its sink; its end (or a failed read) ends it."""
        try:
            data = os.read(pipe.fd, _CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("%s: reading %s failed: %s", self._name, pipe.what, exc)
            data = b""
        if not data:
            self._end(pipe)
            return
        if self._exited_at is not None:
            pipe.last_read = time.monotonic()
        pipe.sink(data)

    def _split(self, data: bytes) -> None:
        self._hand_on(self._splitter.feed(data))

    def _keep_tail(self, data: bytes) -> None:
        with self._stderr_lock:
            buf = self._stderr_buf
            buf += data
            excess = len(buf) - self._stderr_cap
            if excess > 0:
                del buf[:excess]

    def _end(self, pipe: _Pipe) -> None:
        """Stop reading ``pipe`` (its end, or the drain gave up on it)."""
        if not pipe.open:
            return
        pipe.open = False
        self._loop.forget(pipe.fd)
        with contextlib.suppress(OSError):
            pipe.file.close()
        if pipe is self._stdout:
            last = self._splitter.finish()
            if last is not None:
                self._hand_on([last])
            if self._exited_at is None:
                self._stdout_ended()
        if self.done:
            self.cancel()
            self._ended()

    def _hand_on(self, found: list[bytes | DroppedLine]) -> None:
        """Hand ``found`` over in order: runs of lines at once, each drop on its own."""
        for run in line_runs(found):
            if isinstance(run, list):
                self._deliver(run)
            else:
                log.warning("%s: dropped a stdout line of %d bytes", self._name, run.size)
                self._dropped(run)

    def _drain_check(self) -> None:
        """Give up on pipes that idle (or outlast the hard cap) after the exit."""
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        if self._exited_at is None or self.done:
            return
        now = time.monotonic()
        wake = math.inf
        for pipe in (self._stdout, self._stderr):
            if not pipe.open:
                continue
            if pipe is self._stdout and self._paused:
                continue  # held back by its reader, not idle: resume() checks again
            since = self._exited_at
            if pipe is self._stdout:
                since = max(since, self._resumed_at)
            deadline = min(pipe.last_read + self._drain_timeout, since + DRAIN_HARD_CAP)
            if now < deadline:
                wake = min(wake, deadline)
                continue
            log.warning(
                "%s: %s still open %.1fs after the process exited "
                "(held by a process outside its group?); stop reading",
                self._name,
                pipe.what,
                now - self._exited_at,
            )
            self._end(pipe)
        if not self.done and math.isfinite(wake):
            self._drain_timer = self._loop.call_at(wake, self._drain_check)

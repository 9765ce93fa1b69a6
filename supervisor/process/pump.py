"""Reading one pipe of a provider until EOF, or until it idles after the exit.

A pipe normally ends (EOF) once the provider's tree is gone.  If something
outside the tree still holds it open after the leader exited (a process it
was handed to over a socket, say), reading stops once the pipe has been idle
for ``drain_timeout`` seconds, and at the latest ``DRAIN_HARD_CAP`` seconds
after the exit, so the exit is always reported.  The exit is signalled
through a wake-up pipe (``wake_fd``) that becomes readable once the leader
is reaped; it is level-triggered and never read, so one byte wakes every
reader.
"""

from __future__ import annotations

import logging
import math
import os
import select
import time
from collections.abc import Callable

__all__ = ["DRAIN_HARD_CAP", "pump"]

log = logging.getLogger("corral.process")

_CHUNK = 64 * 1024
#: Latest moment (seconds after the leader's exit) at which the readers stop,
#: even if something outside the group keeps writing to the pipes.
DRAIN_HARD_CAP = 30.0


def pump(
    fd: int,
    wake_fd: int,
    sink: Callable[[bytes], None],
    drain_timeout: float,
    name: str,
    what: str,
) -> None:
    """Read ``fd`` into ``sink`` until EOF, or until it idles after the exit.

    ``wake_fd`` turns readable when the process exited; ``name`` and
    ``what`` (``"stdout"``, ``"stderr"``) label the log lines.
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.register(wake_fd, select.POLLIN)
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
                    name,
                    what,
                    now - (hard_deadline - DRAIN_HARD_CAP),
                )
                return
            timeout_ms = math.ceil((deadline - now) * 1000)
        readable = False
        for efd, _ in poller.poll(timeout_ms):
            if efd == wake_fd:
                exited = True
                poller.unregister(wake_fd)
                now = time.monotonic()
                hard_deadline = now + DRAIN_HARD_CAP
                idle_deadline = now + drain_timeout
            else:
                readable = True
        if not readable:
            continue
        try:
            data = os.read(fd, _CHUNK)
        except OSError as exc:
            log.warning("%s: reading %s failed: %s", name, what, exc)
            return
        if not data:
            return
        sink(data)
        if exited:
            idle_deadline = time.monotonic() + drain_timeout

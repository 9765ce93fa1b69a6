"""Signalling processes by identity, freezing and killing groups of them, reaping by PID.

A process is named by ``(pid, start time)``: :func:`pin_process` holds it
through a pidfd opened and then checked against the recorded start time, so
a reused PID is never hit (without pidfd support the start time is checked
right before ``kill()``: a small window remains).  :func:`freeze_and_kill`
SIGSTOPs a set of such processes and, once stopped, their children (a
stopped process cannot fork any more), then SIGKILLs them all.
:func:`reap_pid` reaps one child of ours by PID, never ``waitpid(-1)``
(which would steal exit statuses from ``subprocess`` users elsewhere in the
daemon).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Mapping

from corral.supervisor.process.procfs import children_of, proc_stat

__all__ = ["MAX_PINNED", "Pinned", "freeze_and_kill", "open_pidfd", "pin_process", "reap_pid"]

log = logging.getLogger("corral.process")

#: At most this many processes are frozen and killed by one :func:`freeze_and_kill`.
MAX_PINNED = 4096


class Pinned:
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


def pin_process(pid: int, start: int) -> Pinned | None:
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
    return Pinned(pid, start, fd)


def freeze_and_kill(targets: Mapping[int, int], pgid: int = 0) -> dict[int, int]:
    """SIGSTOP ``targets`` (pid -> start time) and, once stopped, their children; then SIGKILL.

    A stopped process cannot fork any more (a fork racing with the signal is
    undone), so walking the children of stopped processes finds everything.
    ``pgid``, if given, is frozen and killed as a group too (its leader must
    pin it).  Returns what was signalled (pid -> start time).
    """
    pinned: dict[int, Pinned] = {}
    if pgid > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGSTOP)
    try:
        frontier = dict(targets)
        while frontier and len(pinned) < MAX_PINNED:
            stopped: list[int] = []
            for pid, start in frontier.items():
                if pid in pinned or pid == pgid:
                    continue
                pin = pin_process(pid, start)
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


def reap_pid(pid: int) -> bool:
    """``waitpid(pid, WNOHANG)`` on a child of ours; ``True`` once it is reaped (or gone)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    except OSError:
        return False
    return done == pid


def open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (readable once it exits), or ``None`` where there are none."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError as exc:
        log.debug("pidfd_open(%d) failed: %s", pid, exc)
        return None
    return fd

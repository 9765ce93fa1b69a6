"""The urgent path to a session's provider, and how a provider's end is told.

Stopping must not wait behind queued provider output, so the registry calls a
session's :class:`Control` directly (the provider's interrupt, then the signal
ladder) and then tells the actor, which finishes the bookkeeping when the turn
or the process ends. :func:`exit_reason` is the one line a session shows when
its provider ended on its own.
"""

from __future__ import annotations

import threading

from corral.actors.ports import ExitReport, ProviderHandle


class Control:
    """Thread-safe access to the session's current provider handle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handle: ProviderHandle | None = None

    def set(self, handle: ProviderHandle | None) -> None:
        with self._lock:
            self._handle = handle

    def stop_turn(self) -> None:
        with self._lock:
            handle = self._handle
        if handle is not None:
            handle.stop_turn()

    def close(self) -> None:
        with self._lock:
            handle = self._handle
        if handle is not None:
            handle.close()


def exit_reason(report: ExitReport) -> str:
    """``provider exited with code N: <last stderr line>`` (or killed by a signal)."""
    if report.signal is not None:
        head = f"provider killed by signal {report.signal}"
    else:
        head = f"provider exited with code {report.returncode}"
    tail = [line for line in report.stderr_tail.strip().splitlines() if line.strip()]
    return f"{head}: {tail[-1][:500]}" if tail else head

"""The urgent path to a session's provider, and how a provider's end is told.

Stopping and answering approvals must not wait behind queued provider output,
so the registry calls a session's :class:`Control` directly (the provider's
interrupt and signal ladder; a person's answer to a permission prompt) and then
tells the actor, which does the bookkeeping in order. The pending approvals
live here too, so that each is answered exactly once whoever gets there first
(a client, the timeout, a stop). :func:`exit_reason` is the one line a session shows when
its provider ended on its own.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from corral.actors.ports import ApprovalDecision, ExitReport, ProviderHandle


class Control:
    """Thread-safe access to the session's current provider handle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handle: ProviderHandle | None = None
        # approval id -> (the Approval, the provider's request to answer)
        self._approvals: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    def set(self, handle: ProviderHandle | None) -> None:
        with self._lock:
            self._handle = handle

    def stop_turn(self) -> None:
        """Deny every pending approval ("stopped"), then interrupt the turn."""
        self.deny_all("stopped by a client")
        with self._lock:
            handle = self._handle
        if handle is not None:
            handle.stop_turn()

    def offer(self, approval: dict[str, Any], request: dict[str, Any]) -> None:
        """A permission prompt now waits for an answer."""
        with self._lock:
            self._approvals[approval["approvalId"]] = (approval, request)

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(approval) for approval, _request in self._approvals.values()]

    def answer(self, approval_id: str, decision: ApprovalDecision) -> dict[str, Any] | None:
        """Answer an approval (once): the Approval, or None if it is unknown or was
        answered already. The answer goes to the provider at once."""
        with self._lock:
            taken = self._approvals.pop(approval_id, None)
            handle = self._handle
        if taken is None:
            return None
        approval, request = taken
        if decision.suggestions is None and approval.get("suggestions"):
            # remember grants what the provider offered with this request
            decision = replace(decision, suggestions=approval["suggestions"])
        if handle is not None:
            handle.answer(request, decision)
        return approval

    def deny_all(self, message: str) -> list[str]:
        """Deny every pending approval; the ids it denied."""
        with self._lock:
            ids = list(self._approvals)
        denied = [i for i in ids if self.answer(i, ApprovalDecision(False, message)) is not None]
        return denied

    def close(self) -> None:
        with self._lock:
            handle = self._handle
        if handle is not None:
            handle.close()


def exit_reason(report: ExitReport) -> str:
    """The report's own ``reason`` when it has one (corral stopped the provider and
    says why), else ``provider exited with code N: <last stderr line>`` (or killed
    by a signal)."""
    if report.reason:
        return report.reason
    if report.signal is not None:
        head = f"provider killed by signal {report.signal}"
    else:
        head = f"provider exited with code {report.returncode}"
    tail = [line for line in report.stderr_tail.strip().splitlines() if line.strip()]
    return f"{head}: {tail[-1][:500]}" if tail else head

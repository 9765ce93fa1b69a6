"""The stop ladder's timing: which signal is due when (pure: no clock, no I/O).

A ladder is a list of ``(signal, grace)`` steps followed by ``kill_after``
seconds and a final SIGKILL.  Each step's signal goes to the process group
once the previous step's grace has run out (counted from the moment that
signal went out), and SIGKILL goes at the *kill deadline*: the start plus
every grace plus ``kill_after``.  The deadline can only move earlier
(:meth:`StopLadder.hurry`); once it passed, the steps not sent yet are
skipped and SIGKILL is due.  A step whose grace is 0 is followed at once by
the next; an empty ladder is SIGKILL right away.

The caller owns the clock and the sending: it asks :meth:`StopLadder.due`
with the current time, sends what is due, reports the moment it went out
with :meth:`StopLadder.sent`, and sleeps until :meth:`StopLadder.wake_at`
(or until it is woken because the process exited or the ladder was hurried).
"""

from __future__ import annotations

import math
import signal
from collections.abc import Iterable

__all__ = ["StopLadder"]


class StopLadder:
    """One run of a stop ladder, started at ``now``."""

    def __init__(self, steps: Iterable[tuple[int, float]], kill_after: float, now: float) -> None:
        self.steps = tuple((int(sig), max(0.0, float(grace))) for sig, grace in steps)
        #: When SIGKILL is due (on the caller's clock).
        self.kill_deadline = self.deadline_for(self.steps, kill_after, now)
        self._next = 0  # index of the next step to send
        self._step_end = -math.inf  # when the grace of the last step sent runs out
        self.finished = False  # SIGKILL was handed out: nothing more is due

    @staticmethod
    def deadline_for(steps: Iterable[tuple[int, float]], kill_after: float, now: float) -> float:
        """The kill deadline a ladder of ``steps`` started at ``now`` would have."""
        total = sum(max(0.0, float(grace)) for _, grace in steps)
        return now + total + max(0.0, float(kill_after))

    def hurry(self, deadline: float) -> bool:
        """Move the kill deadline to ``deadline`` if that is earlier; ``True`` if it moved."""
        if deadline < self.kill_deadline:
            self.kill_deadline = deadline
            return True
        return False

    def due(self, now: float) -> int | None:
        """The signal to send at ``now``, or ``None`` if nothing is due yet.

        Each call hands a signal out once; SIGKILL is the last one.
        """
        if self.finished:
            return None
        if now >= self.kill_deadline:
            self.finished = True
            return signal.SIGKILL
        if self._next < len(self.steps) and now >= self._step_end:
            sig, grace = self.steps[self._next]
            self._next += 1
            self._step_end = now + grace
            return sig
        return None

    def sent(self, now: float) -> None:
        """The signal :meth:`due` handed out went out at ``now``: its grace counts from here."""
        if not self.finished and self._next > 0:
            self._step_end = now + self.steps[self._next - 1][1]

    def wake_at(self) -> float:
        """When :meth:`due` may hand out the next signal (``inf`` once finished)."""
        if self.finished:
            return math.inf
        if self._next < len(self.steps):
            return min(self._step_end, self.kill_deadline)
        return self.kill_deadline

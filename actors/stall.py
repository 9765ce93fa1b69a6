"""The stall clock of one session: silence while running, measured on one timer.

The session arms the clock when a turn starts, reports every piece of provider
output as activity, and stops it when the session is no longer running. Its
timer ticks come through the scheduler tagged with the clock's generation, so
a tick of an earlier arming is ignored. :meth:`StallClock.check` says whether
the silence just became a stall (notify once) and when to look again.
"""

from __future__ import annotations

import time

from corral.actors.scheduler import Generation

MIN_RECHECK_S = 0.05


class StallClock:
    def __init__(self) -> None:
        self.last_activity = time.monotonic()
        self.stalled = False
        self.generation = Generation()

    def arm(self) -> int:
        """A turn started: silence counts from now. Returns the timer generation."""
        self.last_activity = time.monotonic()
        self.stalled = False
        return self.generation.next()

    def activity(self) -> bool:
        """Output arrived; True if it ends a stall."""
        self.last_activity = time.monotonic()
        ended, self.stalled = self.stalled, False
        return ended

    def stop(self) -> None:
        """No longer running: pending ticks are stale, no stall."""
        self.generation.next()
        self.stalled = False

    def is_current(self, generation: int) -> bool:
        return self.generation.is_current(generation)

    def check(self, timeout_s: float) -> tuple[bool, float, int]:
        """(became stalled now, seconds until the next check, silence in seconds)."""
        idle = time.monotonic() - self.last_activity
        if idle < timeout_s:
            return False, max(timeout_s - idle, MIN_RECHECK_S), int(idle)
        became = not self.stalled
        self.stalled = True
        return became, max(timeout_s, MIN_RECHECK_S), int(idle)

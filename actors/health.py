"""Health: a project's health record, and the throttle on ``health`` events.

:func:`health_of` derives the record from what the registry knows of a live
session (its last committed summary) or, for a project without one, from its
newest stored session. :class:`HealthThrottle` keeps ``health`` events to at
most one per project per :data:`INTERVAL_S`, always ending with a trailing
event that carries the last state. Both are pure: the registry feeds them and
publishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INTERVAL_S = 1.0
"""At most one ``health`` event per project per this many seconds."""


def health_of(
    project_id: str,
    *,
    session_id: str | None = None,
    status: str | None = None,
    summary: dict[str, Any] | None = None,
    stored: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The health of a project: live when ``summary`` is given, else from ``stored``."""
    if summary is not None:
        return {
            "projectId": project_id,
            "sessionId": session_id,
            "status": status,
            "stalled": bool(summary.get("stalled", False)),
            "costUsd": summary.get("costUsd", 0.0),
            "inputTokens": summary.get("inputTokens", 0),
            "outputTokens": summary.get("outputTokens", 0),
            "lastActivity": summary.get("lastActivity"),
            "messageCount": summary.get("messageCount", 0),
            "live": True,
        }
    return {
        "projectId": project_id,
        "sessionId": stored["sessionId"] if stored else None,
        "status": stored["status"] if stored else None,
        "stalled": False,
        "costUsd": stored["costUsd"] if stored else 0.0,
        "inputTokens": stored["inputTokens"] if stored else 0,
        "outputTokens": stored["outputTokens"] if stored else 0,
        "lastActivity": stored["updatedAt"] if stored else None,
        "messageCount": stored["messageCount"] if stored else 0,
        "live": False,
    }


@dataclass
class _State:
    last_published: float = float("-inf")
    pending: bool = False


class HealthThrottle:
    """When may a project's next ``health`` event go out?"""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self._interval = interval_s
        self._states: dict[str, _State] = {}

    def request(self, project_id: str, now: float) -> float | None:
        """A change happened. 0.0: publish now; a delay: schedule one trailing
        publication after it; None: one is already scheduled."""
        state = self._states.setdefault(project_id, _State())
        wait = state.last_published + self._interval - now
        if wait <= 0:
            state.pending = False
            state.last_published = now
            return 0.0
        if state.pending:
            return None
        state.pending = True
        return wait

    def due(self, project_id: str, now: float) -> bool:
        """The scheduled time came: True if the trailing publication must go out."""
        state = self._states.get(project_id)
        if state is None or not state.pending:
            return False
        state.pending = False
        state.last_published = now
        return True

    def forget(self, project_id: str) -> None:
        self._states.pop(project_id, None)

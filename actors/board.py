"""The session board: each project's current session as last committed, readable
from any thread, so that the router answers ``session.get`` itself.

Three threads write it, each at the moment its own state changes, so that a
reader can never see less than what a client has already been told:

* the registry opens a slot when it starts a session actor, makes it current
  when the start is answered (or at once for a restore) and closes it when the
  project no longer has that session (retired, cleared, purged, failed, dead);
  it does so before the reply that tells a client so goes out;
* the store, on its thread, hands each committed step's Session object to
  :meth:`SessionBoard.committed` before the step's events are published and
  before the requests waiting on it are answered (``Write.tell_first``);
* the router reads it (:meth:`SessionBoard.session_get`).

So a ``session.get`` sent after an ``agent.prompt`` reply sees ``running``,
one sent after an ``agent.message`` event sees a ``lastSeqId`` at least that
event's, and one sent after a ``session.clear`` reply sees no session.

It holds one slot per project whose session actor the registry tracks (live
or starting), each with one Session object: bounded by the live sessions.
Whenever the board cannot answer exactly as the registry would (no committed
state yet, or the session's actor has died and the registry must notice it),
:meth:`SessionBoard.session_get` returns None and the request goes to the
registry as before.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pykka


@dataclass
class _Slot:
    session_id: str
    ref: pykka.ActorRef[Any]
    current: bool
    summary: dict[str, Any] | None


class SessionBoard:
    """Thread-safe map of project id to its session's committed Session object."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._slots)

    # ------------------------------------------------------------ registry thread

    def open(
        self,
        project_id: str,
        session_id: str,
        ref: pykka.ActorRef[Any],
        summary: dict[str, Any] | None = None,
    ) -> None:
        """A session actor now exists for the project (not yet its current one).

        ``summary`` is its stored Session object when it has one (a restore)."""
        with self._lock:
            self._slots[project_id] = _Slot(session_id, ref, False, summary)

    def make_current(self, project_id: str, session_id: str) -> None:
        """The project's session is now ``session_id`` (its start was answered)."""
        with self._lock:
            slot = self._slots.get(project_id)
            if slot is not None and slot.session_id == session_id:
                slot.current = True

    def close(self, project_id: str, session_id: str) -> None:
        """The project no longer has ``session_id``."""
        with self._lock:
            slot = self._slots.get(project_id)
            if slot is not None and slot.session_id == session_id:
                del self._slots[project_id]

    # ------------------------------------------------------------ store thread

    def committed(self, project_id: str, session_id: str, summary: dict[str, Any]) -> None:
        """A step of ``session_id`` committed; ``summary`` is its Session object then.

        A session the project no longer has (retired, replaced) changes nothing."""
        with self._lock:
            slot = self._slots.get(project_id)
            if slot is not None and slot.session_id == session_id:
                slot.summary = summary

    # ------------------------------------------------------------ router thread

    def session_get(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """``session.get`` answered from the board, or None: ask the registry."""
        with self._lock:
            slot = self._slots.get(params["projectId"])
            if slot is None or not slot.current:
                return {"session": None}
            summary, ref, session_id = slot.summary, slot.ref, slot.session_id
        if summary is None or summary.get("sessionId") != session_id:
            return None  # nothing committed yet: the registry reads it from the database
        if not ref.is_alive():
            return None  # the registry notices the dead actor and answers
        return {"session": summary}

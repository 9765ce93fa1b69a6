"""Notifications: the newest hundred kept in memory, each stored, then published.

The registry owns one :class:`Notifications`; every notice goes through
:meth:`Notifications.add`, which appends it to the ring (what
``notifications.list`` answers) and hands the store one write whose commit
publishes the ``notification`` event (commit before publish, as for every
event that announces stored state).
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import apsw
import pykka

from corral.actors import db
from corral.actors.store import Publication, SaveNotification, Write

RING = 100
"""How many notifications are kept (and answered by ``notifications.list``)."""

log = logging.getLogger("corral.notifications")


class Notifications:
    def __init__(
        self,
        store: pykka.ActorRef[Any],
        capacity: int = RING,
        sink: Callable[[dict[str, Any]], object] | None = None,
    ) -> None:
        """``sink`` also receives every notification (the desktop); it must not block."""
        self._store = store
        self._sink = sink
        self._capacity = capacity
        self._ring: deque[dict[str, Any]] = deque(maxlen=capacity)

    def load(self, conn: apsw.Connection) -> None:
        """The stored notifications of earlier runs, oldest first."""
        self._ring.extend(reversed(db.newest_notifications(conn, self._capacity)))

    def add(
        self,
        variant: str,
        kind: str,
        message: str,
        session_id: str | None,
        project_id: str | None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        note: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "variant": variant,
            "kind": kind,
            "message": message,
            "ts": db.now_ms(),
        }
        if session_id is not None:
            note["sessionId"] = session_id
        if project_id is not None:
            note["projectId"] = project_id
        if extra:
            note.update(extra)
        self._ring.append(note)
        self._store.tell(
            Write([SaveNotification(note)], [Publication("notification", note, project_id)])
        )
        if self._sink is not None:
            try:
                self._sink(note)
            except Exception:
                log.exception("notifications: the desktop sink failed")
        return note

    def newest(self, limit: int) -> list[dict[str, Any]]:
        return list(reversed(self._ring))[:limit]

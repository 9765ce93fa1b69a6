"""The registry's ``session.*`` requests that read or end a project's current
session: ``session.get``, ``session.clear``, ``session.purge`` and
``project.purge`` (``session.restore`` starts an actor, so it stays with the
registry's lifecycle code).

A mixin of :class:`~corral.actors.registry.RegistryActor`: these handlers run
on the registry's thread and use its session map. ``session.get`` is usually
answered by the router from the :class:`~corral.actors.board.SessionBoard`;
:meth:`SessionRequests.rpc_session_get` is the path for what the board cannot
answer (nothing committed yet, a dead session actor).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pykka

from corral.actors import reader
from corral.actors.ports import Outbox, ReplyTo
from corral.actors.reader import Query, ReaderPool
from corral.actors.starts import PendingStart
from corral.actors.state import TERMINAL
from corral.actors.store import DeleteProject, DeleteSession, Write
from corral.protocol.errors import InternalError, SessionRunning


class SessionRequests:
    # provided by RegistryActor
    projects: dict[str, Any]  # project id -> Entry
    starting: dict[str, PendingStart]
    _store: pykka.ActorRef[Any]
    _readers: ReaderPool
    _outbox: Outbox
    _current: Callable[[str], Any]  # the live Entry of a project, or None
    _retire: Callable[..., None]  # (entry, reason)

    def rpc_session_get(self, params: dict[str, Any], reply_to: ReplyTo) -> dict[str, Any] | None:
        entry = self._current(params["projectId"])
        if entry is None:
            return {"session": None}
        if entry.summary.get("sessionId") == entry.session_id:  # committed, as reported
            return {"session": dict(entry.summary)}
        self._readers.tell(
            Query(reader.session_by_id, {"sessionId": entry.session_id}, reply_to, "session.get")
        )
        return None

    def rpc_session_clear(self, params: dict[str, Any], _reply_to: ReplyTo) -> dict[str, Any]:
        entry = self._current(params["projectId"])
        if entry is None or entry.status not in TERMINAL:
            return {"cleared": False}
        self._retire(entry, "cleared")
        return {"cleared": True}

    def rpc_session_purge(self, params: dict[str, Any], reply_to: ReplyTo) -> None:
        session_id = params["sessionId"]
        for entry in list(self.projects.values()):
            if entry.session_id == session_id:
                if entry.status not in TERMINAL:
                    raise SessionRunning("the session is running; stop it first")
                self._retire(entry, "purged")
        for pending in self.starting.values():
            if pending.session_id == session_id:
                raise SessionRunning("the session is starting")
        self._store.tell(
            Write(
                [DeleteSession(session_id)],
                then=lambda r: self._outbox.reply(reply_to, result={"purged": bool(r[0])}),
                on_error=lambda e: self._outbox.reply(reply_to, error=InternalError(str(e))),
            )
        )

    def rpc_project_purge(self, params: dict[str, Any], reply_to: ReplyTo) -> None:
        project_id = params["projectId"]
        if project_id in self.starting:
            raise SessionRunning(f"a session of project {project_id!r} is starting")
        entry = self._current(project_id)
        if entry is not None:
            if entry.status not in TERMINAL:
                raise SessionRunning(f"project {project_id!r} has a running session")
            self._retire(entry, "purged")
        self._store.tell(
            Write(
                [DeleteProject(project_id)],
                then=lambda r: self._outbox.reply(reply_to, result={"purgedSessions": int(r[0])}),
                on_error=lambda e: self._outbox.reply(reply_to, error=InternalError(str(e))),
            )
        )

"""ReaderActor: answers read-only queries from its own WAL read connection.

Reads never queue behind the StoreActor's writes: a reader sees the last
committed state at the moment its query starts. The daemon runs a small pool
of readers and hands queries round-robin.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import pykka

from corral.actors import db
from corral.actors.ports import Outbox, ReplyTo, run_and_answer
from corral.protocol.errors import InternalError, NotFound

log = logging.getLogger("corral.reader")


ReadFunction = Callable[[apsw.Connection, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Query:
    """Run ``handler(connection, params)`` and answer ``reply_to``; ``method``
    names the request in logs. Handlers come from the dispatch table."""

    handler: ReadFunction
    params: dict[str, Any]
    reply_to: ReplyTo
    method: str


def messages_after(conn: apsw.Connection, params: dict[str, Any]) -> dict[str, Any]:
    session_id = params["sessionId"]
    session = db.get_session(conn, session_id)
    if session is None:
        raise NotFound(f"unknown sessionId {session_id!r}")
    messages, has_more = db.load_messages(
        conn, session_id, int(params.get("afterSeq", 0)), int(params.get("limit", 500))
    )
    return {"messages": messages, "lastSeqId": session["lastSeqId"], "hasMore": has_more}


def list_sessions(conn: apsw.Connection, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "sessions": db.list_sessions(
            conn,
            project_id=params.get("projectId"),
            status=params.get("status"),
            limit=int(params.get("limit", 50)),
            before=params.get("before"),
        )
    }


def newest_session(conn: apsw.Connection, params: dict[str, Any]) -> dict[str, Any]:
    return {"session": db.newest_session(conn, params["projectId"])}


def session_by_id(conn: apsw.Connection, params: dict[str, Any]) -> dict[str, Any]:
    return {"session": db.get_session(conn, params["sessionId"])}


class ReaderActor(pykka.ThreadingActor):
    def __init__(self, path: Path, outbox: Outbox) -> None:
        super().__init__()
        self._path = path
        self._outbox = outbox
        self._conn: apsw.Connection | None = None

    def on_start(self) -> None:
        self._conn = db.connect(self._path, readonly=True)

    def on_stop(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, Query):
            log.error("reader: unexpected message %r", message)
            return None
        conn = self._conn

        def run() -> dict[str, Any]:
            if conn is None:
                raise InternalError("the reader has no database connection")
            return message.handler(conn, message.params)

        run_and_answer(self._outbox, message.reply_to, f"read {message.method}", run, log)
        return None


class ReaderPool:
    """Round-robin over a few readers (thread-safe enough: a counter race only
    changes which reader gets a query)."""

    def __init__(self, refs: list[pykka.ActorRef[ReaderActor]]) -> None:
        self._refs = refs
        self._next = 0

    def tell(self, query: Query) -> None:
        ref = self._refs[self._next % len(self._refs)]
        self._next += 1
        ref.tell(query)

    def stop(self) -> None:
        for ref in self._refs:
            ref.stop(block=True, timeout=5)

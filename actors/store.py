"""StoreActor: the only writer of the database, with group commit.

Every write arrives as a :class:`Write` (typed operations plus the events to
publish once they are committed). The actor queues writes and tells itself a
flush; everything that arrived before the flush is processed goes into one
transaction. Only after COMMIT are the batch's events handed to the outbox and
its callbacks run, so an event never announces data that is not on disk
(contract promise 1). A batch that fails is retried write by write so one bad
write cannot take its neighbours down.

The store also answers the daemon heartbeat from committed state, so the
`lastSeqIds` it publishes never run ahead of what `session.messages.load` sees.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import pykka

from corral.actors import db
from corral.actors.ports import Outbox

log = logging.getLogger("corral.store")

FAILURE_NOTICE_INTERVAL_S = 10.0
"""A failing database is notified (a ``system`` notification) at most this often."""


# ------------------------------------------------------------- operations


@dataclass(frozen=True)
class SaveSession:
    session: dict[str, Any]
    options: dict[str, Any]


@dataclass(frozen=True)
class AddMessages:
    session_id: str
    messages: Sequence[dict[str, Any]]


@dataclass(frozen=True)
class AddRaw:
    session_id: str
    ts: int
    kind: str
    line: str


@dataclass(frozen=True)
class DeleteSession:
    session_id: str


@dataclass(frozen=True)
class DeleteProject:
    project_id: str


@dataclass(frozen=True)
class EnforceRetention:
    keep_count: int
    max_age_ms: int
    project_ids: tuple[str, ...] | None
    protected: frozenset[str]


@dataclass(frozen=True)
class FailSession:
    """Mark a session `error` unless it already ended (a dead session actor)."""

    session_id: str
    error: str


@dataclass(frozen=True)
class SaveNotification:
    note: dict[str, Any]


@dataclass(frozen=True)
class SaveApproval:
    """A pending approval (the Approval object)."""

    approval: dict[str, Any]


@dataclass(frozen=True)
class ResolveApproval:
    session_id: str
    approval_id: str
    decision: str
    by: str


@dataclass(frozen=True)
class SaveSetting:
    key: str
    value: str


Operation = (
    SaveSession
    | AddMessages
    | AddRaw
    | DeleteSession
    | DeleteProject
    | EnforceRetention
    | FailSession
    | SaveNotification
    | SaveSetting
    | SaveApproval
    | ResolveApproval
)


@dataclass(frozen=True)
class Publication:
    event: str
    data: dict[str, Any]
    project_id: str | None = None


@dataclass
class Write:
    """One unit of work: all of `ops` commit together, then `tell_first`, then
    `publish`, then `then`.

    ``tell_first`` is for telling other actors what was committed (the session
    tells the registry): run before the events go out, so a client reacting to
    an event always finds them told (its request queues behind that tell).
    ``then`` runs after the events (answers to requests go out after them)."""

    ops: Sequence[Operation]
    publish: Sequence[Publication] = ()
    then: Callable[[list[Any]], None] | None = None
    tell_first: Callable[[], None] | None = None
    on_error: Callable[[Exception], None] | None = None
    live_seq: tuple[str, int] | None = None  # (session_id, last seqId) once committed


@dataclass(frozen=True)
class ForgetLive:
    """A session left memory: drop it from the heartbeat."""

    session_id: str


@dataclass(frozen=True)
class Heartbeat:
    pass


@dataclass(frozen=True)
class _Flush:
    pass


@dataclass
class Drain:
    """Reply through `then` once everything queued before it is committed."""

    then: Callable[[], None] = field(default=lambda: None)


class Tombstones:
    """Ids of deleted sessions (bounded; session ids are never reused). A write
    for one of them that was queued before its deletion is skipped, so a purge
    cannot be undone by a late write of the session it removed."""

    def __init__(self, size: int = 10_000) -> None:
        self._order: deque[str] = deque()
        self._ids: set[str] = set()
        self._size = size

    def add(self, session_ids: Iterable[str]) -> None:
        for session_id in session_ids:
            if session_id not in self._ids:
                self._ids.add(session_id)
                self._order.append(session_id)
                if len(self._order) > self._size:
                    self._ids.discard(self._order.popleft())

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._ids


SKIPPED = "skipped: session deleted"


def _session_of(op: Operation) -> str | None:
    if isinstance(op, SaveSession):
        return str(op.session["sessionId"])
    if isinstance(op, AddMessages | AddRaw | ResolveApproval):
        return op.session_id
    if isinstance(op, SaveApproval):
        return str(op.approval["sessionId"])
    return None


def _apply(conn: apsw.Connection, op: Operation, gone: Tombstones) -> Any:
    session_id = _session_of(op)
    if session_id is not None and session_id in gone:
        return SKIPPED
    if isinstance(op, SaveSession):
        db.upsert_session(conn, op.session, op.options)
        return None
    if isinstance(op, AddMessages):
        db.insert_messages(conn, op.session_id, op.messages)
        return None
    if isinstance(op, AddRaw):
        db.insert_raw(conn, op.session_id, op.ts, op.kind, op.line)
        return None
    if isinstance(op, DeleteSession):
        gone.add([op.session_id])
        return db.delete_session(conn, op.session_id)
    if isinstance(op, DeleteProject):
        ids = db.delete_project(conn, op.project_id)
        gone.add(ids)
        return len(ids)
    if isinstance(op, EnforceRetention):
        victims = db.retention_victims(
            conn,
            keep_count=op.keep_count,
            max_age_ms=op.max_age_ms,
            project_ids=op.project_ids,
            protected=op.protected,
        )
        for victim in victims:
            db.delete_session(conn, victim)
        gone.add(victims)
        return victims
    if isinstance(op, FailSession):
        return db.fail_session(conn, op.session_id, op.error)
    if isinstance(op, SaveNotification):
        db.insert_notification(conn, op.note)
        return None
    if isinstance(op, SaveSetting):
        db.save_setting(conn, op.key, op.value)
        return None
    if isinstance(op, SaveApproval):
        db.save_approval(conn, op.approval)
        return None
    if isinstance(op, ResolveApproval):
        return db.resolve_approval(conn, op.approval_id, op.decision, op.by)
    raise TypeError(f"unknown store operation {op!r}")


def _coalesce(ops: list[Operation]) -> list[Operation]:
    """Keep only the last SaveSession per session within a batch (it carries full state)."""
    last: dict[str, int] = {}
    for index, op in enumerate(ops):
        if isinstance(op, SaveSession):
            last[op.session["sessionId"]] = index
    return [
        op
        for index, op in enumerate(ops)
        if not isinstance(op, SaveSession) or last[op.session["sessionId"]] == index
    ]


class StoreActor(pykka.ThreadingActor):
    """Owns the write connection; see the module docstring."""

    def __init__(self, path: Path, outbox: Outbox) -> None:
        super().__init__()
        self._last_failure_notice = float("-inf")
        self._last_error: str | None = None
        self._path = path
        self._outbox = outbox
        self._conn: apsw.Connection | None = None
        self._pending: list[Write | Drain] = []
        self._flush_queued = False
        self._live: dict[str, int] = {}
        self._gone = Tombstones()
        self.batches = 0  # committed transactions, for benchmarks and tests

    def on_start(self) -> None:
        self._conn = db.connect(self._path)

    def on_stop(self) -> None:
        self._flush()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Write | Drain):
            self._pending.append(message)
            if not self._flush_queued:
                self._flush_queued = True
                self.actor_ref.tell(_Flush())
        elif isinstance(message, _Flush):
            self._flush_queued = False
            self._flush()
        elif isinstance(message, Heartbeat):
            self._flush()
            self._outbox.publish(
                "daemon.heartbeat", {"live": len(self._live), "lastSeqIds": dict(self._live)}
            )
        elif isinstance(message, ForgetLive):
            self._flush()
            self._live.pop(message.session_id, None)
        else:
            log.error("store: unexpected message %r", message)
        return None

    # -------------------------------------------------------------- commit

    def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        writes = [w for w in batch if isinstance(w, Write)]
        results: list[list[Any]] | None = None
        if writes:
            results = self._commit_all(writes)
        self.batches += 1
        if results is None:
            # The batch failed as a whole: retry each write alone.
            for item in batch:
                if isinstance(item, Write):
                    single = self._commit_all([item])
                    if single is None:
                        self._fail(item)
                    else:
                        self._after(item, single[0])
                else:
                    self._run(item.then)
            return
        index = 0
        for item in batch:
            if isinstance(item, Write):
                self._after(item, results[index])
                index += 1
            else:
                self._run(item.then)

    def _commit_all(self, writes: list[Write]) -> list[list[Any]] | None:
        conn = self._conn
        assert conn is not None
        out: list[list[Any]] = []
        try:
            with conn:
                if len(writes) == 1:
                    out.append([_apply(conn, op, self._gone) for op in writes[0].ops])
                else:
                    # Coalesce session rows across the batch, keep per-write results.
                    flat: list[Operation] = [op for w in writes for op in w.ops]
                    keep = {id(op) for op in _coalesce(flat)}
                    for w in writes:
                        out.append(
                            [
                                _apply(conn, op, self._gone) if id(op) in keep else None
                                for op in w.ops
                            ]
                        )
        except Exception as exc:
            self._last_error = str(exc)
            if len(writes) > 1:
                log.warning("store: batch of %d writes failed; retrying one by one", len(writes))
            else:
                log.exception("store: write failed")
            return None
        return out

    def _after(self, write: Write, results: list[Any]) -> None:
        if SKIPPED in results:
            # Queued before its session was deleted: nothing of it was stored, so
            # nothing is announced; callbacks still run (they give credits back).
            if write.then is not None:
                self._run(lambda: write.then(results) if write.then else None)
            return
        if write.live_seq is not None:
            session_id, seq = write.live_seq
            if session_id not in self._gone:
                self._live[session_id] = max(seq, self._live.get(session_id, 0))
        if any(
            isinstance(op, DeleteSession | DeleteProject | EnforceRetention) for op in write.ops
        ):
            for session_id in [s for s in self._live if s in self._gone]:
                del self._live[session_id]
        if write.tell_first is not None:
            self._run(write.tell_first)
        for pub in write.publish:
            self._outbox.publish(pub.event, pub.data, pub.project_id)
        if write.then is not None:
            self._run(lambda: write.then(results) if write.then else None)

    def _fail(self, write: Write) -> None:
        now = time.monotonic()
        if now - self._last_failure_notice >= FAILURE_NOTICE_INTERVAL_S:
            # Not stored (the database is what fails): published directly.
            self._last_failure_notice = now
            note = {
                "id": uuid.uuid4().hex,
                "variant": "error",
                "kind": "system",
                "message": f"database write failed: {self._last_error or 'unknown error'}",
                "ts": db.now_ms(),
            }
            self._outbox.publish("notification", note)
        if write.on_error is not None:
            err = RuntimeError("database write failed")
            self._run(lambda: write.on_error(err) if write.on_error else None)

    @staticmethod
    def _run(callback: Callable[[], Any]) -> None:
        try:
            callback()
        except pykka.ActorDeadError:
            pass
        except Exception:
            log.exception("store: post-commit callback failed")

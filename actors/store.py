"""StoreActor: the only writer of the database, with group commit.

Every write arrives as a :class:`Write` (typed operations plus the events to
publish once they are committed). The actor queues writes and tells itself a
flush; everything that arrived before the flush is processed goes into one
transaction. Only after COMMIT are the batch's events handed to the outbox and
its callbacks run, so an event never announces data that is not on disk
(contract promise 1). A batch that fails is retried write by write so one bad
write cannot take its neighbours down.

A session write that cannot be stored (a full disk) breaks its session: the
write's ``on_error`` hears a :class:`StorageError` with the seqId last
committed for it, and every later write of that session is refused without
touching the database (its seqIds would leave a gap) until the session's
``repair`` write commits. A repair that fails is kept and tried again at each
heartbeat (every second), so writing resumes by itself once space is back.
Each kind of failure is logged once until a write succeeds again.

The store also answers the daemon heartbeat from committed state, so the
`lastSeqIds` it publishes never run ahead of what `session.messages.load` sees.
"""

from __future__ import annotations

import contextlib
import errno
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

MAX_PARKED = 10_000
"""Repair writes kept while the database cannot be written (one per broken session
and step); beyond it the oldest are dropped and logged (the sessions stay
``error`` in memory and their rows keep the last committed state)."""


class StorageError(Exception):
    """A write that could not be stored. ``reason`` is one line ("disk full");
    ``committed_seq`` is the last seqId stored for the write's session (None when
    the session has no row yet)."""

    def __init__(self, reason: str, committed_seq: int | None = None) -> None:
        super().__init__(f"database write failed: {reason}")
        self.reason = reason
        self.committed_seq = committed_seq


def failure_reason(exc: BaseException) -> str:
    """One line saying why a write failed: "disk full" for every way SQLite and the
    OS say so, else the error's own text. SQLite may roll a transaction back by
    itself on a full disk; the failed ROLLBACK that follows is then what is raised,
    with the real cause in its context."""
    cause: BaseException | None = exc
    for _ in range(5):
        if cause is None:
            break
        if isinstance(cause, apsw.FullError):
            return "disk full"
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return "disk full"
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip() or type(exc).__name__
    if "disk is full" in text or "No space left" in text:
        return "disk full"
    return text.splitlines()[0][:200]


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
    ``then`` runs after the events are handed to the outbox (answers to requests
    are handed over after them, but replies travel on their own socket and
    may reach a client first)."""

    ops: Sequence[Operation]
    publish: Sequence[Publication] = ()
    then: Callable[[list[Any]], None] | None = None
    tell_first: Callable[[], None] | None = None
    on_error: Callable[[Exception], None] | None = None
    live_seq: tuple[str, int] | None = None  # (session_id, last seqId) once committed
    repair: bool = False  # the step that records a session's storage failure

    @property
    def session_id(self) -> str | None:
        """The session this write steps (None for the daemon's own writes)."""
        return self.live_seq[0] if self.live_seq is not None else None


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

    def __init__(self, path: Path, outbox: Outbox, max_bytes: int | None = None) -> None:
        super().__init__()
        self._max_bytes = max_bytes
        self._last_failure_notice = float("-inf")
        self._last_error: str | None = None
        self._logged: set[str] = set()  # failure kinds logged since the last success
        self._broken: dict[str, str] = {}  # session id -> why its writes fail
        self._parked: deque[Write] = deque()  # repair writes waiting for space
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
        if self._max_bytes:
            db.cap_size(self._conn, self._max_bytes)

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
            self._retry_parked()
            self._outbox.publish(
                "daemon.heartbeat", {"live": len(self._live), "lastSeqIds": dict(self._live)}
            )
        elif isinstance(message, ForgetLive):
            self._flush()
            self._live.pop(message.session_id, None)
            if not any(w.session_id == message.session_id for w in self._parked):
                self._broken.pop(message.session_id, None)
        else:
            log.error("store: unexpected message %r", message)
        return None

    # -------------------------------------------------------------- commit

    def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        batch = [item for item in batch if not self._refused(item)]
        writes = [w for w in batch if isinstance(w, Write)]
        results: list[list[Any]] | None = None
        if writes:
            results = self._commit_all(writes)
        self.batches += 1
        if results is None:
            # The batch failed as a whole: retry each write alone. A write whose
            # session broke earlier in this loop is refused: storing it after a
            # lost neighbour would leave a gap in its seqIds.
            for item in batch:
                if isinstance(item, Write):
                    if self._refused(item):
                        continue
                    single = self._commit_all([item])
                    if single is None:
                        self._fail(item, self._last_error or "unknown error")
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
            # BEGIN/COMMIT as statements, not ``with conn:``: apsw's context manager
            # commits (RELEASE SAVEPOINT: WAL write, autocheckpoint) holding the GIL,
            # which stalls every other thread of the daemon for the whole commit.
            conn.execute("BEGIN")
            try:
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
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(apsw.Error):  # keep the original error
                        conn.execute("ROLLBACK")
                raise
        except Exception as exc:
            reason = failure_reason(exc)
            self._last_error = reason
            if reason not in self._logged:  # once per kind until writes work again
                self._logged.add(reason)
                log.error("store: database write failed (%s)", reason, exc_info=exc)
            return None
        if self._logged:
            self._logged.clear()
            log.warning("store: database writes work again")
        return out

    def _refused(self, item: Write | Drain) -> bool:
        """A write of a broken session that does not repair it fails at once; a
        repair queues behind the session's repairs already kept (order matters)."""
        if not isinstance(item, Write):
            return False
        session_id = item.session_id
        if session_id is None or session_id not in self._broken:
            return False
        if item.repair:
            if not any(w.session_id == session_id for w in self._parked):
                return False
            self._parked.append(item)
            return True
        self._fail(item, self._broken[session_id])
        return True

    def _retry_parked(self) -> None:
        """Try the kept repair writes again, oldest first, until one fails."""
        while self._parked:
            write = self._parked[0]
            results = self._commit_all([write])
            if results is None:
                return
            self._parked.popleft()
            self._after(write, results[0])

    def _committed_seq(self, session_id: str) -> int | None:
        try:
            assert self._conn is not None
            row = self._conn.execute(
                "SELECT last_seq_id FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
        except Exception:
            return self._live.get(session_id)
        return None if row is None else int(row[0] or 0)

    def _after(self, write: Write, results: list[Any]) -> None:
        if SKIPPED in results:
            # Queued before its session was deleted: nothing of it was stored, so
            # nothing is announced; callbacks still run (they give credits back).
            if write.then is not None:
                self._run(lambda: write.then(results) if write.then else None)
            return
        if write.repair and not any(w.session_id == write.session_id for w in self._parked):
            self._broken.pop(write.session_id or "", None)  # the session writes again
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

    def _fail(self, write: Write, reason: str) -> None:
        now = time.monotonic()
        if now - self._last_failure_notice >= FAILURE_NOTICE_INTERVAL_S:
            # Not stored (the database is what fails): published directly.
            self._last_failure_notice = now
            note = {
                "id": uuid.uuid4().hex,
                "variant": "error",
                "kind": "system",
                "message": f"database write failed: {reason}",
                "ts": db.now_ms(),
            }
            self._outbox.publish("notification", note)
        session_id = write.session_id
        if write.repair and session_id is not None:
            self._broken[session_id] = reason
            self._parked.append(write)
            if len(self._parked) > MAX_PARKED:
                dropped = self._parked.popleft().session_id
                self._parked = deque(w for w in self._parked if w.session_id != dropped)
                log.error("store: repair writes of session %s dropped", dropped)
            return
        committed = None
        if session_id is not None:
            self._broken[session_id] = reason
            committed = self._committed_seq(session_id)
        if write.on_error is not None:
            err = StorageError(reason, committed)
            self._run(lambda: write.on_error(err) if write.on_error else None)

    @staticmethod
    def _run(callback: Callable[[], Any]) -> None:
        try:
            callback()
        except pykka.ActorDeadError:
            pass
        except Exception:
            log.exception("store: post-commit callback failed")

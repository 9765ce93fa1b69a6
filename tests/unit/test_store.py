"""StoreActor and the SQL layer on a real SQLite file: migrations, group
commit, commit-before-publish, failure isolation, retention."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import apsw
import pytest

from corral.actors import db
from corral.actors.store import (
    AddMessages,
    DeleteSession,
    Drain,
    EnforceRetention,
    FailSession,
    ForgetLive,
    Heartbeat,
    Publication,
    SaveSession,
    StorageError,
    StoreActor,
    Write,
    failure_reason,
)


class RecordingOutbox:
    """Records publications together with what the database held at that moment."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[tuple[str, dict[str, Any], str | None]] = []
        self.visible: list[int] = []
        self.lock = threading.Lock()

    def reply(self, to: Any, result: Any = None, error: Any = None) -> None:
        raise AssertionError("the store never replies itself")

    def publish(self, event: str, data: dict[str, Any], project_id: str | None = None) -> None:
        conn = db.connect(self.path, readonly=True)
        try:
            rows = conn.execute("SELECT count(*) FROM messages").fetchone()
            count = int(rows[0]) if rows else 0
        finally:
            conn.close()
        with self.lock:
            self.events.append((event, data, project_id))
            self.visible.append(count)


def session_row(
    sid: str, project: str = "p", status: str = "running", seq: int = 0, updated: int | None = None
) -> dict[str, Any]:
    now = db.now_ms() if updated is None else updated
    return {
        "sessionId": sid,
        "projectId": project,
        "provider": "mock",
        "status": status,
        "model": None,
        "costUsd": 0.0,
        "inputTokens": 0,
        "outputTokens": 0,
        "createdAt": now,
        "updatedAt": now,
        "messageCount": seq,
        "lastSeqId": seq,
    }


def message(seq: int) -> dict[str, Any]:
    return {
        "id": f"m{seq}",
        "seqId": seq,
        "role": "assistant",
        "content": f"text {seq}",
        "timestamp": 1,
    }


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "corral.db"
    db.connect(path).close()
    outbox = RecordingOutbox(path)
    ref = StoreActor.start(path, outbox)
    yield ref, outbox, path
    ref.stop(block=True, timeout=10)


def drain(ref: Any) -> None:
    done = threading.Event()
    ref.tell(Drain(then=done.set))
    assert done.wait(10)


def test_migrations_set_user_version_and_wal(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "x.db")
    assert db.schema_version(conn) == db.SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.migrate(conn) == db.SCHEMA_VERSION  # idempotent
    conn.execute(f"PRAGMA user_version={db.SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        db.migrate(conn)


def test_every_event_is_published_after_its_rows_are_visible(store: Any) -> None:
    ref, outbox, _path = store
    ref.tell(Write([SaveSession(session_row("s"), {})]))
    for seq in range(1, 301):
        ref.tell(
            Write(
                [AddMessages("s", [message(seq)])],
                [Publication("agent.message", {"seq": seq}, "p")],
            )
        )
    drain(ref)
    seqs = [data["seq"] for event, data, _ in outbox.events if event == "agent.message"]
    assert seqs == list(range(1, 301))
    # when event n went out, at least n messages were committed and readable
    for n, visible in zip(seqs, outbox.visible, strict=True):
        assert visible >= n


def test_group_commit_uses_fewer_transactions_than_writes(store: Any) -> None:
    ref, _outbox, _path = store
    proxy = ref.proxy()
    before = proxy.batches.get(timeout=5)
    ref.tell(Write([SaveSession(session_row("g"), {})]))
    for seq in range(1, 2001):
        ref.tell(Write([AddMessages("g", [message(seq)])]))
    drain(ref)
    used = proxy.batches.get(timeout=5) - before
    assert 1 <= used < 2001


def test_a_failing_write_does_not_sink_its_batch(store: Any) -> None:
    ref, outbox, path = store
    failures: list[Exception] = []
    ref.tell(Write([SaveSession(session_row("f"), {}), AddMessages("f", [message(1)])]))
    # a duplicate seqId violates the primary key
    ref.tell(
        Write(
            [AddMessages("f", [message(1)])],
            [Publication("bad", {}, None)],
            on_error=failures.append,
        )
    )
    ref.tell(Write([AddMessages("f", [message(2)])], [Publication("good", {}, None)]))
    drain(ref)
    events = [e for e, _d, _p in outbox.events]
    assert "good" in events and "bad" not in events
    assert len(failures) == 1
    conn = db.connect(path, readonly=True)
    messages, _ = db.load_messages(conn, "f", 0, 10)
    assert [m["seqId"] for m in messages] == [1, 2]


def test_post_commit_callbacks_get_results(store: Any) -> None:
    ref, _outbox, _path = store
    got: list[Any] = []
    ref.tell(Write([SaveSession(session_row("d", status="done"), {})]))
    ref.tell(Write([DeleteSession("d"), DeleteSession("nope")], then=got.append))
    drain(ref)
    assert got == [[True, False]]


def test_fail_session_only_touches_unfinished_sessions(store: Any) -> None:
    ref, _outbox, path = store
    got: list[Any] = []
    ref.tell(
        Write([SaveSession(session_row("a"), {}), SaveSession(session_row("b", status="done"), {})])
    )
    ref.tell(Write([FailSession("a", "boom"), FailSession("b", "boom")], then=got.append))
    drain(ref)
    assert got == [[True, False]]
    conn = db.connect(path, readonly=True)
    assert db.get_session(conn, "a")["error"] == "boom"  # type: ignore[index]
    assert db.get_session(conn, "b")["status"] == "done"  # type: ignore[index]


def test_heartbeat_reports_committed_live_sessions(store: Any) -> None:
    ref, outbox, _path = store
    ref.tell(
        Write(
            [SaveSession(session_row("h"), {}), AddMessages("h", [message(1)])], live_seq=("h", 1)
        )
    )
    ref.tell(Heartbeat())
    ref.tell(ForgetLive("h"))
    ref.tell(Heartbeat())
    drain(ref)
    beats = [d for e, d, _p in outbox.events if e == "daemon.heartbeat"]
    assert beats == [{"live": 1, "lastSeqIds": {"h": 1}}, {"live": 0, "lastSeqIds": {}}]


def test_retention_victims_by_count_age_and_protection(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "r.db")
    now = db.now_ms()
    old = now - 40 * 86_400_000
    rows = [
        session_row("p1", "a", "done", updated=now - 5),
        session_row("p2", "a", "done", updated=now - 4),
        session_row("p3", "a", "done", updated=now - 3),
        session_row("run", "a", "running", updated=old),
        session_row("aged", "b", "done", updated=old),
        session_row("live", "b", "done", updated=old),
    ]
    for i, row in enumerate(rows):
        row["createdAt"] = now - 100 + i
        db.upsert_session(conn, row, {})
    victims = db.retention_victims(
        conn,
        keep_count=2,
        max_age_ms=30 * 86_400_000,
        project_ids=None,
        protected={"live"},
        now=now,
    )
    # project a, newest first: run (kept: running), p3, p2 (count 2 reached), p1 (beyond)
    assert sorted(victims) == ["aged", "p1", "p2"]


def test_enforce_retention_operation_deletes_messages_too(store: Any) -> None:
    ref, _outbox, path = store
    got: list[Any] = []
    for i in range(3):
        row = session_row(f"s{i}", status="done")
        row["createdAt"] += i
        ref.tell(Write([SaveSession(row, {}), AddMessages(f"s{i}", [message(1)])]))
    ref.tell(Write([EnforceRetention(1, 10**12, ("p",), frozenset())], then=got.append))
    drain(ref)
    assert sorted(got[0][0]) == ["s0", "s1"]
    conn = db.connect(path, readonly=True)
    assert db.load_messages(conn, "s0", 0, 10) == ([], False)
    assert db.get_session(conn, "s2") is not None


def test_reads_do_not_wait_for_an_open_write(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    writer = db.connect(path)
    db.upsert_session(writer, session_row("w"), {})
    reader = db.connect(path, readonly=True)
    writer.execute("BEGIN IMMEDIATE")
    db.insert_messages(writer, "w", [message(1)])
    started = time.monotonic()
    assert db.load_messages(reader, "w", 0, 10) == ([], False)  # snapshot, no wait
    assert time.monotonic() - started < db.BUSY_TIMEOUT_MS / 1000
    writer.execute("COMMIT")
    assert [m["seqId"] for m in db.load_messages(reader, "w", 0, 10)[0]] == [1]
    with pytest.raises(apsw.ReadOnlyError):
        reader.execute("DELETE FROM sessions")


def test_upgrade_from_schema_1_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = apsw.Connection(str(path))
    with old:
        old.execute(db.MIGRATIONS[0])
        old.execute("PRAGMA user_version=1")
    db.upsert_session(old, session_row("kept", status="done"), {"cwd": "/"})
    old.close()
    conn = db.connect(path)  # migrates
    assert db.schema_version(conn) == db.SCHEMA_VERSION >= 2
    assert db.get_session(conn, "kept")["status"] == "done"  # type: ignore[index]
    assert db.get_session_options(conn, "kept") == {"cwd": "/"}
    assert db.newest_notifications(conn, 10) == []


def test_notifications_keep_only_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "NOTIFICATIONS_KEPT", 3)
    conn = db.connect(tmp_path / "n.db")
    for i in range(5):
        db.insert_notification(conn, {"id": f"n{i}", "ts": 1000 + i, "kind": "system"})
    assert [n["id"] for n in db.newest_notifications(conn, 10)] == ["n4", "n3", "n2"]
    assert db.newest_notifications(conn, 1) == [{"id": "n4", "ts": 1004, "kind": "system"}]


def test_a_write_queued_before_a_purge_cannot_bring_the_session_back(store: Any) -> None:
    ref, outbox, path = store
    got: list[Any] = []
    ref.tell(
        Write(
            [SaveSession(session_row("z"), {}), AddMessages("z", [message(1)])], live_seq=("z", 1)
        )
    )
    ref.tell(Write([DeleteSession("z")]))
    ref.tell(
        Write(
            [SaveSession(session_row("z", seq=2), {}), AddMessages("z", [message(2)])],
            [Publication("agent.message", {"late": True}, "p")],
            then=got.append,
            live_seq=("z", 2),
        )
    )
    ref.tell(Heartbeat())
    drain(ref)
    conn = db.connect(path, readonly=True)
    assert db.get_session(conn, "z") is None
    assert db.load_messages(conn, "z", 0, 10) == ([], False)
    assert not any(d == {"late": True} for _e, d, _p in outbox.events)
    assert len(got) == 1  # its callback still ran (flow-control credits)
    beats = [d for e, d, _p in outbox.events if e == "daemon.heartbeat"]
    assert beats[-1]["lastSeqIds"] == {}


def test_a_failing_write_is_notified_once_per_interval(store: Any) -> None:
    ref, outbox, _path = store
    ref.tell(Write([SaveSession(session_row("n"), {}), AddMessages("n", [message(1)])]))
    for _ in range(3):  # the same seqId again: each of these writes fails
        ref.tell(Write([AddMessages("n", [message(1)])]))
    drain(ref)
    notes = [data for event, data, _p in outbox.events if event == "notification"]
    assert len(notes) == 1  # not once per failed write
    assert notes[0]["kind"] == "system" and notes[0]["variant"] == "error"
    assert notes[0]["message"].startswith("database write failed: ")
    assert "UNIQUE" in notes[0]["message"]


class DiskFull:
    """Makes message inserts fail as SQLite does on a full disk, while ``full``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        self.attempts = 0
        real = db.insert_messages

        def insert(conn: apsw.Connection, session_id: str, messages: Any) -> None:
            self.attempts += 1
            if self.full:
                raise apsw.FullError("database or disk is full")
            real(conn, session_id, messages)

        monkeypatch.setattr(db, "insert_messages", insert)


def step(sid: str, seq: int, **kw: Any) -> Write:
    """One session step: its row and message ``seq``, announced after the commit."""
    return Write(
        [SaveSession(session_row(sid, seq=seq), {}), AddMessages(sid, [message(seq)])],
        [Publication("agent.message", {"sessionId": sid, "seq": seq}, "p")],
        live_seq=(sid, seq),
        **kw,
    )


def stored_seqs(path: Path, sid: str) -> list[int]:
    conn = db.connect(path, readonly=True)
    try:
        messages, _ = db.load_messages(conn, sid, 0, 100)
    finally:
        conn.close()
    return [m["seqId"] for m in messages]


def test_a_full_disk_breaks_the_session_until_its_repair_is_stored(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, outbox, path = store
    disk = DiskFull(monkeypatch)
    ref.tell(step("s", 1))
    ref.tell(step("other", 1))
    drain(ref)
    disk.full = True
    errors: list[Exception] = []
    ref.tell(step("s", 2, on_error=errors.append))
    drain(ref)
    assert len(errors) == 1
    err = errors[0]
    assert isinstance(err, StorageError)
    assert err.reason == "disk full" and str(err) == "database write failed: disk full"
    assert err.committed_seq == 1  # what the session must go back to

    # Space is back, but the session's later steps are refused without touching
    # the database: storing seq 3 after a lost seq 2 would leave a gap.
    disk.full = False
    attempts = disk.attempts
    ref.tell(step("s", 3, on_error=errors.append))
    drain(ref)
    assert len(errors) == 2 and disk.attempts == attempts
    ref.tell(step("other", 2))  # other sessions write as before
    drain(ref)
    assert stored_seqs(path, "other") == [1, 2]

    # The repair (renumbered from the committed seqId) is stored, announced and
    # confirmed; then the session writes again.
    confirmed: list[Any] = []
    ref.tell(step("s", 2, repair=True, then=confirmed.append))
    drain(ref)
    assert confirmed and stored_seqs(path, "s") == [1, 2]
    ref.tell(step("s", 3))
    drain(ref)
    assert stored_seqs(path, "s") == [1, 2, 3]
    announced = [
        d["seq"] for e, d, _p in outbox.events if e == "agent.message" and d["sessionId"] == "s"
    ]
    assert announced == [1, 2, 3]


def test_a_repair_that_cannot_be_stored_is_retried_at_each_heartbeat(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, _outbox, path = store
    disk = DiskFull(monkeypatch)
    ref.tell(step("s", 1))
    drain(ref)
    disk.full = True
    ref.tell(step("s", 2))
    confirmed: list[Any] = []
    ref.tell(step("s", 2, repair=True, then=confirmed.append))
    ref.tell(step("s", 3, repair=True, then=confirmed.append))  # queues behind it
    drain(ref)
    ref.tell(Heartbeat())
    drain(ref)
    assert confirmed == [] and stored_seqs(path, "s") == [1]
    disk.full = False
    ref.tell(Heartbeat())
    drain(ref)
    assert len(confirmed) == 2 and stored_seqs(path, "s") == [1, 2, 3]
    ref.tell(step("s", 4))
    drain(ref)
    assert stored_seqs(path, "s") == [1, 2, 3, 4]


def test_a_failure_is_logged_once_per_kind_until_writes_work_again(
    store: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ref, _outbox, _path = store
    disk = DiskFull(monkeypatch)
    disk.full = True
    with caplog.at_level("WARNING", logger="corral.store"):
        for n in range(20):
            ref.tell(step(f"s{n}", 1))
        drain(ref)
        disk.full = False
        ref.tell(step("fine", 1))
        drain(ref)
    failed = [r for r in caplog.records if "database write failed" in r.getMessage()]
    assert len(failed) == 1 and "disk full" in failed[0].getMessage()
    assert any("work again" in r.getMessage() for r in caplog.records)


def test_failure_reasons() -> None:
    import errno

    assert failure_reason(apsw.FullError("database or disk is full")) == "disk full"
    assert failure_reason(OSError(errno.ENOSPC, "No space left on device")) == "disk full"
    assert failure_reason(apsw.IOError("disk I/O error")) == "disk I/O error"
    assert failure_reason(ValueError("")) == "ValueError"
    try:  # SQLite rolled back by itself: the failed ROLLBACK carries the cause
        try:
            raise apsw.FullError("database or disk is full")
        except apsw.FullError:
            raise apsw.SQLError("cannot rollback - no transaction is active") from None
    except apsw.SQLError as masked:
        masked.__context__ = masked.__context__ or apsw.FullError("full")
        assert failure_reason(masked) == "disk full"


def test_a_batch_that_fails_never_stores_a_later_step_of_a_session_that_broke(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, outbox, path = store
    ref.tell(step("s", 1))
    drain(ref)
    real = db.insert_messages

    def insert(conn: apsw.Connection, session_id: str, messages: Any) -> None:
        if messages[0]["seqId"] == 2:  # only this step does not fit
            raise apsw.FullError("database or disk is full")
        real(conn, session_id, messages)

    monkeypatch.setattr(db, "insert_messages", insert)
    # Hold the store so that both steps land in one batch.
    held, go = threading.Event(), threading.Event()
    ref.tell(Write([], then=lambda _r: (held.set(), go.wait(10))))
    assert held.wait(10)
    errors: list[Exception] = []
    ref.tell(step("s", 2, on_error=errors.append))
    ref.tell(step("s", 3, on_error=errors.append))
    go.set()
    drain(ref)
    assert stored_seqs(path, "s") == [1]  # not [1, 3]: no gap
    assert len(errors) == 2 and all(isinstance(e, StorageError) for e in errors)
    announced = [d["seq"] for e, d, _p in outbox.events if e == "agent.message"]
    assert announced == [1]

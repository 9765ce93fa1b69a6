"""The daemon's start check of an existing database file (actors.db_check.check_database):
what is refused, with which message, and how long the check may take."""

from __future__ import annotations

import os
import time
from pathlib import Path

import apsw
import pytest

from corral.actors import db, db_check

ADVICE = "corral db check"


def make_db(path: Path, messages: int = 2000, size: int = 2000) -> Path:
    """A corral database with one session of ``messages`` messages of ``size`` bytes."""
    conn = db.connect(path)
    now = db.now_ms()
    rows = [
        {"id": f"m{i}", "seqId": i, "role": "assistant", "content": "x" * size, "timestamp": now}
        for i in range(1, messages + 1)
    ]
    with conn:
        db.upsert_session(
            conn,
            {
                "sessionId": "s",
                "projectId": "p",
                "provider": "mock",
                "status": "done",
                "createdAt": now,
                "updatedAt": now,
                "messageCount": messages,
                "lastSeqId": messages,
            },
            {},
        )
        db.insert_messages(conn, "s", rows)
    conn.close()
    assert not Path(f"{path}-wal").exists()  # checkpointed: everything is in the file
    return path


def refused(path: Path, advice: str = ADVICE) -> str:
    before = path.read_bytes()
    with pytest.raises(db_check.DatabaseError) as info:
        db_check.check_database(path)
    message = str(info.value)
    assert str(path) in message
    assert advice in message
    assert path.read_bytes() == before  # the check changed nothing
    return message


def test_missing_file_is_a_first_start(tmp_path: Path) -> None:
    assert db_check.check_database(tmp_path / "corral.db") is True
    assert not (tmp_path / "corral.db").exists()


def test_good_database_passes(tmp_path: Path) -> None:
    assert db_check.check_database(make_db(tmp_path / "corral.db")) is True


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "corral.db"
    path.write_bytes(b"")
    assert "empty file" in refused(path)


def test_garbage_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "corral.db"
    path.write_bytes(b"this is not a database at all" * 300)
    assert "not a SQLite database" in refused(path)
    good = make_db(tmp_path / "other.db")
    data = bytearray(good.read_bytes())
    data[0:16] = b"garbage garbage!"
    path.write_bytes(bytes(data))
    assert "not a SQLite database" in refused(path)


def test_garbage_in_the_middle_is_refused(tmp_path: Path) -> None:
    path = make_db(tmp_path / "corral.db")
    size = path.stat().st_size
    assert size > 1 << 20
    with path.open("r+b") as fh:
        fh.seek(size // 2 // 4096 * 4096)
        fh.write(os.urandom(3 * 4096))
    assert "corrupt" in refused(path)


def test_damaged_page_one_is_refused(tmp_path: Path) -> None:
    path = make_db(tmp_path / "corral.db")
    with path.open("r+b") as fh:
        fh.seek(100)  # past the header: the schema table's b-tree page
        fh.write(os.urandom(2000))
    assert "corrupt" in refused(path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = make_db(tmp_path / "corral.db")
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA user_version={db.SCHEMA_VERSION + 1}")
    conn.close()
    message = refused(path, advice="run that version")
    assert f"schema version {db.SCHEMA_VERSION + 1}" in message
    assert "newer corral" in message


def test_database_of_something_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "corral.db"
    conn = apsw.Connection(str(path))
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()
    assert "not a corral database" in refused(path)


def test_check_is_bounded_in_time(tmp_path: Path) -> None:
    assert db_check.QUICK_CHECK_BUDGET_S == 3.0
    path = make_db(tmp_path / "corral.db", messages=6000, size=3000)
    assert path.stat().st_size > 16 << 20
    started = time.monotonic()
    assert db_check.check_database(path, budget_s=0.0) is False  # cut short, not refused
    assert time.monotonic() - started < 1.0
    assert db_check.check_database(path) is True  # within the real budget it finishes

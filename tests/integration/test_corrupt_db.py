"""`corral serve` over a database it must not use: it exits 2 with a message that
names the file and says what to do, and starts neither empty nor over the file
(which it leaves byte for byte as it was)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from corral.actors import db
from tests.conftest import DaemonFactory
from tests.unit.test_db_check import make_db


def empty(path: Path) -> None:
    path.write_bytes(b"")


def garbage_header(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def garbage_in_the_middle(path: Path) -> None:
    make_db(path)
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.seek(size // 2 // 4096 * 4096)
        fh.write(os.urandom(3 * 4096))


def newer_schema(path: Path) -> None:
    make_db(path, messages=10)
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA user_version={db.SCHEMA_VERSION + 1}")
    conn.close()


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (empty, "is an empty file"),
        (garbage_header, "is not a SQLite database"),
        (garbage_in_the_middle, "corrupt"),
        (newer_schema, "newer than this corral"),
    ],
)
def test_serve_refuses_a_database_it_must_not_use(
    daemon_factory: DaemonFactory, damage: Callable[[Path], None], problem: str
) -> None:
    daemon = daemon_factory("bad", start=False)
    daemon.data_dir.mkdir(mode=0o700, parents=True)
    path = daemon.data_dir / "corral.db"
    damage(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(RuntimeError, match="exited with 2"):
        daemon.start(timeout=30)
    assert daemon.proc is not None and daemon.proc.returncode == 2
    log = daemon.log_tail()
    assert f"database {path}" in log and problem in log, log
    assert "corral will not start over it" in log
    assert "Traceback" not in log
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert not daemon.runtime_dir.joinpath("endpoints.json").exists()


def test_serve_starts_over_a_good_database(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("good", start=False)
    daemon.data_dir.mkdir(mode=0o700, parents=True)
    make_db(daemon.data_dir / "corral.db", messages=50)
    daemon.start(timeout=30)
    with daemon.client() as client:
        sessions = client.call("session.list")["sessions"]
        assert [s["sessionId"] for s in sessions] == ["s"]
        page = client.call("session.messages.load", {"sessionId": "s", "limit": 100})
        assert len(page["messages"]) == 50

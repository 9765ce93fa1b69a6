"""`corral db check | backup | vacuum` against real databases, with and without a
daemon running on them."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import apsw
from typer.testing import Result

from corral.actors import db
from corral.supervisor.datadir_lock import acquire
from tests.conftest import DaemonFactory
from tests.integration.helpers import all_messages, poll, start_mock
from tests.integration.test_cli_support import run
from tests.unit.test_db_check import make_db


def corral_db(*args: str, tmp: Path) -> Result:
    env: dict[str, str | None] = {"XDG_CONFIG_HOME": str(tmp / "cfg"), "CORRAL_DATA_DIR": None}
    return run("db", *args, env=env)


def seqs(path: Path, session_id: str) -> list[int]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return [
            int(r[0])
            for r in conn.execute(
                "SELECT seq_id FROM messages WHERE session_id = ? ORDER BY seq_id", (session_id,)
            )
        ]
    finally:
        conn.close()


def test_check(short_tmp: Path) -> None:
    data = short_tmp / "data"
    data.mkdir()
    res = corral_db("check", "--data-dir", str(data), tmp=short_tmp)
    assert res.exit_code == 2 and "no database" in res.stderr
    make_db(data / "corral.db")
    res = corral_db("check", "--data-dir", str(data), tmp=short_tmp)
    assert res.exit_code == 0, res.stderr
    assert res.stdout.startswith(f"ok: {data / 'corral.db'}")
    size = (data / "corral.db").stat().st_size
    with (data / "corral.db").open("r+b") as fh:
        fh.seek(size // 2 // 4096 * 4096)
        fh.write(os.urandom(2 * 4096))
    res = corral_db("check", "--data-dir", str(data), "--json", tmp=short_tmp)
    assert res.exit_code == 1
    assert '"ok":false' in res.stdout and '"problems":[' in res.stdout
    (data / "corral.db").write_bytes(b"")
    res = corral_db("check", "--data-dir", str(data), tmp=short_tmp)
    assert res.exit_code == 1 and "empty file" in res.stderr


def test_backup_while_the_daemon_writes(daemon_factory: DaemonFactory, short_tmp: Path) -> None:
    daemon = daemon_factory("live")
    target = short_tmp / "backup.db"
    with daemon.client() as client:
        sid = start_mock(client, "p", flood=30000, textBytes=300)["sessionId"]
        poll(lambda: client.call("session.get", {"projectId": "p"})["session"]["lastSeqId"] > 200)
        res = corral_db("backup", str(target), "--data-dir", str(daemon.data_dir), tmp=short_tmp)
        assert res.exit_code == 0, res.stderr
        assert f"to {target}" in res.stdout
        live = client.call("session.get", {"projectId": "p"})["session"]
        poll(
            lambda: client.call("session.get", {"projectId": "p"})["session"]["status"] == "done",
            timeout=60,
        )
        stored = all_messages(client, sid)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not list(short_tmp.glob(".backup.db.*"))  # no temporary file left
    # one consistent snapshot: checked sound, a single file, seqIds without a gap
    conn = apsw.Connection(str(target), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA journal_mode").fetchall() == [("delete",)]
        assert db.schema_version(conn) == db.SCHEMA_VERSION
    finally:
        conn.close()
    copied = seqs(target, sid)
    assert copied == list(range(1, len(copied) + 1))
    assert 200 < len(copied) <= live["lastSeqId"] < len(stored)
    # the live daemon lost nothing meanwhile
    assert [m["seqId"] for m in stored] == list(range(1, len(stored) + 1))
    # an existing PATH is never overwritten
    before = target.read_bytes()
    res = corral_db("backup", str(target), "--data-dir", str(daemon.data_dir), tmp=short_tmp)
    assert res.exit_code == 2 and "exists" in res.stderr
    assert target.read_bytes() == before
    # a daemon serves the backup
    restored = daemon_factory("restored", start=False)
    restored.data_dir.mkdir(mode=0o700)
    shutil.copy(target, restored.data_dir / "corral.db")
    restored.start()
    with restored.client() as client:
        page = client.call("session.messages.load", {"sessionId": sid, "limit": 5000})
        assert page["messages"][0]["seqId"] == 1


def test_vacuum_refused_while_a_daemon_runs(daemon_factory: DaemonFactory, short_tmp: Path) -> None:
    daemon = daemon_factory("v")
    with daemon.client() as client:
        start_mock(client, "p", flood=3000, textBytes=2000)
        poll(
            lambda: client.call("session.get", {"projectId": "p"})["session"]["status"] == "done",
            timeout=60,
        )
        res = corral_db("vacuum", "--data-dir", str(daemon.data_dir), tmp=short_tmp)
        assert res.exit_code == 1
        assert f"pid {daemon.pid}" in res.stderr and "stop it first" in res.stderr
        assert client.call("project.purge", {"projectId": "p"})["purgedSessions"] == 1
    assert daemon.stop() == 0
    path = daemon.data_dir / "corral.db"
    before = path.stat().st_size
    res = corral_db("vacuum", "--data-dir", str(daemon.data_dir), "--json", tmp=short_tmp)
    assert res.exit_code == 0, res.stderr
    assert path.stat().st_size < before // 2
    assert corral_db("check", "--data-dir", str(daemon.data_dir), tmp=short_tmp).exit_code == 0
    # the lock is what refuses: whoever holds it is named
    held = acquire(daemon.data_dir)
    try:
        res = corral_db("vacuum", "--data-dir", str(daemon.data_dir), tmp=short_tmp)
        assert res.exit_code == 1 and f"pid {os.getpid()}" in res.stderr
    finally:
        held.release()

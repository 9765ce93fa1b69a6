"""Checking a database file before the daemon opens it (and for ``corral db check``).

A missing file is a first start. Anything else must be a corral database this
version can read: an empty file, a foreign or damaged header, a schema from a
newer corral, or what SQLite's ``quick_check`` flags (bounded in time on a large
file) is refused with a message naming the file and what to do. Never a silent
empty start over an existing file.
"""

from __future__ import annotations

import time
from pathlib import Path

import apsw

from corral.actors.db import BUSY_TIMEOUT_MS, SCHEMA_VERSION, schema_version

QUICK_CHECK_BUDGET_S = 3.0
"""How long the start's ``PRAGMA quick_check`` may run; a larger file is checked
only that far (``corral db check`` checks it all)."""
SQLITE_MAGIC = b"SQLite format 3\x00"

_RESTORE_ADVICE = (
    "Restore a backup (`corral db backup PATH` makes one while the daemon runs), or "
    "move the file aside, with its -wal and -shm files, to start with an empty "
    "database; `corral db check` reports what is wrong"
)


class DatabaseError(Exception):
    """The database file cannot be used; the message names it and says what to do."""


def _refused(path: Path, problem: str, advice: str = _RESTORE_ADVICE) -> DatabaseError:
    return DatabaseError(f"database {path} {problem}; corral will not start over it. {advice}.")


def check_database(path: Path, *, budget_s: float = QUICK_CHECK_BUDGET_S) -> bool:
    """Refuse (:class:`DatabaseError`) a database file corral must not start over.

    A missing file is fine: the first start creates it. An existing one must
    start with SQLite's header (an empty file is refused too), carry a schema
    version this corral knows (not a newer one; a file with tables but no
    corral schema is not corral's) and pass ``PRAGMA quick_check``, which runs
    for at most ``budget_s``. Returns False when the check was cut short there
    (a large file: the start goes on, the caller says so), True otherwise.
    """
    try:
        with open(path, "rb") as fh:
            header = fh.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return True
    except OSError as exc:
        raise _refused(path, f"cannot be read ({exc.strerror})") from None
    if not header:
        raise _refused(path, "is an empty file")
    if header != SQLITE_MAGIC:
        raise _refused(path, "is not a SQLite database (its header is not SQLite's)")
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
    except apsw.Error as exc:
        raise _refused(path, f"cannot be opened ({exc})") from None
    try:
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        version = schema_version(conn)
        if version > SCHEMA_VERSION:
            raise _refused(
                path,
                f"has schema version {version}, newer than this corral's ({SCHEMA_VERSION})",
                "It was written by a newer corral: run that version, or restore a backup "
                "made by this one",
            )
        tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        if version == 0 and tables and tables[0]:
            raise _refused(path, "is not a corral database (tables but no corral schema)")
        deadline = time.monotonic() + budget_s
        conn.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
        try:
            rows = [str(row[0]) for row in conn.execute("PRAGMA quick_check(10)")]
        except apsw.InterruptError:
            return False
        if rows != ["ok"]:
            raise _refused(path, "is corrupt: " + "; ".join(rows))
    except apsw.Error as exc:
        raise _refused(path, f"is corrupt or unreadable ({type(exc).__name__}: {exc})") from None
    finally:
        conn.close()
    return True


# ---------------------------------------------------------------- sessions

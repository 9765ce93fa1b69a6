"""`corral db check | backup PATH | vacuum`: the database, from outside the daemon.

Each command finds the database as ``corral serve`` would (``--data-dir``, then
``CORRAL_DATA_DIR``, then the config file, then the default) and opens it
itself; none asks the daemon.

- ``check`` runs SQLite's ``integrity_check`` over the whole file on a read-only
  connection. Safe while the daemon runs (WAL: it reads one consistent snapshot).
- ``backup PATH`` copies the database with SQLite's online backup API from a
  read-only connection of its own, while the daemon runs or not. The copy is made
  in one step, so it is one consistent snapshot that the daemon's writes cannot
  restart (they go on meanwhile, into the WAL). It is written beside PATH, checked,
  switched to a single self-contained file (``journal_mode=DELETE``), then renamed
  to PATH, mode 0600. An existing PATH is never overwritten.
- ``vacuum`` rewrites the file to give free pages back. It needs the database to
  itself: it takes the data directory's lock, so it is refused while a daemon runs
  (the daemon holds the only writer, and a VACUUM would stall its commits), and a
  daemon started meanwhile exits naming the vacuum's pid.

Exit codes: 0 ok; 1 the database has problems, or the operation failed or was
refused (the reason on stderr); 2 usage error (no database there, PATH exists).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from corral.supervisor.cli.fastparams import FastGroup

app = typer.Typer(
    cls=FastGroup,
    no_args_is_help=True,
    help="The database: check it, back it up (while the daemon runs), compact it.",
)

EXIT_PROBLEM = 1
EXIT_USAGE = 2
#: How long a command waits for a lock the daemon holds for a moment (ms).
BUSY_TIMEOUT_MS = 5000

DataDirOpt = Annotated[
    str | None, typer.Option("--data-dir", help="Directory of corral.db (as for serve)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object")]


def _fail(code: int, message: str) -> NoReturn:
    typer.echo(f"corral: {message}", err=True)
    raise typer.Exit(code)


def _emit(json_output: bool, doc: dict[str, Any], text: str) -> None:
    if json_output:
        import orjson

        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    else:
        typer.echo(text)


def _paths(data_dir: str | None) -> tuple[Path, Path]:
    """(data directory, database file) as ``corral serve`` resolves them."""
    from corral.supervisor import config as config_mod

    try:
        cfg = config_mod.resolve(data_dir=data_dir)
    except config_mod.ConfigError as exc:
        _fail(EXIT_USAGE, str(exc))
    return cfg.data_dir, cfg.db_path


def _existing(db_path: Path) -> Path:
    if not db_path.is_file():
        _fail(EXIT_USAGE, f"no database at {db_path} (give --data-dir?)")
    return db_path


def _size(path: Path) -> int:
    with contextlib.suppress(OSError):
        return path.stat().st_size
    return 0


def _open_readonly(db_path: Path) -> Any:
    """A read-only connection, or exit 1 saying why the file cannot be one."""
    import apsw

    from corral.actors import db_check

    try:
        with db_path.open("rb") as fh:
            header = fh.read(len(db_check.SQLITE_MAGIC))
    except OSError as exc:
        _fail(EXIT_PROBLEM, f"cannot read {db_path}: {exc.strerror}")
    if header != db_check.SQLITE_MAGIC:
        what = "an empty file" if not header else "not a SQLite database"
        _fail(EXIT_PROBLEM, f"{db_path} is {what}")
    try:
        conn = apsw.Connection(str(db_path), flags=apsw.SQLITE_OPEN_READONLY)
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    except apsw.Error as exc:
        _fail(EXIT_PROBLEM, f"cannot open {db_path}: {exc}")
    return conn


@app.command()
def check(data_dir: DataDirOpt = None, json_output: JsonOpt = False) -> None:
    """Check the whole database (SQLite integrity_check); safe while the daemon runs.

    Exit 0 when it is sound, 1 when it has problems (listed)."""
    import apsw

    from corral.actors import db

    db_path = _existing(_paths(data_dir)[1])
    conn = _open_readonly(db_path)
    try:
        version = db.schema_version(conn)
        problems = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(100)")]
    except apsw.Error as exc:
        problems = [f"{type(exc).__name__}: {exc}"]
        version = -1
    finally:
        conn.close()
    if problems == ["ok"]:
        problems = []
    if version > db.SCHEMA_VERSION:
        problems.append(
            f"schema version {version} is newer than this corral's ({db.SCHEMA_VERSION})"
        )
    doc = {"path": str(db_path), "ok": not problems, "problems": problems}
    doc["schemaVersion"] = version
    if not problems:
        _emit(json_output, doc, f"ok: {db_path} ({_size(db_path)} bytes, schema {version})")
        return
    lines = [f"{db_path}: {len(problems)} problem(s):", *(f"  {p}" for p in problems)]
    lines.append("restore a backup, or move the file aside to start with an empty database")
    _emit(json_output, doc, "\n".join(lines))
    raise typer.Exit(EXIT_PROBLEM)


@app.command()
def backup(
    path: Annotated[Path, typer.Argument(help="The copy to write (must not exist)")],
    data_dir: DataDirOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Copy the database to PATH (SQLite's online backup API), even while the daemon runs.

    One consistent snapshot, checked, in a single file of mode 0600; PATH must not exist.
    """
    import apsw

    db_path = _existing(_paths(data_dir)[1])
    target = path.expanduser().absolute()
    if os.path.lexists(target):
        _fail(EXIT_USAGE, f"{target} exists; choose another path (a backup never overwrites)")
    if not target.parent.is_dir():
        _fail(EXIT_USAGE, f"{target.parent} is not a directory")
    if target.resolve() == db_path.resolve():
        _fail(EXIT_USAGE, "the backup cannot be the database itself")
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
    source = _open_readonly(db_path)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        dest = apsw.Connection(str(tmp))
        try:
            with dest.backup("main", source, "main") as job:
                job.step(-1)  # all pages in one step: one snapshot, never restarted
            dest.execute("PRAGMA journal_mode=DELETE")
            verdict = [str(r[0]) for r in dest.execute("PRAGMA quick_check")]
            if verdict != ["ok"]:
                raise RuntimeError("the copy does not pass quick_check: " + "; ".join(verdict))
            row = dest.execute("SELECT count(*) FROM sessions").fetchone()
            sessions = int(row[0]) if row else 0
        finally:
            dest.close()
        if os.path.lexists(target):
            raise RuntimeError(f"{target} appeared meanwhile; it was left alone")
        os.rename(tmp, target)
    except (apsw.Error, OSError, RuntimeError) as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _fail(EXIT_PROBLEM, f"backup of {db_path} failed: {exc}")
    finally:
        source.close()
    doc = {"path": str(target), "source": str(db_path), "bytes": _size(target)}
    doc["sessions"] = sessions
    _emit(
        json_output,
        doc,
        f"backed up {db_path} to {target} ({doc['bytes']} bytes, {sessions} sessions)",
    )


@app.command()
def vacuum(data_dir: DataDirOpt = None, json_output: JsonOpt = False) -> None:
    """Compact the database (VACUUM); refused while a daemon runs on this data directory.

    Stop the daemon first; a daemon started while it runs exits 2.
    """
    import apsw

    from corral.supervisor.config import ConfigError
    from corral.supervisor.datadir_lock import DataDirLocked, acquire

    directory, db_path = _paths(data_dir)
    _existing(db_path)
    try:
        lock = acquire(directory, what="vacuum")
    except DataDirLocked as exc:
        holder = f"pid {exc.pid}" if exc.pid is not None else "another process"
        _fail(
            EXIT_PROBLEM,
            f"a corral daemon ({holder}) is using {directory}: stop it first "
            "(vacuum needs the database to itself; `corral db backup` works while it runs)",
        )
    except ConfigError as exc:
        _fail(EXIT_PROBLEM, str(exc))
    try:
        before = _size(db_path) + _size(Path(f"{db_path}-wal"))
        conn = _open_readwrite(db_path)
        try:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        after = _size(db_path) + _size(Path(f"{db_path}-wal"))
    except apsw.Error as exc:
        _fail(EXIT_PROBLEM, f"vacuum of {db_path} failed: {exc}")
    finally:
        lock.release()
    doc = {"path": str(db_path), "bytesBefore": before, "bytesAfter": after}
    _emit(json_output, doc, f"vacuumed {db_path}: {before} -> {after} bytes")


def _open_readwrite(db_path: Path) -> Any:
    import apsw

    from corral.actors import db

    conn = apsw.Connection(str(db_path), flags=apsw.SQLITE_OPEN_READWRITE)
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    version = db.schema_version(conn)
    if version > db.SCHEMA_VERSION:
        conn.close()
        _fail(
            EXIT_PROBLEM,
            f"{db_path} has schema version {version}, newer than this corral's "
            f"({db.SCHEMA_VERSION}): use the corral that wrote it",
        )
    return conn

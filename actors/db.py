"""The SQLite schema, its migrations and every SQL statement corral runs.

Only plain functions over an ``apsw.Connection`` live here; which thread may
call which function is decided by the actors (only the StoreActor writes).
The database runs in WAL mode so readers never wait for the writer.
:func:`check_database` is the daemon's look at an existing file before it
opens it: a file corral must not start over is refused with a message naming
it and saying what to do.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import apsw
import orjson

BUSY_TIMEOUT_MS = 5000

# Each entry upgrades the schema from version i to i + 1 (PRAGMA user_version).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        status TEXT NOT NULL,
        model TEXT,
        cost_usd REAL NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens INTEGER NOT NULL DEFAULT 0,
        cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        message_count INTEGER NOT NULL DEFAULT 0,
        last_seq_id INTEGER NOT NULL DEFAULT 0,
        provider_session_id TEXT,
        options TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX sessions_by_project ON sessions (project_id, created_at DESC);
    CREATE INDEX sessions_by_created ON sessions (created_at DESC);
    CREATE TABLE messages (
        session_id TEXT NOT NULL,
        seq_id INTEGER NOT NULL,
        id TEXT NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        extra TEXT,
        timestamp INTEGER NOT NULL,
        PRIMARY KEY (session_id, seq_id)
    ) WITHOUT ROWID;
    CREATE TABLE provider_raw (
        session_id TEXT NOT NULL,
        ts INTEGER NOT NULL,
        type TEXT NOT NULL,
        line TEXT NOT NULL
    );
    CREATE INDEX provider_raw_by_session ON provider_raw (session_id);
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: notifications survive a restart (the registry keeps the newest in memory)
    """
    CREATE TABLE notifications (
        id TEXT PRIMARY KEY,
        ts INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX notifications_by_ts ON notifications (ts DESC);
    """,
    # 3: approvals (pending ones are resolved by a restart)
    """
    CREATE TABLE approvals (
        approval_id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        body TEXT NOT NULL,
        resolved_by TEXT,
        decision TEXT
    );
    CREATE INDEX approvals_pending ON approvals (session_id) WHERE resolved_by IS NULL;
    """,
)

NOTIFICATIONS_KEPT = 1000

SCHEMA_VERSION = len(MIGRATIONS)

SESSION_COLUMNS = (
    "session_id, project_id, provider, status, model, cost_usd, input_tokens, output_tokens, "
    "cache_read_tokens, cache_creation_tokens, error, created_at, updated_at, message_count, "
    "last_seq_id, provider_session_id, options"
)

# AgentMessage keys kept in the `extra` JSON column (everything but the core ones).
_CORE_MESSAGE_KEYS = frozenset({"id", "seqId", "role", "content", "timestamp"})


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of every stored time."""
    return int(time.time() * 1000)


def connect(path: Path, *, readonly: bool = False) -> apsw.Connection:
    """Open the database in WAL mode; the writer also runs the migrations."""
    flags = (
        apsw.SQLITE_OPEN_READONLY
        if readonly
        else (apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
    )
    conn = apsw.Connection(str(path), flags=flags)
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    if not readonly:
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against a crash of the daemon process (kill -9):
        # committed pages are in the WAL file in the OS cache.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        migrate(conn)
    return conn


def cap_size(conn: apsw.Connection, max_bytes: int) -> None:
    """Writes that would grow the file beyond ``max_bytes`` fail as on a full disk
    (``PRAGMA max_page_count``; never below the file's current size)."""
    row = conn.execute("PRAGMA page_size").fetchone()
    page_size = int(row[0]) if row else 4096
    conn.execute(f"PRAGMA max_page_count = {max(1, max_bytes // page_size)}")


def schema_version(conn: apsw.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: apsw.Connection) -> int:
    """Apply the pending migrations, each in its own transaction. Returns the version."""
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {version} is newer than this corral ({SCHEMA_VERSION})"
        )
    for index in range(version, SCHEMA_VERSION):
        with conn:
            conn.execute(MIGRATIONS[index])
            conn.execute(f"PRAGMA user_version={index + 1}")
    return SCHEMA_VERSION


# ---------------------------------------------------------------- the start check


def session_from_row(row: Sequence[Any]) -> dict[str, Any]:
    """A stored row as the contract's Session object (plus cache-token counts)."""
    (
        session_id,
        project_id,
        provider,
        status,
        model,
        cost_usd,
        input_tokens,
        output_tokens,
        cache_read,
        cache_creation,
        error,
        created_at,
        updated_at,
        message_count,
        last_seq_id,
        provider_session_id,
        _options,
    ) = row
    session: dict[str, Any] = {
        "sessionId": session_id,
        "projectId": project_id,
        "provider": provider,
        "status": status,
        "model": model,
        "costUsd": cost_usd,
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "cacheReadTokens": cache_read,
        "cacheCreationTokens": cache_creation,
        "createdAt": created_at,
        "updatedAt": updated_at,
        "messageCount": message_count,
        "lastSeqId": last_seq_id,
    }
    if error is not None:
        session["error"] = error
    if provider_session_id is not None:
        session["providerSessionId"] = provider_session_id
    return session


def get_session(conn: apsw.Connection, session_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = ?", (session_id,)
    ).fetchone()
    return session_from_row(row) if row else None


def get_session_options(conn: apsw.Connection, session_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT options FROM sessions WHERE session_id = ?", (session_id,)
    ).fetchone()
    return orjson.loads(row[0]) if row else None


def newest_session(conn: apsw.Connection, project_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {SESSION_COLUMNS} FROM sessions WHERE project_id = ? "
        "ORDER BY created_at DESC, rowid DESC LIMIT 1",
        (project_id,),
    ).fetchone()
    return session_from_row(row) if row else None


def list_sessions(
    conn: apsw.Connection,
    *,
    project_id: str | None = None,
    status: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> list[dict[str, Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if project_id is not None:
        clauses.append("project_id = ?")
        args.append(project_id)
    if status is not None:
        clauses.append("status = ?")
        args.append(status)
    if before is not None:
        clauses.append("created_at < ?")
        args.append(before)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    args.append(limit)
    rows = conn.execute(
        f"SELECT {SESSION_COLUMNS} FROM sessions {where} "
        "ORDER BY created_at DESC, rowid DESC LIMIT ?",
        args,
    ).fetchall()
    return [session_from_row(row) for row in rows]


def count_sessions(conn: apsw.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM sessions").fetchone()
    return int(row[0]) if row else 0


def upsert_session(conn: apsw.Connection, s: dict[str, Any], options: dict[str, Any]) -> None:
    conn.execute(
        f"INSERT INTO sessions ({SESSION_COLUMNS}) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT(session_id) DO UPDATE SET status=excluded.status, model=excluded.model, "
        "cost_usd=excluded.cost_usd, input_tokens=excluded.input_tokens, "
        "output_tokens=excluded.output_tokens, cache_read_tokens=excluded.cache_read_tokens, "
        "cache_creation_tokens=excluded.cache_creation_tokens, error=excluded.error, "
        "updated_at=excluded.updated_at, message_count=excluded.message_count, "
        "last_seq_id=excluded.last_seq_id, provider_session_id=excluded.provider_session_id, "
        "options=excluded.options",
        (
            s["sessionId"],
            s["projectId"],
            s["provider"],
            s["status"],
            s.get("model"),
            s.get("costUsd", 0.0),
            s.get("inputTokens", 0),
            s.get("outputTokens", 0),
            s.get("cacheReadTokens", 0),
            s.get("cacheCreationTokens", 0),
            s.get("error"),
            s["createdAt"],
            s["updatedAt"],
            s.get("messageCount", 0),
            s.get("lastSeqId", 0),
            s.get("providerSessionId"),
            orjson.dumps(options).decode(),
        ),
    )


def save_approval(conn: apsw.Connection, approval: dict[str, Any]) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO approvals (approval_id, session_id, created_at, body) "
        "VALUES (?, ?, ?, ?)",
        (
            approval["approvalId"],
            approval["sessionId"],
            approval["createdAt"],
            orjson.dumps(approval).decode(),
        ),
    )


def resolve_approval(conn: apsw.Connection, approval_id: str, decision: str, by: str) -> bool:
    conn.execute(
        "UPDATE approvals SET resolved_by = ?, decision = ? "
        "WHERE approval_id = ? AND resolved_by IS NULL",
        (by, decision, approval_id),
    )
    return conn.changes() > 0


def pending_approvals(conn: apsw.Connection, session_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT body FROM approvals WHERE session_id = ? AND resolved_by IS NULL "
        "ORDER BY created_at",
        (session_id,),
    ).fetchall()
    return [orjson.loads(str(body)) for (body,) in rows]


def mark_interrupted(
    conn: apsw.Connection,
    error: str,
    resolved: list[dict[str, Any]] | None = None,
    sessions: list[tuple[str, str]] | None = None,
) -> int:
    """Sessions left `running` (or `idle`) by a dead daemon become `error`, with a
    system message saying so at the end of their transcript (their ids and
    projects appended to ``sessions``). Their pending approvals are denied ``by:
    restart`` (a transcript line each; appended to ``resolved`` as
    ``approval.resolved`` data)."""
    now = now_ms()
    with conn:
        rows = conn.execute(
            "SELECT session_id, last_seq_id, project_id FROM sessions "
            "WHERE status IN ('running', 'idle')"
        ).fetchall()
        for session_id, last_seq, project_id in rows:
            if sessions is not None:
                sessions.append((str(session_id), str(project_id)))
            seq = int(last_seq or 0)
            notes: list[dict[str, Any]] = []
            for approval in pending_approvals(conn, str(session_id)):
                resolve_approval(conn, approval["approvalId"], "deny", "restart")
                seq += 1
                notes.append(_system(seq, f"denied (daemon restarted): {approval['summary']}", now))
                if resolved is not None:
                    resolved.append(
                        {
                            "approvalId": approval["approvalId"],
                            "sessionId": str(session_id),
                            "decision": "deny",
                            "by": "restart",
                            "projectId": approval.get("projectId"),
                        }
                    )
            seq += 1
            insert_messages(conn, str(session_id), [*notes, _system(seq, error, now)])
            conn.execute(
                "UPDATE sessions SET status = 'error', error = ?, updated_at = ?, "
                "last_seq_id = ?, message_count = message_count + ? WHERE session_id = ?",
                (error, now, seq, len(notes) + 1, session_id),
            )
    return len(rows)


def _system(seq: int, text: str, now: int) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "seqId": seq,
        "role": "system",
        "content": text,
        "timestamp": now,
    }


def fail_session(conn: apsw.Connection, session_id: str, error: str) -> bool:
    conn.execute(
        "UPDATE sessions SET status = 'error', error = ?, updated_at = ? "
        "WHERE session_id = ? AND status IN ('running', 'idle')",
        (error, now_ms(), session_id),
    )
    return conn.changes() > 0


def delete_session(conn: apsw.Connection, session_id: str) -> bool:
    conn.execute("DELETE FROM messages WHERE session_id = ?", (session_id,))
    conn.execute("DELETE FROM approvals WHERE session_id = ?", (session_id,))
    conn.execute("DELETE FROM provider_raw WHERE session_id = ?", (session_id,))
    conn.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
    return conn.changes() > 0


def delete_project(conn: apsw.Connection, project_id: str) -> list[str]:
    """Delete every session of a project; returns their ids."""
    ids: list[str] = [
        str(r[0])
        for r in conn.execute(
            "SELECT session_id FROM sessions WHERE project_id = ?", (project_id,)
        ).fetchall()
    ]
    for session_id in ids:
        delete_session(conn, session_id)
    return ids


def retention_victims(
    conn: apsw.Connection,
    *,
    keep_count: int,
    max_age_ms: int,
    project_ids: Iterable[str] | None,
    protected: Iterable[str],
    now: int | None = None,
) -> list[str]:
    """Sessions to delete: beyond the newest `keep_count` of their project, or not
    updated for `max_age_ms`. Running sessions and `protected` ids are never chosen."""
    protected_set = set(protected)
    cutoff = (now if now is not None else now_ms()) - max_age_ms
    if project_ids is None:
        projects = [r[0] for r in conn.execute("SELECT DISTINCT project_id FROM sessions")]
    else:
        projects = list(project_ids)
    victims: list[str] = []
    for project_id in projects:
        rows = conn.execute(
            "SELECT session_id, status, updated_at FROM sessions WHERE project_id = ? "
            "ORDER BY created_at DESC, rowid DESC",
            (project_id,),
        ).fetchall()
        for index, row in enumerate(rows):
            session_id, status, updated_at = str(row[0]), row[1], int(row[2] or 0)
            if status == "running" or session_id in protected_set:
                continue
            if index >= keep_count or updated_at < cutoff:
                victims.append(session_id)
    return victims


# ---------------------------------------------------------------- messages


def insert_messages(
    conn: apsw.Connection, session_id: str, messages: Iterable[dict[str, Any]]
) -> None:
    rows = []
    for m in messages:
        extra = {k: v for k, v in m.items() if k not in _CORE_MESSAGE_KEYS}
        rows.append(
            (
                session_id,
                m["seqId"],
                m["id"],
                m["role"],
                m["content"],
                orjson.dumps(extra).decode() if extra else None,
                m["timestamp"],
            )
        )
    conn.executemany(
        "INSERT INTO messages (session_id, seq_id, id, role, content, extra, timestamp) "
        "VALUES (?,?,?,?,?,?,?)",
        rows,
    )


TRANSCRIPT_LIMIT = 100_000
"""Most messages :func:`read_transcript` returns (the newest are kept)."""


def read_transcript(path: Path, session_id: str) -> list[dict[str, Any]]:
    """A session's stored messages, oldest first, on a connection of its own (for
    providers that resend the conversation); at most TRANSCRIPT_LIMIT."""
    conn = connect(path, readonly=True)
    try:
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            page, more = load_messages(conn, session_id, after, 5000)
            out.extend(page)
            if not more or not page:
                return out[-TRANSCRIPT_LIMIT:]
            after = page[-1]["seqId"]
    finally:
        conn.close()


PAGE_MAX_BYTES = 512 * 1024
"""A page of ``session.messages.load`` stops once it holds this many bytes of message
text (always at least one message); ``hasMore`` then tells the client to go on."""


def load_messages(
    conn: apsw.Connection, session_id: str, after_seq: int, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Messages with seqId > after_seq, ascending, at most `limit` and about
    PAGE_MAX_BYTES; and whether more exist. Rows are read one at a time, so a page
    of huge messages is never all in memory at once."""
    cursor = conn.execute(
        "SELECT seq_id, id, role, content, extra, timestamp FROM messages "
        "WHERE session_id = ? AND seq_id > ? ORDER BY seq_id LIMIT ?",
        (session_id, after_seq, limit + 1),
    )
    out: list[dict[str, Any]] = []
    size = 0
    has_more = False
    for seq_id, mid, role, content, extra, ts in cursor:
        if len(out) >= limit or (out and size >= PAGE_MAX_BYTES):
            has_more = True
            break
        size += len(content or "") + len(extra or "")
        msg: dict[str, Any] = {"id": mid, "seqId": seq_id, "role": role, "content": content}
        if extra:
            msg.update(orjson.loads(str(extra)))
        msg["timestamp"] = ts
        out.append(msg)
    cursor.close()
    return out, has_more


def insert_raw(conn: apsw.Connection, session_id: str, ts: int, kind: str, line: str) -> None:
    conn.execute(
        "INSERT INTO provider_raw (session_id, ts, type, line) VALUES (?,?,?,?)",
        (session_id, ts, kind, line),
    )


# ---------------------------------------------------------------- notifications


def insert_notification(conn: apsw.Connection, note: dict[str, Any]) -> None:
    """Store a notification and keep only the newest NOTIFICATIONS_KEPT."""
    conn.execute(
        "INSERT OR REPLACE INTO notifications (id, ts, body) VALUES (?, ?, ?)",
        (note["id"], note["ts"], orjson.dumps(note).decode()),
    )
    conn.execute(
        "DELETE FROM notifications WHERE rowid IN (SELECT rowid FROM notifications "
        "ORDER BY ts DESC, rowid DESC LIMIT -1 OFFSET ?)",
        (NOTIFICATIONS_KEPT,),
    )


def newest_notifications(conn: apsw.Connection, limit: int) -> list[dict[str, Any]]:
    """Newest first."""
    rows = conn.execute(
        "SELECT body FROM notifications ORDER BY ts DESC, rowid DESC LIMIT ?", (limit,)
    ).fetchall()
    return [orjson.loads(str(row[0])) for row in rows]


# ---------------------------------------------------------------- settings


def load_settings(conn: apsw.Connection) -> dict[str, str]:
    return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM settings").fetchall()}


def save_setting(conn: apsw.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )

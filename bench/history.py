"""history: ``session.messages.load`` of a page of 500 (at random places) from a
database of 1,000,000 messages in one session, beside the apsw query of the
same page on the same file, decoded to the same dicts, in this process.

The database is made quickly rather than by a flood: a real mock session (with
tool calls) runs on the daemon; the daemon is stopped; that session's stored
messages are repeated with corral's own storage functions
(``corral.actors.db``) until it holds the wanted number; the daemon is started
again on the same data directory. ``python -m bench.history [--quick]``.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import orjson

from bench.clients import LeanClient, corral_request
from bench.common import (
    TERMINAL,
    Context,
    Row,
    apply_settings,
    make_daemon,
    new_tmp,
    order,
    percentile,
    standalone,
    start_mock,
    wait_status,
)
from corral.actors import db

PAGE = 500


@dataclass(frozen=True)
class Sizes:
    messages: int
    pages: int  # page loads per run and side


def sizes(ctx: Context) -> Sizes:
    result: Sizes = ctx.pick(Sizes(messages=1_000_000, pages=200), Sizes(messages=50_000, pages=30))
    return result


def fill(path: Path, session_id: str, total: int) -> None:
    """Repeat the session's stored messages (new ids and seqIds) up to ``total``."""
    conn = db.connect(path)
    try:
        templates, _ = db.load_messages(conn, session_id, 0, 10_000)
        session = db.get_session(conn, session_id)
        options = db.get_session_options(conn, session_id) or {}
        assert session is not None and templates
        ids = random.Random(7)
        seq = len(templates)
        while seq < total:
            batch: list[dict[str, Any]] = []
            for _ in range(min(50_000, total - seq)):
                seq += 1
                message = dict(templates[seq % len(templates)])
                message["seqId"] = seq
                message["id"] = f"{ids.getrandbits(128):032x}"
                batch.append(message)
            with conn:
                db.insert_messages(conn, session_id, batch)
        session.update(lastSeqId=seq, messageCount=seq)
        with conn:
            db.upsert_session(conn, session, options)
    finally:
        conn.close()


def baseline_page(conn: apsw.Connection, session_id: str, after: int) -> list[dict[str, Any]]:
    """The bare query of one page, decoded to AgentMessage dicts."""
    rows = conn.execute(
        "SELECT seq_id, id, role, content, extra, timestamp FROM messages "
        "WHERE session_id = ? AND seq_id > ? ORDER BY seq_id LIMIT ?",
        (session_id, after, PAGE + 1),
    ).fetchall()
    out: list[dict[str, Any]] = []
    for seq_id, mid, role, content, extra, ts in rows[:PAGE]:
        msg: dict[str, Any] = {"id": mid, "seqId": seq_id, "role": role, "content": content}
        if extra:
            msg.update(orjson.loads(str(extra)))
        msg["timestamp"] = ts
        out.append(msg)
    return out


def run(ctx: Context) -> list[Row]:
    size = sizes(ctx)
    tmp = new_tmp("history")
    daemon = make_daemon(tmp)
    got: dict[str, dict[str, list[float]]] = {
        side: {"p50": [], "p99": []} for side in ("corral", "baseline")
    }
    try:
        daemon.start()
        with daemon.client(timeout=60.0) as client:
            apply_settings(client, {})
            sid = start_mock(client, "hist", "history", toolCalls=3, turns=2)
            wait_status(client, "hist", TERMINAL, 60.0)
        daemon.stop(timeout=60.0)
        t = time.perf_counter()
        fill(daemon.data_dir / "corral.db", sid, size.messages)
        ctx.log(f"  history: {size.messages:,} messages written in {time.perf_counter() - t:.1f} s")
        daemon = make_daemon(tmp)
        daemon.start(timeout=60.0)
        params = {"sessionId": sid, "afterSeq": 0, "limit": PAGE}
        client_ = LeanClient(
            daemon.rpc_url, "corral", corral_request("session.messages.load", params)
        )
        conn = apsw.Connection(str(daemon.data_dir / "corral.db"), flags=apsw.SQLITE_OPEN_READONLY)
        rng = random.Random(11)
        try:
            client_.check()
            baseline_page(conn, sid, 0)
            for i in range(ctx.runs):
                offsets = [rng.randrange(0, size.messages - PAGE) for _ in range(size.pages)]
                for side in order(i):
                    lat: list[float] = []
                    for after in offsets:
                        t = time.perf_counter()
                        if side == "corral":
                            client_.request["params"]["afterSeq"] = after
                            reply = client_.call()
                            n = len(reply["result"]["messages"])
                        else:
                            n = len(baseline_page(conn, sid, after))
                        lat.append((time.perf_counter() - t) * 1e3)
                        if n != PAGE:
                            raise RuntimeError(f"{side}: a page of {n} messages after {after}")
                    got[side]["p50"].append(percentile(lat, 50))
                    got[side]["p99"].append(percentile(lat, 99))
                ctx.log(f"  history run {i + 1}/{ctx.runs}")
        finally:
            conn.close()
            client_.close()
    finally:
        try:
            daemon.stop(timeout=60.0)
        finally:
            daemon.kill()
            shutil.rmtree(tmp, ignore_errors=True)
    c, b = got["corral"], got["baseline"]
    note = (
        f"{size.messages:,} messages in one session; {size.pages} pages per run at random "
        "places; baseline: apsw query + dict decoding in the benchmark's process"
    )
    return [
        Row("history", "messages.load page of 500, p50", "ms", c["p50"], b["p50"], note=note),
        Row("history", "messages.load page of 500, p99", "ms", c["p99"], b["p99"]),
    ]


if __name__ == "__main__":
    raise SystemExit(standalone(run, __doc__.splitlines()[0]))

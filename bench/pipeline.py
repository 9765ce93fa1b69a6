"""The ingest baseline: a bare pipeline in its own process. Mock agents (the same
program and lines as corral's mock sessions) -> one reader thread per child
(orjson, one message dict per displayed line) -> a queue -> one writer thread
(apsw, group commit: everything queued goes into one transaction) -> PUB (one
``agent.message`` event per session per commit) -> the benchmark's SUB.

``python -m bench.pipeline --db F --pub URL --sessions N --config JSON
--prompt TEXT --tmp DIR [--emit-log DIR]``: binds, prints ``ready``, publishes
``pipeline/hello`` until a line arrives on stdin, then spawns the children and
publishes ``pipeline/end`` after the last commit. A child's stdin is closed at
its turn's ``result`` (it then exits, as the mock does at EOF).
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import select
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import apsw
import orjson
import zmq

from bench.common import hooks_env, mock_argv, prompt_line

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    last_seq_id INTEGER NOT NULL DEFAULT 0,
    message_count INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL,
    seq_id INTEGER NOT NULL,
    id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    extra TEXT,
    timestamp INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq_id)
) WITHOUT ROWID;
"""

Item = tuple[str, dict[str, Any]] | None

_ids = random.Random()


def message(seq: int, role: str, content: str) -> dict[str, Any]:
    return {
        "id": f"{_ids.getrandbits(128):032x}",
        "seqId": seq,
        "role": role,
        "content": content,
        "timestamp": time.time_ns() // 1_000_000,
    }


def displayed(obj: dict[str, Any]) -> tuple[str, str] | None:
    """(role, content) of a stream-json line shown as a message, else None."""
    kind = obj.get("type")
    if kind == "assistant":
        block = obj["message"]["content"][0]
        if block.get("type") == "text":
            return "assistant", str(block["text"])
        if block.get("type") == "thinking":
            return "thinking", str(block["thinking"])
        if block.get("type") == "tool_use":
            return "tool-call", orjson.dumps(block.get("input")).decode()
    elif kind == "user":
        blocks = obj["message"]["content"]
        if isinstance(blocks, list) and blocks and blocks[0].get("type") == "tool_result":
            return "tool-result", str(blocks[0].get("content"))
    elif kind == "system" and obj.get("subtype") == "init":
        return "system", f"Session started (model: {obj.get('model')})"
    return None


def reader(proc: subprocess.Popen[bytes], sid: str, prompt: str, out: queue.Queue[Item]) -> None:
    assert proc.stdout is not None and proc.stdin is not None
    seq = 1
    out.put((sid, message(seq, "user", prompt)))
    for line in proc.stdout:
        obj = orjson.loads(line)
        if obj.get("type") == "result":
            proc.stdin.close()  # the turn ended: the mock exits at EOF
            continue
        shown = displayed(obj)
        if shown is None:
            continue
        seq += 1
        out.put((sid, message(seq, *shown)))
    out.put(None)


def writer(conn: apsw.Connection, pub: zmq.Socket[Any], inbox: queue.Queue[Item], n: int) -> None:
    """Group commit until ``n`` readers have ended, publishing after each COMMIT."""
    ended = 0
    while ended < n:
        batch = [inbox.get()]
        while True:
            try:
                batch.append(inbox.get_nowait())
            except queue.Empty:
                break
        items = [item for item in batch if item is not None]
        ended += len(batch) - len(items)
        if not items:
            continue
        by_session: dict[str, list[dict[str, Any]]] = {}
        for sid, msg in items:
            by_session.setdefault(sid, []).append(msg)
        now = time.time_ns() // 1_000_000
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (sid, m["seqId"], m["id"], m["role"], m["content"], None, m["timestamp"])
                for sid, m in items
            ],
        )
        for sid, msgs in by_session.items():
            conn.execute(
                "UPDATE sessions SET last_seq_id = ?, message_count = message_count + ?, "
                "updated_at = ? WHERE session_id = ?",
                (msgs[-1]["seqId"], len(msgs), now, sid),
            )
        conn.execute("COMMIT")
        for sid, msgs in by_session.items():
            frame = {"event": "agent.message", "data": {"sessionId": sid, "messages": msgs}}
            pub.send_multipart([f"project/{sid}/agent.message".encode(), orjson.dumps(frame)])
    pub.send_multipart([b"pipeline/end", b"{}"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--pub", required=True)
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--tmp", required=True)
    parser.add_argument("--emit-log")
    args = parser.parse_args()
    config = orjson.loads(args.config)
    tmp = Path(args.tmp)
    child_env = dict(os.environ)
    if args.emit_log:
        child_env.update(hooks_env(BENCH_EMIT_LOG=args.emit_log))

    pub: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 10_000)
    pub.setsockopt(zmq.LINGER, 5_000)
    pub.bind(args.pub)
    conn = apsw.Connection(args.db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(SCHEMA)
    print("ready", flush=True)
    while not select.select([sys.stdin], [], [], 0.02)[0]:
        pub.send_multipart([b"pipeline/hello", b"{}"])
    sys.stdin.readline()

    inbox: queue.Queue[Item] = queue.Queue()
    procs: list[subprocess.Popen[bytes]] = []
    threads: list[threading.Thread] = []
    for i in range(args.sessions):
        sid = str(uuid.uuid4())
        conn.execute("INSERT INTO sessions (session_id) VALUES (?)", (sid,))
        proc = subprocess.Popen(
            mock_argv(config, tmp / "state", tmp, sid),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=child_env,
            cwd=tmp,
            start_new_session=True,
        )
        assert proc.stdin is not None
        prompt = f"{args.prompt} {i}"
        proc.stdin.write(prompt_line(prompt))
        proc.stdin.flush()
        procs.append(proc)
        t = threading.Thread(target=reader, args=(proc, sid, prompt, inbox), daemon=True)
        t.start()
        threads.append(t)
    writer(conn, pub, inbox, len(procs))
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    pub.close()
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

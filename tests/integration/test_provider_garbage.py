"""Whatever a provider prints, the daemon survives it: a fake `claude` binary
that prints junk (invalid UTF-8, non-JSON, JSON of every wrong shape, a huge
line) and exits without ending its turn. A few junk lines are stored raw and
the session goes on; the huge line is dropped with a note saying so. (Floods
of junk, and other faults: test_provider_faults.py.)"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import apsw

from corral.protocol.client import Subscriber
from tests.conftest import DaemonFactory
from tests.integration.helpers import wait_status

JUNK_PROGRAM = r"""
import sys, json
out = sys.stdout.buffer
for _ in range(1000):  # the prompt arrives on stdin first, like stream-json
    if sys.stdin.buffer.readline():
        break
lines = [
    b"\xff\xfe not utf-8 \x80",
    b"plain text, not json",
    b"[1, 2, 3]",
    b"null",
    b'"just a string"',
    b'{"type": 42}',
    b'{"type": "assistant", "message": "not an object"}',
    b'{"type": "assistant", "message": {"content": [{"type": "tool_use", "input": 7}]}}',
    b'{"type": "user", "message": {"content": [{"type": "tool_result", "content": {"x": 1}}]}}',
    b'{"type": "system", "subtype": "init", "model": ["x"], "session_id": 5}',
    b'{"type": "brand_new_event", "payload": {"deep": [1, {"a": null}]}}',
    b"{" * 5000,
    b'{"type": "assistant", "message": {"content": [{"type": "text", "text": "'
    + b"A" * 10_000_000  # beyond the 8 MiB line limit: dropped, a note instead
    + b'"}]}}',
    json.dumps({"type": "assistant", "message": {"id": "m", "content": [
        {"type": "text", "text": "still parsing after the junk"}]}}).encode(),
]
for line in lines:
    out.write(line + b"\n")
out.write(b"no newline at the end")
out.flush()
sys.exit(0)
"""


HUGE_HEAD = b'{"type": "assistant", "message": {"content": [{"type": "text", "text": "'
HUGE_TAIL = b'"}]}}'


def make_fake_claude(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "claude"
    path.write_text(f"#!{sys.executable}\n{JUNK_PROGRAM}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP)
    return path


def test_junk_output_is_survived_stored_and_reported(
    daemon_factory: DaemonFactory, short_tmp: Path
) -> None:
    fake = make_fake_claude(short_tmp / "bin")
    d = daemon_factory("junk", env={"CORRAL_CLAUDE_BIN": str(fake)})
    with d.client() as client, Subscriber(d.events_url) as sub:
        sub.wait_connected(client, timeout=5)
        sid = client.call(
            "agent.start", {"projectId": "junk", "provider": "claude", "prompt": "go"}
        )["sessionId"]
        status = wait_status(sub, sid, timeout=30)
        assert status["status"] == "error"
        assert status["error"].startswith("provider exited with code 0")
        messages = client.call("session.messages.load", {"sessionId": sid})["messages"]
        texts = [m["content"] for m in messages if m["role"] == "assistant"]
        assert "still parsing after the junk" in texts
        # the huge line was dropped whole, and the transcript says so where it was
        assert all(len(t) < 1024 for t in texts)
        notes = [m["content"] for m in messages if m["role"] == "system"]
        huge = len(HUGE_HEAD) + 10_000_000 + len(HUGE_TAIL)
        assert f"a provider output line of {huge:,} bytes was dropped (limit 8 MiB)" in notes
        note_seq = next(m["seqId"] for m in messages if m["content"].startswith("a provider"))
        text_seq = next(m["seqId"] for m in messages if m["content"].startswith("still parsing"))
        assert note_seq < text_seq
        # a few junk lines are not "a provider that does not speak stream-json"
        assert not status["error"].startswith("provider output is not stream-json")
        # the daemon is fine and keeps serving
        assert client.call("daemon.ping")["pong"] is True
        assert client.call("session.get", {"projectId": "junk"})["session"]["status"] == "error"
    conn = apsw.Connection(str(d.data_dir / "corral.db"), flags=apsw.SQLITE_OPEN_READONLY)
    raw = conn.execute("SELECT count(*) FROM provider_raw WHERE session_id = ?", (sid,)).fetchone()
    conn.close()
    assert raw is not None and raw[0] >= 5  # unknown lines are stored, not dropped
    assert raw[0] < 20  # ... and the huge line is not among them

"""A full disk under a running daemon: nothing received is lost, seqIds stay
gap-free, every request is answered, sessions end in ``error`` with
"database write failed: disk full", and writing resumes once space is back.

Two ways to fill it: the data directory on a small tmpfs filled by a file the
test writes until ENOSPC (mounting needs root; skipped with the reason
otherwise), and a database capped with ``CORRAL_DB_MAX_MIB`` (SQLite's
``max_page_count``; runs anywhere), where space comes back by purging a large
session stored before the cap was set.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.protocol.client import Client, Subscriber
from corral.protocol.errors import InternalError
from corral.supervisor.background import DaemonProcess
from tests.conftest import DaemonFactory
from tests.integration.helpers import all_messages, poll, start_mock, wait_status
from tests.support.proc import descendants, read_stat, wait_until

pytestmark = pytest.mark.faults

DISK_FULL = "database write failed: disk full"


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "8m") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the data directory needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; returns it."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 512)
    return filler


def current(client: Client) -> dict[str, Any]:
    session = client.call("session.get", {"projectId": "busy"})["session"]
    assert session is not None
    return dict(session)


def seqs_of(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seqId"] for m in messages]


def received_messages(events: list[Any], session_id: str) -> dict[int, dict[str, Any]]:
    got: dict[int, dict[str, Any]] = {}
    for _topic, frame in events:
        if frame.get("event") == "agent.message" and frame["data"]["sessionId"] == session_id:
            for m in frame["data"]["messages"]:
                got[m["seqId"]] = m
    return got


def test_disk_full_ends_sessions_cleanly_and_writing_resumes(
    daemon_factory: DaemonFactory, short_tmp: Path
) -> None:
    with small_tmpfs(short_tmp / "data-d"):
        d = daemon_factory()
        filler: list[Path] = []
        try:
            with d.client() as client, Subscriber(d.events_url) as sub:
                sub.wait_connected(client, timeout=5.0)
                run(
                    client,
                    sub,
                    d,
                    fill=lambda: filler.append(fill(short_tmp / "data-d")),
                    free=lambda: filler.pop().unlink(),
                )
        finally:
            d.stop(timeout=20)
            d.kill()


def test_a_database_at_its_size_cap_behaves_like_a_full_disk(
    daemon_factory: DaemonFactory, short_tmp: Path
) -> None:
    """Runs anywhere (no mount): SQLite's max_page_count instead of a full disk.
    Unlike a full disk, a small write may still fit in the pages the file has, so
    only what must hold either way is checked."""
    first = daemon_factory()  # no cap: a large session is stored first
    with first.client() as client, Subscriber(first.events_url) as sub:
        sub.wait_connected(client, timeout=5.0)
        big = start_mock(client, "big", turns=5, toolCalls=0, textBytes=1024 * 1024)
        wait_status(sub, big["sessionId"], timeout=60)
    first.stop(timeout=20)
    size = (short_tmp / "data-d" / "corral.db").stat().st_size
    capped = -(-size // (1024 * 1024)) + 1  # MiB: what is stored now, and one more
    d = daemon_factory(env={"CORRAL_DB_MAX_MIB": str(capped)})
    try:
        with d.client() as client, Subscriber(d.events_url) as sub:
            sub.wait_connected(client, timeout=5.0)
            busy = start_mock(client, "busy", turns=1000, toolCalls=0, textBytes=20_000)
            sid = busy["sessionId"]
            events: list[Any] = []
            while True:  # the session fills the last MiB and ends
                got = sub.recv(20)
                assert got is not None, "the session never ended"
                events.append(got)
                frame = got[1]
                data = frame.get("data", {})
                if frame.get("event") == "agent.status" and data.get("sessionId") == sid:
                    assert data["status"] in ("running", "error"), data
                    if data["status"] == "error":
                        assert data["error"] == DISK_FULL
                        break
            assert client.call("daemon.ping", timeout=5)["pong"] is True
            stored = all_messages(client, sid)
            assert seqs_of(stored) == list(range(1, len(stored) + 1))
            by_seq = {m["seqId"]: m for m in stored}
            for seq, message in received_messages(events, sid).items():
                if message.get("truncated"):
                    assert by_seq[seq]["content"].startswith(message["content"])
                else:
                    assert by_seq.get(seq) == message
            assert stored[-1]["content"] == DISK_FULL
            # Space comes back (a large session is purged): work goes on.
            client.call("session.purge", {"sessionId": big["sessionId"]}, timeout=20)
            fresh = start_mock(client, "other")
            assert wait_status(sub, fresh["sessionId"], timeout=20)["status"] == "done"
    finally:
        d.stop(timeout=20)
        d.kill()


def run(
    client: Client,
    sub: Subscriber,
    d: DaemonProcess,
    fill: Callable[[], object],
    free: Callable[[], object],
) -> None:
    streaming = start_mock(client, "busy", turns=1000, toolCalls=0, textBytes=2000, delayMs=2)
    sid = streaming["sessionId"]
    events: list[Any] = []
    deadline = time.monotonic() + 10
    while len(received_messages(events, sid)) < 20 and time.monotonic() < deadline:
        got = sub.recv(0.5)
        if got is not None:
            events.append(got)
    assert len(received_messages(events, sid)) >= 20, "the session never streamed"

    assert d.proc is not None
    provider = [(pid, read_stat(pid)) for pid in descendants(d.proc.pid)]
    assert provider, "the mock agent is not a child of the daemon"
    fill()
    try:
        # The streaming session ends in error (its event goes out once space is
        # back); meanwhile the daemon says so at once, directly.
        _t, note = sub.wait_for(
            lambda _t, f: f.get("event") == "notification" and f["data"]["kind"] == "system",
            20,
        )
        events.append((_t, note))
        assert note["data"]["message"] == DISK_FULL
        # Every request is answered, with a clear error where it needs the disk.
        with pytest.raises(InternalError) as refused:
            client.call("agent.prompt", {"projectId": "busy", "prompt": "more"}, timeout=10)
        assert refused.value.message == DISK_FULL
        with pytest.raises(InternalError) as start:
            start_mock(client, "other")
        assert start.value.message == DISK_FULL
        assert client.call("daemon.ping", timeout=5)["pong"] is True
        # The project that failed to start is not wedged in start_in_progress.
        with pytest.raises(InternalError) as again:
            start_mock(client, "other")
        assert again.value.message == DISK_FULL
        events.extend(sub.drain())
    finally:
        free()

    status = wait_status(sub, sid, ("error",), timeout=20)
    assert status["error"] == DISK_FULL
    # Its provider was stopped: its output could no longer be kept.
    assert wait_until(lambda: all(read_stat(pid) != st for pid, st in provider), 10)
    events.extend(sub.drain())

    stored = all_messages(client, sid)
    assert seqs_of(stored) == list(range(1, len(stored) + 1)), "seqIds have a gap"
    by_seq = {m["seqId"]: m for m in stored}
    for seq, message in received_messages(events, sid).items():
        assert by_seq.get(seq) == message, f"received message {seq} is not stored as sent"
    assert stored[-1]["role"] == "system" and stored[-1]["content"] == DISK_FULL
    session = current(client)
    assert session["status"] == "error" and session["error"] == DISK_FULL
    assert session["lastSeqId"] == len(stored) == session["messageCount"]

    # Writing works again by itself: a new project starts and finishes, and the
    # failed session continues with gap-free seqIds.
    fresh = start_mock(client, "other")
    assert wait_status(sub, fresh["sessionId"], timeout=20)["status"] == "done"
    client.call("agent.stop", {"projectId": "busy"})
    client.call("agent.prompt", {"projectId": "busy", "prompt": "go on"})
    poll(lambda: current(client)["lastSeqId"] > len(stored), 20)
    client.call("agent.stop", {"projectId": "busy"})
    poll(lambda: current(client)["status"] != "running", 20)
    after = all_messages(client, sid)
    assert seqs_of(after) == list(range(1, len(after) + 1))
    assert after[len(stored)]["role"] == "user" and after[len(stored)]["content"] == "go on"

    # One log line per kind of failure, not one per message.
    failures = [
        line for line in d.log_path.read_text().splitlines() if "database write failed" in line
    ]
    assert 1 <= len(failures) <= 5, failures

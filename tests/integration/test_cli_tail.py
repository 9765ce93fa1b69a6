"""`corral tail` in a real process: the last messages, then live ones, then Ctrl-C."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import orjson

from corral.protocol.client import Client
from corral.supervisor.background import DaemonProcess
from tests.integration.helpers import all_messages
from tests.integration.test_cli_support import ok, on, start_args


class Lines:
    """A process's stdout, line by line, with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                self.queue.put(line)

        threading.Thread(target=pump, daemon=True).start()

    def until(self, predicate: Any, timeout: float = 20.0) -> list[str]:
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"not seen in time; got {got}") from None
            got.append(line.rstrip("\n"))
            if predicate(got[-1]):
                return got


def done(line: str) -> bool:
    return line.startswith('{"kind":"status"') and '"status":"done"' in line


def tail(daemon: DaemonProcess, *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "corral.supervisor", "tail", *args]
    argv += ["--rpc", daemon.rpc_url, "--events", daemon.events_url]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


def test_tail_json_backlog_live_and_ctrl_c(daemon: DaemonProcess, client: Client) -> None:
    first = ok(on(daemon, *start_args("t1", "one"), "--follow")).stdout.splitlines()[0]
    stored = all_messages(client, first)
    proc = tail(daemon, "t1", "-n", "3", "--json")
    try:
        lines = Lines(proc)
        rows = [orjson.loads(x) for x in lines.until(done)]
        assert rows[0]["kind"] == "session" and rows[0]["sessionId"] == first
        assert [r["message"]["seqId"] for r in rows if r["kind"] == "message"] == [
            m["seqId"] for m in stored[-3:]
        ]
        ok(on(daemon, "prompt", "t1", "two"))
        rows = [orjson.loads(x) for x in lines.until(done)]
        live = [r["message"] for r in rows if r["kind"] == "message"]
        assert live == all_messages(client, first)[len(stored) :]
        assert live[0]["content"] == "two"
        # a new session of the project: tail moves on to it
        second = ok(on(daemon, *start_args("t1", "three"), "--follow")).stdout.splitlines()[0]
        rows = [orjson.loads(x) for x in lines.until(done)]
        assert {"kind": "session", "sessionId": second} in [
            {k: r[k] for k in ("kind", "sessionId")} for r in rows
        ]
        moved = [r["message"] for r in rows if r["kind"] == "message"]
        assert moved == all_messages(client, second)
    finally:
        code = stop(proc)
    assert code == 130


def test_tail_human(daemon: DaemonProcess) -> None:
    sid = ok(on(daemon, *start_args("t2", "hello"), "--follow")).stdout.splitlines()[0]
    proc = tail(daemon, "t2")
    try:
        got = Lines(proc).until(lambda x: x.startswith("── done"))
    finally:
        stop(proc)
    assert got[0].startswith(f"── session {sid[:8]}  mock")
    assert "   1 you      hello" in got

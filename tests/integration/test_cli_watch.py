"""`corral watch`: the dashboard as rendered text, a live snapshot, a daemon restart, and
the full-screen mode on a pseudo-terminal (keys in cbreak mode, `q` quits)."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from corral.supervisor.background import DaemonProcess
from corral.supervisor.cli.common import Ctx
from corral.supervisor.cli.dashboard import WatchState, render
from corral.supervisor.cli.watch import Watcher
from tests.integration.test_cli_support import doc, ok, on, start_args

NOW = 1_700_000_000_000
API, WEB = "a1b2c3d4-0000-4000-8000-000000000001", "e5f6a7b8-0000-4000-8000-000000000002"


def two_projects() -> WatchState:
    """api runs a tool (Bash, for 2 minutes); web is done and needs attention."""
    state = WatchState("api")
    state.now = NOW
    state.connected = True
    state.endpoint = "ipc:///run/corral/rpc.sock"
    state.daemon = {"version": "0.1.0", "pid": 4242}
    running = {
        "projectId": "api",
        "sessionId": API,
        "status": "running",
        "live": True,
        "activity": "running",
        "activeTool": "Bash",
        "toolSince": NOW - 125_000,
        "idleMs": 3000,
        "costUsd": 0.4213,
        "burnRateUsdPerHour": 1.25,
        "contextPressure": 0.42,
        "attention": {"score": 0, "reason": ""},
    }
    done = {
        "projectId": "web",
        "sessionId": WEB,
        "status": "done",
        "live": True,
        "activity": "inactive",
        "activeTool": None,
        "idleMs": 0,
        "costUsd": 0.0331,
        "burnRateUsdPerHour": 0.0,
        "contextPressure": 0.91,
        "attention": {"score": 80, "reason": "context 91% full"},
    }
    aggregates = {"running": 1, "idle": 1, "stalled": 0, "burnRateUsdPerHour": 1.25}
    state.set_health({"projects": [running, done], "aggregates": aggregates})
    state.set_notifications(
        [{"kind": "agent_complete", "variant": "success", "message": "web: agent finished",
          "ts": NOW - 60_000}]
    )  # fmt: skip
    state.apply_update("session", API, None, None)
    for message in (
        {"seqId": 1, "role": "user", "content": "Run the tests"},
        {"seqId": 2, "role": "tool-call", "toolName": "Bash", "content": "pytest -q",
         "toolPath": "pytest -q"},
    ):  # fmt: skip
        state.apply_update("message", API, message, None)
    state.apply_update("status", API, None, "running")
    return state


def screen(state: WatchState, width: int = 100) -> list[str]:
    console = Console(record=True, width=width, color_system=None)
    console.print(render(state))
    return [line.rstrip() for line in console.export_text().splitlines()]


def test_dashboard_snapshot_with_two_projects() -> None:
    lines = screen(two_projects())
    assert lines[0] == "corral watch  daemon 0.1.0 pid 4242  ● connected ipc:///run/corral/rpc.sock"
    assert lines[1] == "running 1 · idle 1 · stalled 0 · burn $1.25/h"
    head = next(i for i, line in enumerate(lines) if line.startswith("PROJECT"))
    assert lines[head].split() == [
        "PROJECT", "STATUS", "ACTIVITY", "TOOL", "IDLE", "COST", "BURN", "CTX", "ATTENTION"
    ]  # fmt: skip
    # most urgent first: web (attention 80), then api, running Bash for 2 minutes
    assert lines[head + 2].split() == [
        "web", "done", "inactive", "-", "-", "$0.0331", "$0.00/h", "91%", "80", "context",
        "91%", "full",
    ]  # fmt: skip
    assert lines[head + 3].split() == [
        "api", "running", "running", "Bash", "2m", "3s", "$0.4213", "$1.25/h", "42%", "-"
    ]  # fmt: skip
    assert "1m ago  agent_complete  web: agent finished" in lines
    panel = lines[lines.index("1m ago  agent_complete  web: agent finished") + 2 :]
    assert panel[0].startswith("╭─ api · session a1b2c3d4 · running ─")
    assert panel[1].startswith("│    1 you      Run the tests")
    assert panel[2].startswith("│    2 tool     Bash  pytest -q")
    assert screen(two_projects()) == lines  # a pure function of the state


def test_dashboard_when_the_daemon_is_down() -> None:
    state = two_projects()
    state.connected = False
    assert "● daemon down, retrying" in screen(state)[0]
    empty = WatchState()
    assert "no projects with a current session" in screen(empty)
    assert not any("session" in line and "╭" in line for line in screen(empty))


def test_events_update_the_state() -> None:
    state = two_projects()
    frame: dict[str, Any] = {"event": "agent.status", "boot": "b2", "eseq": 9, "projectId": "web"}
    frame["data"] = {"sessionId": "new", "status": "running"}
    state.apply_event("project/web/agent.status", frame)
    assert state.projects["web"]["status"] == "running" and state.boot == "b2"
    note = {"kind": "agent_error", "variant": "error", "message": "api: boom", "ts": NOW}
    state.apply_event("project/api/notification", {"event": "notification", "data": note})
    assert state.notifications[0]["message"] == "api: boom"
    health = {"projectId": "new", "status": "done", "costUsd": 1.0}
    state.apply_event("project/new/health", {"event": "health", "data": health})
    assert state.projects["new"]["costUsd"] == 1.0
    assert state.to_json()["projects"][0]["projectId"] == "web"


def test_watch_once_against_a_live_daemon(daemon: DaemonProcess) -> None:
    ok(on(daemon, *start_args("w1", "first"), "--follow"))
    ok(on(daemon, *start_args("w2", "second"), "--follow"))
    out = ok(on(daemon, "watch", "w1", "--once")).stdout
    assert "● connected" in out and "w1" in out and "w2" in out
    assert "you      first" in out and "agent_complete" in out
    snapshot = doc(on(daemon, "watch", "w1", "--once", "--json"))
    assert {p["projectId"] for p in snapshot["projects"]} == {"w1", "w2"}
    assert snapshot["transcript"][0]["content"] == "first" and snapshot["connected"] is True


def until(watcher: Watcher, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "watch did not get there in time"
        watcher.step(0.1)


def test_watch_survives_a_daemon_restart(daemon_factory: Callable[..., DaemonProcess]) -> None:
    first = daemon_factory("d")
    cx = Ctx(first.rpc_url, first.events_url, timeout=1.0)
    watcher = Watcher(cx, "r1", interval=0.5)
    try:
        watcher.connect()
        boot = watcher.state.boot
        ok(on(first, *start_args("r1", "before"), "--follow"))
        until(watcher, lambda: len(watcher.state.transcript) > 3)
        assert watcher.state.transcript[0]["content"] == "before"
        first.stop()
        until(watcher, lambda: not watcher.state.connected)
        assert "daemon down, retrying" in screen(watcher.state)[0]
        second = daemon_factory("d")  # same name: same endpoints and data
        until(watcher, lambda: watcher.state.connected and watcher.state.boot != boot)
        ok(on(second, *start_args("r1", "after"), "--follow"))
        until(watcher, lambda: any(m["content"] == "after" for m in watcher.state.transcript))
        until(watcher, lambda: "r1" in watcher.state.projects)
    finally:
        watcher.close()
        cx.close()


def read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    """What a pty's master side shows until ``needle`` appears (or the time is up)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the child closed its side
                break
    return seen


def test_watch_on_a_terminal_reads_keys_and_quits_on_q(daemon: DaemonProcess) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    before = termios.tcgetattr(slave)
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    command = "from corral.supervisor.cli import main; main()"
    argv = [sys.executable, "-c", command, "watch", "--rpc", daemon.rpc_url]
    argv += ["--events", daemon.events_url]
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    try:
        assert b"connected" in read_until(master, b"connected", 20.0)
        assert termios.tcgetattr(slave)[3] & termios.ICANON == 0  # cbreak while it runs
        os.write(master, b"jkx")  # nothing to select: the screen stays
        time.sleep(0.3)
        assert proc.poll() is None
        os.write(master, b"q")
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            read_until(master, b"\x00", 0.1)  # keep the pty drained
        assert proc.returncode == 0
        assert termios.tcgetattr(slave) == before  # the terminal is given back as it was
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        os.close(master)
        os.close(slave)

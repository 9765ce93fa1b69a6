"""Provider faults through a real daemon: a fake `claude` binary (a Python program
written into the test's temp dir) misbehaves in one way per test, chosen by its
prompt. Each fault ends in a clear session error (or a stall notice), leaves no
process behind (the fake and a `sleep` it starts are checked by PID and start
time), and `daemon.ping` keeps answering within 1 s while it runs."""

from __future__ import annotations

import json
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from corral.protocol.client import Client, Subscriber
from corral.supervisor.background import DaemonProcess
from corral.supervisor.process.child import CLOSED_OUTPUT_REASON
from corral.supervisor.providers.handles import output_guard as og
from tests.conftest import DaemonFactory
from tests.integration.helpers import all_messages, poll, set_setting, wait_status
from tests.support.proc import SLEEP, kill_if_same, proc_stat

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

PING_WITHIN_S = 2.5
# A daemon blocked by the fault would answer only after its ladder (3 s and more);
# below that, a loaded machine (two test workers on two cores) can delay a ping.

FAKE_CLAUDE = r"""
import json, os, resource, signal, subprocess, sys, time

if "--version" in sys.argv:
    print("9.9.9 (fake claude)")
    sys.exit(0)
out = sys.stdout.buffer
behaviour = json.loads(sys.stdin.buffer.readline())["message"]["content"]
here = os.path.dirname(os.path.abspath(__file__))
# a descendant that must not outlive us (not holding our stdout or stderr)
quiet = subprocess.DEVNULL
helper = subprocess.Popen([SLEEP, "300"], stdin=quiet, stdout=quiet, stderr=quiet)
with open(os.path.join(here, behaviour + ".tmp"), "w") as f:
    f.write("%d %d" % (os.getpid(), helper.pid))
os.rename(os.path.join(here, behaviour + ".tmp"), os.path.join(here, behaviour + ".pids"))


def emit(obj):
    out.write(json.dumps(obj).encode() + b"\n")
    out.flush()


def text(t):
    emit({"type": "assistant", "message": {"id": t, "content": [{"type": "text", "text": t}]}})


INIT = {"type": "system", "subtype": "init", "model": "fake-1", "session_id": "fake-session"}
RESULT = {"type": "result", "subtype": "success", "is_error": False, "total_cost_usd": 0.0}


def flood(prefix):
    i = 0
    while True:
        out.write(b"%s %d\n" % (prefix, i))
        i += 1


if behaviour == "garbage":
    flood(b"this is not json")
elif behaviour == "garbage-slow":
    for i in range(1000):
        out.write(b"slow junk %d\n" % i)
        out.flush()
        time.sleep(0.25)
elif behaviour == "init-then-garbage":
    emit(INIT)
    text("starting")
    flood(b"\x1b[2Kprogress")
elif behaviour == "huge-line":
    emit(INIT)
    chunk = b"x" * (1 << 20)
    for _ in range(50):
        out.write(chunk)
    out.write(b"\n")
    text("after the huge line")
    emit(RESULT)
elif behaviour == "exit-3":
    emit(INIT)
    text("working on it")
    sys.stderr.write("fatal: the model went away\n")
    sys.stderr.flush()
    sys.exit(3)
elif behaviour == "segv":
    emit(INIT)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.kill(os.getpid(), signal.SIGSEGV)
elif behaviour == "stderr-flood":
    emit(INIT)
    err = sys.stderr.buffer
    line = b"e" * 1023 + b"\n"
    block = line * 64
    for _ in range(1600):  # 100 MiB
        err.write(block)
    err.write(b"last words\n")
    err.flush()
    sys.exit(2)
elif behaviour == "hang":
    emit(INIT)
    time.sleep(300)  # reads nothing, prints nothing
elif behaviour == "closed-stdout":
    emit(INIT)
    os.close(1)
    time.sleep(300)
elif behaviour == "ignore-sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    emit(INIT)
    time.sleep(300)
"""


class Pinger:
    """`daemon.ping` every 50 ms on a client of its own; the slowest answer."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self._daemon = daemon
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self._thread = threading.Thread(target=self._run, name="pinger", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._daemon.client(timeout=5.0) as client:
            while not self._stop.is_set():
                began = time.monotonic()
                try:
                    ok = client.call("daemon.ping", timeout=3.0)["pong"] is True
                except Exception:
                    ok = False
                self.latencies.append(time.monotonic() - began if ok else float("inf"))
                self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def check(self) -> None:
        """Every ping so far was answered within PING_WITHIN_S."""
        assert len(self.latencies) >= 3
        assert max(self.latencies) < PING_WITHIN_S, sorted(self.latencies)[-5:]


class Rig:
    """A daemon whose `claude` is the fake, a client, a subscriber and a pinger."""

    def __init__(self, daemon: DaemonProcess, bin_dir: Path, client: Client, sub: Subscriber):
        self.daemon = daemon
        self.bin_dir = bin_dir
        self.client = client
        self.sub = sub
        self.pinger = Pinger(daemon)
        self.idents: list[tuple[int, int]] = []  # (pid, start time) of every fake and helper
        self.written = 0  # pids the fakes wrote, gone or not

    def start(self, behaviour: str) -> str:
        params = {"projectId": behaviour, "provider": "claude", "prompt": behaviour}
        sid = str(self.client.call("agent.start", params)["sessionId"])
        self.processes(behaviour)
        return sid

    def processes(self, behaviour: str) -> list[tuple[int, int]]:
        """(pid, start time) of the fake and its helper, as soon as it wrote them."""
        path = self.bin_dir / f"{behaviour}.pids"
        poll(path.exists, timeout=10)
        found = []
        for pid in map(int, path.read_text().split()):
            self.written += 1
            st = proc_stat(pid)
            if st is not None:  # not gone already (a fake that kills itself may be)
                found.append((pid, st.start))
        self.idents.extend(found)
        return found

    def assert_all_gone(self, timeout: float = 5.0) -> None:
        def gone() -> bool:
            for pid, start in self.idents:
                st = proc_stat(pid)
                if st is not None and st.start == start and not st.dead:
                    return False
            return True

        assert self.written, "no process was recorded"
        poll(gone, timeout=timeout)

    def raw_rows(self, session_id: str) -> list[tuple[str, str]]:
        conn = apsw.Connection(
            str(self.daemon.data_dir / "corral.db"), flags=apsw.SQLITE_OPEN_READONLY
        )
        try:
            rows = conn.execute(
                "SELECT type, line FROM provider_raw WHERE session_id = ? ORDER BY rowid",
                (session_id,),
            ).fetchall()
        finally:
            conn.close()
        return [(str(t), str(line)) for t, line in rows]

    def shown(self, session_id: str) -> list[tuple[str, str]]:
        return [(m["role"], m["content"]) for m in all_messages(self.client, session_id)]

    def cleanup(self) -> None:
        self.pinger.stop()
        for pid, start in self.idents:
            kill_if_same(pid, start)


@pytest.fixture
def rig(daemon_factory: DaemonFactory, short_tmp: Path) -> Iterator[Rig]:
    bin_dir = short_tmp / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "claude"
    fake.write_text(f"#!{sys.executable}\nSLEEP = {SLEEP!r}\n{FAKE_CLAUDE}")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    daemon = daemon_factory("faults", env={"CORRAL_CLAUDE_BIN": str(fake)})
    with daemon.client() as client, Subscriber(daemon.events_url) as sub:
        sub.wait_connected(client, timeout=5)
        r = Rig(daemon, bin_dir, client, sub)
        try:
            yield r
        finally:
            r.cleanup()


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def ended(rig: Rig, project: str, sid: str, timeout: float = 30.0) -> dict[str, Any]:
    """The session's final agent.status, once nothing of it runs and the daemon
    answered every ping in time; the stored session agrees."""
    status = wait_status(rig.sub, sid, timeout=timeout)
    rig.assert_all_gone()
    rig.pinger.check()
    stored = rig.client.call("session.get", {"projectId": project})["session"]
    assert stored["sessionId"] == sid and stored["status"] == status["status"]
    assert stored.get("error") == status.get("error")
    return status


# ------------------------------------------------------------------ output


def test_garbage_only_ends_in_error_with_a_sample(rig: Rig) -> None:
    sid = rig.start("garbage")
    status = ended(rig, "garbage", sid)
    assert status["status"] == "error"
    assert status["error"] == "provider output is not stream-json: this is not json 0"
    raws = rig.raw_rows(sid)
    kept = [line for kind, line in raws if kind == "?"]
    assert len(kept) == og.MAX_UNKNOWN_KEPT
    assert json.loads(kept[0]) == {"unparsed": "this is not json 0"}
    (dropped,) = [json.loads(line) for kind, line in raws if kind == og.DROPPED_TYPE]
    assert dropped["count"] == og.GARBAGE_RUN_LINES - og.MAX_UNKNOWN_KEPT
    assert rig.shown(sid)[-1] == ("system", status["error"])


def test_slow_garbage_is_stopped_after_a_while(rig: Rig) -> None:
    began = time.monotonic()
    sid = rig.start("garbage-slow")
    status = ended(rig, "garbage-slow", sid, timeout=og.GARBAGE_SECONDS + 15)
    assert status["status"] == "error"
    assert status["error"] == "provider output is not stream-json: slow junk 0"
    assert og.GARBAGE_SECONDS <= time.monotonic() - began < og.GARBAGE_SECONDS + 10
    assert len(rig.raw_rows(sid)) < 40  # ~4 lines a second, no summary needed


def test_garbage_after_a_good_start_is_capped_and_stopped(rig: Rig) -> None:
    sid = rig.start("init-then-garbage")
    status = ended(rig, "init-then-garbage", sid)
    assert status["status"] == "error"
    assert status["error"] == "provider output is not stream-json: \ufffd[2Kprogress 0"
    raws = rig.raw_rows(sid)
    assert len(raws) == og.MAX_UNKNOWN_KEPT + 1
    assert raws[-1][0] == og.DROPPED_TYPE
    shown = rig.shown(sid)
    assert shown[:3] == [
        ("user", "init-then-garbage"),
        ("system", "Session started (model: fake-1)"),
        ("assistant", "starting"),
    ]


def test_a_50_mb_line_becomes_a_note_and_memory_stays_bounded(rig: Rig) -> None:
    before = peak_rss_kib(rig.daemon.pid)
    sid = rig.start("huge-line")
    status = wait_status(rig.sub, sid, timeout=60)
    assert status["status"] == "done"
    assert rig.shown(sid) == [
        ("user", "huge-line"),
        ("system", "Session started (model: fake-1)"),
        ("system", "a provider output line of 52,428,800 bytes was dropped (limit 8 MiB)"),
        ("assistant", "after the huge line"),
    ]
    assert rig.raw_rows(sid) == []  # nothing of the line is stored
    grown_mib = (peak_rss_kib(rig.daemon.pid) - before) / 1024
    assert grown_mib < 40, f"the daemon's peak memory grew by {grown_mib:.0f} MiB"
    rig.assert_all_gone()
    rig.pinger.check()


# ------------------------------------------------------------------ exits


def test_non_zero_exit_mid_turn(rig: Rig) -> None:
    sid = rig.start("exit-3")
    status = ended(rig, "exit-3", sid)
    assert status["status"] == "error"
    assert status["error"] == "provider exited with code 3: fatal: the model went away"
    assert ("assistant", "working on it") in rig.shown(sid)


def test_killed_by_a_signal(rig: Rig) -> None:
    sid = rig.start("segv")
    status = ended(rig, "segv", sid)
    assert status["status"] == "error" and status["error"] == "provider killed by signal 11"


def test_stderr_flood_keeps_only_a_tail(rig: Rig) -> None:
    before = peak_rss_kib(rig.daemon.pid)
    sid = rig.start("stderr-flood")
    status = ended(rig, "stderr-flood", sid, timeout=60)
    assert status["status"] == "error"
    assert status["error"] == "provider exited with code 2: last words"
    grown_mib = (peak_rss_kib(rig.daemon.pid) - before) / 1024
    assert grown_mib < 40, f"the daemon's peak memory grew by {grown_mib:.0f} MiB"


def test_closed_stdout_is_stopped_and_reported_at_once(rig: Rig) -> None:
    began = time.monotonic()
    sid = rig.start("closed-stdout")
    status = ended(rig, "closed-stdout", sid, timeout=15)
    assert status["status"] == "error" and status["error"] == CLOSED_OUTPUT_REASON
    assert time.monotonic() - began < 6.0  # the EOF grace, SIGTERM, no more


# ------------------------------------------------------------------ silence and stops


def test_hang_is_reported_as_a_stall_and_can_be_stopped(rig: Rig) -> None:
    set_setting(rig.client, "stall_timeout_ms", "1000")
    sid = rig.start("hang")
    _t, frame = rig.sub.wait_for(
        lambda _t, f: f["event"] == "notification" and f["data"]["kind"] == "agent_stalled",
        15,
    )
    assert frame["data"]["sessionId"] == sid
    assert rig.client.call("health.get", {"projectId": "hang"})["projects"][0]["stalled"] is True
    assert rig.client.call("session.get", {"projectId": "hang"})["session"]["status"] == "running"
    rig.pinger.check()
    stopped = rig.client.call("agent.stop", {"projectId": "hang"}, timeout=20)
    assert stopped["status"] == "done"
    rig.assert_all_gone()
    assert rig.shown(sid)[-1] == ("system", "stopped")


def test_a_provider_ignoring_sigterm_is_killed_by_the_stop(rig: Rig) -> None:
    sid = rig.start("ignore-sigterm")
    poll(lambda: ("system", "Session started (model: fake-1)") in rig.shown(sid))
    began = time.monotonic()
    stopped = rig.client.call("agent.stop", {"projectId": "ignore-sigterm"}, timeout=30)
    assert stopped["status"] == "done"
    assert time.monotonic() - began < 15
    rig.assert_all_gone()
    rig.pinger.check()
    assert rig.shown(sid)[-1] == ("system", "stopped")

"""Crash loop: mock sessions stream while two subscribers record every event, and
the daemon is SIGKILLed at random moments and restarted, over and over.

After every restart the store must hold every message any subscriber received,
under the same seqId and with the same content; every session's stored seqIds
are 1..n; nothing is left ``running`` (or ``idle``): what was running is
``error`` "interrupted: daemon restarted"; what a subscriber saw end stays
ended; and no process of the killed daemon's tree outlives it for long.

``CORRAL_CRASH_LOOPS`` sets the number of kills (default 30) and
``CORRAL_CRASH_SEED`` replays a run (the seed is printed).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq

from corral.protocol.client import Client, Subscriber
from corral.supervisor.background import DaemonProcess
from tests.conftest import DaemonFactory
from tests.integration.helpers import all_messages
from tests.support.proc import descendants, kill_if_same, proc_stat

LOOPS = int(os.environ.get("CORRAL_CRASH_LOOPS", "30"))
SEED_ENV = os.environ.get("CORRAL_CRASH_SEED", "")

PROJECTS = [f"crash{i:02d}" for i in range(20)]
FIRST_WAVE = len(PROJECTS)  # loop 0 starts a session in every project
WAVE = 4  # later loops start this many (the next projects in turn)
EARLY_KILLS = 0.25  # this share of kills lands while the starts are being served ...
EARLY_WINDOW = (0.0, 0.3)  # ... this long after the first start request;
STREAM_WINDOW = (0.1, 0.8)  # the others this long after the last start was answered
ORPHAN_GRACE = 5.0  # seconds a process of a killed daemon may take to go
START_DUMP = 45.0  # a start that takes longer is a hang: stacks to the log, and fail
RESTARTED = "interrupted: daemon restarted"

pytestmark = [pytest.mark.faults, pytest.mark.timeout(90 + 10 * LOOPS)]


# --------------------------------------------------------------------------- recording


@dataclass
class Recorder:
    """A subscriber thread that records every agent.message and agent.status event
    of every daemon that binds the events endpoint (the SUB socket reconnects)."""

    events_url: str
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    statuses: list[tuple[str, str]] = field(default_factory=list)
    boots: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="crash-recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            with Subscriber(self.events_url, rcvhwm=100_000) as sub:
                while not self._stop.is_set():
                    got = sub.recv(0.1)
                    if got is not None:
                        self._record(got[1])
        except Exception as exc:  # reported by the test, not lost in a thread
            self.errors.append(repr(exc))

    def _record(self, frame: dict[str, Any]) -> None:
        data = frame.get("data") or {}
        with self._lock:
            self.boots.add(str(frame.get("boot")))
            if frame.get("event") == "agent.message":
                for message in data["messages"]:
                    self.messages.append((data["sessionId"], message))
            elif frame.get("event") == "agent.status":
                self.statuses.append((data["sessionId"], data["status"]))

    def marks(self) -> tuple[int, int]:
        with self._lock:
            return len(self.messages), len(self.statuses)

    def since(
        self, marks: tuple[int, int]
    ) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, str]]]:
        with self._lock:
            return self.messages[marks[0] :], self.statuses[marks[1] :]


@dataclass
class Watched:
    """A process of a killed daemon's tree, by PID and start time."""

    pid: int
    start: int | None
    killed_at: float
    loop: int
    argv: str = ""

    def alive(self) -> bool:
        st = proc_stat(self.pid)
        return st is not None and not st.dead and st.start == self.start


@dataclass
class Loop:
    """What one loop did before its kill."""

    index: int
    answered: dict[str, str] = field(default_factory=dict)  # sessionId -> projectId
    marks: list[tuple[int, int]] = field(default_factory=list)
    sent: int = 0
    delay: float = 0.0


# --------------------------------------------------------------------------- the crash


def start_params(rng: random.Random, project: str, cwd: Path, loop: int) -> dict[str, Any]:
    """A mock session that streams for a while (some end before the kill)."""
    config: dict[str, Any] = {
        "delayMs": rng.randint(1, 15),
        "turns": rng.randint(1, 30),
        "toolCalls": rng.randint(0, 3),
        "textBytes": rng.choice([1, 40, 300, 3000, 3000, 20_000]),
    }
    roll = rng.random()
    if roll < 0.1:
        config["flood"] = rng.randint(50, 400)
        config["textBytes"] = min(config["textBytes"], 300)
    elif roll < 0.15:
        config["hang"] = True
    elif roll < 0.2:  # waits for an approval when the kill comes (denied by the restart)
        config["tools"] = [{"name": "Bash", "input": {"command": "ls"}, "ask": True}]
    return {
        "projectId": project,
        "provider": "mock",
        "prompt": f"loop {loop}: fix ✓ the “{project}” tests {rng.random():.6f}",
        "cwd": str(cwd),
        "providerConfig": config,
    }


def crash(
    d: DaemonProcess, rng: random.Random, loop: Loop, projects: list[str], cwd: Path
) -> list[Watched]:
    """Start sessions (pipelined), SIGKILL the daemon at a random moment; the
    processes of its tree at the kill."""
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(d.rpc_url)
    try:
        began = time.monotonic()
        for i, project in enumerate(projects):
            request = {
                "jsonrpc": "2.0",
                "id": i,
                "method": "agent.start",
                "params": start_params(rng, project, cwd, loop.index),
            }
            sock.send_multipart([b"", orjson.dumps(request)])
        loop.sent = len(projects)
        if rng.random() < EARLY_KILLS:
            kill_at = began + rng.uniform(*EARLY_WINDOW)
        else:
            deadline = time.monotonic() + 20
            while len(loop.answered) < len(projects) and sock.poll(
                max(0, int((deadline - time.monotonic()) * 1000))
            ):
                take_answer(sock, loop, projects)
            kill_at = time.monotonic() + rng.uniform(*STREAM_WINDOW)
        time.sleep(max(0.0, kill_at - time.monotonic()))
        loop.delay = time.monotonic() - began
        while sock.poll(0):  # the answers that came before the kill
            take_answer(sock, loop, projects)
        tree = [(pid, proc_stat(pid), argv_of(pid)) for pid in descendants(d.pid)]
        d.kill(reap_children=False)
    finally:
        sock.close()
    killed_at = time.monotonic()
    return [
        Watched(pid, st.start, killed_at, loop.index, argv)
        for pid, st, argv in tree
        if st is not None
    ]


def take_answer(sock: zmq.Socket[Any], loop: Loop, projects: list[str]) -> None:
    _empty, payload = sock.recv_multipart()
    reply = orjson.loads(payload)
    assert "result" in reply, reply
    loop.answered[reply["result"]["sessionId"]] = projects[reply["id"]]


def argv_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:300]
    except OSError:
        return ""


def restart(daemon_factory: DaemonFactory) -> DaemonProcess:
    """Start the daemon on the same directories. A start that takes very long has
    its threads' stacks written to its log (faulthandler, on SIGABRT) before the
    test fails, so that a hang at start-up shows where it is."""
    d = daemon_factory("crash", env={"PYTHONFAULTHANDLER": "1"}, start=False)
    started = threading.Event()

    def watchdog() -> None:
        if not started.wait(START_DUMP) and d.proc is not None and d.proc.poll() is None:
            os.kill(d.proc.pid, signal.SIGABRT)

    threading.Thread(target=watchdog, name="crash-start-watchdog", daemon=True).start()
    try:
        d.start(timeout=START_DUMP + 15)
    finally:
        started.set()
    return d


# --------------------------------------------------------------------------- the checks


def stored_sessions(client: Client) -> dict[str, dict[str, Any]]:
    pages = client.pipeline(
        [("session.list", {"projectId": p, "limit": 500}) for p in PROJECTS], timeout=20
    )
    return {s["sessionId"]: s for page in pages for s in page["sessions"]}


def check_restart(
    client: Client,
    loop: Loop,
    recorders: list[Recorder],
    known: set[str],
) -> dict[str, dict[str, Any]]:
    """The checks after one crash and restart; returns the stored sessions."""
    sessions = stored_sessions(client)
    ghosts = [s for s in sessions.values() if s["status"] not in ("done", "error")]
    assert not ghosts, f"loop {loop.index}: sessions left in a live status: {ghosts}"
    assert client.call("session.list", {"status": "running", "limit": 500})["sessions"] == []
    assert client.call("session.list", {"status": "idle", "limit": 500})["sessions"] == []
    for s in sessions.values():
        if s["status"] == "error":
            assert s["error"] == RESTARTED, s
    missing = set(loop.answered) - set(sessions)
    assert not missing, f"loop {loop.index}: answered starts not stored: {missing}"

    received: list[tuple[str, dict[str, Any]]] = []
    ended: dict[str, set[str]] = {}
    for recorder, marks in zip(recorders, loop.marks, strict=True):
        messages, statuses = recorder.since(marks)
        received += messages
        for sid, status in statuses:
            if status in ("done", "error"):
                ended.setdefault(sid, set()).add(status)
    unknown = {sid for sid, _m in received} - set(sessions)
    assert not unknown, f"loop {loop.index}: messages received of unstored sessions {unknown}"
    # what a subscriber saw end was committed first: it is still ended that way
    for sid, seen in ended.items():
        assert {sessions[sid]["status"]} == seen, (sid, seen, sessions[sid])

    fresh = [sid for sid in sessions if sid not in known]
    transcripts: dict[str, dict[int, dict[str, Any]]] = {}
    for sid in fresh:
        stored = all_messages(client, sid)
        seqs = [m["seqId"] for m in stored]
        assert seqs == list(range(1, len(stored) + 1)), f"{sid}: stored seqIds {seqs}"
        session = sessions[sid]
        assert session["lastSeqId"] == len(stored), (session, len(stored))
        if session["status"] == "error":
            assert (stored[-1]["role"], stored[-1]["content"]) == ("system", RESTARTED)
        transcripts[sid] = {m["seqId"]: m for m in stored}
    for sid, message in received:
        assert sid in transcripts, f"loop {loop.index}: {sid} is not of this loop"
        stored_message = transcripts[sid].get(message["seqId"])
        assert stored_message is not None and same_message(message, stored_message), (
            f"loop {loop.index}: received {message} but stored {stored_message}"
        )
    return sessions


CUT_FIELDS = (("content", "contentBytes"), ("toolInput", "toolInputBytes"))


def same_message(received: dict[str, Any], stored: dict[str, Any]) -> bool:
    """The stored message is the one received; an event may carry long text fields
    cut (``truncated``, with their full sizes): then the stored text starts with
    the received one and has that size."""
    if not received.get("truncated"):
        return received == stored
    rest = {k: v for k, v in received.items() if k != "truncated"}
    for name, size_name in CUT_FIELDS:
        if size_name in rest:
            full = stored.get(name)
            cut = rest.pop(name)
            size = rest.pop(size_name)
            if not (isinstance(full, str) and full.startswith(cut)):
                return False
            if len(full.encode()) != size:
                return False
    return all(stored.get(k) == v for k, v in rest.items())


def sweep(watched: list[Watched], survivors: list[Watched], wait: float = 0.0) -> None:
    """Forget processes that are gone; kill (by PID) and keep those past their grace."""
    deadline = time.monotonic() + wait
    while True:
        watched[:] = [w for w in watched if w.alive()]
        late = [w for w in watched if time.monotonic() - w.killed_at > ORPHAN_GRACE]
        if not watched or late or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    for w in late:
        survivors.append(w)
        kill_if_same(w.pid, w.start)
        watched.remove(w)


def check_received_order(recorders: list[Recorder]) -> None:
    """No subscriber got a seqId of a session twice, or out of order."""
    for recorder in recorders:
        last: dict[str, int] = {}
        for sid, message in recorder.messages:
            assert message["seqId"] > last.get(sid, 0), (sid, message, last.get(sid))
            last[sid] = message["seqId"]


# --------------------------------------------------------------------------- the test


@pytest.fixture
def recorders(daemon_factory: DaemonFactory) -> Iterator[list[Recorder]]:
    # the endpoint of every daemon named "crash" is the same (same runtime dir)
    url = daemon_factory("crash", start=False).events_url
    out = [Recorder(url) for _ in range(2)]
    for r in out:
        r.start()
    try:
        yield out
    finally:
        for r in out:
            r.stop()


def test_sigkill_loop_loses_nothing_and_leaves_no_ghosts(
    daemon_factory: DaemonFactory, recorders: list[Recorder], short_tmp: Path
) -> None:
    seed = int(SEED_ENV) if SEED_ENV else random.SystemRandom().randrange(2**32)
    print(f"crash loop: CORRAL_CRASH_SEED={seed} CORRAL_CRASH_LOOPS={LOOPS}")
    rng = random.Random(seed)
    cwd = short_tmp / "work"
    cwd.mkdir()
    d = restart(daemon_factory)
    with d.client() as client:  # keep every session of the run (default: 5 per project)
        client.call("settings.set", {"key": "session_retention_count", "value": "50"})

    known: set[str] = set()
    watched: list[Watched] = []
    survivors: list[Watched] = []
    per_loop: list[tuple[int, int]] = []  # messages each recorder received per loop
    interrupted = 0
    turn = 0
    for index in range(LOOPS):
        count = FIRST_WAVE if index == 0 else WAVE
        projects = [PROJECTS[(turn + i) % len(PROJECTS)] for i in range(count)]
        turn += count
        loop = Loop(index, marks=[r.marks() for r in recorders])
        watched += crash(d, rng, loop, projects, cwd)
        restarted = time.monotonic()
        d = restart(daemon_factory)
        restarted = time.monotonic() - restarted
        with d.client(timeout=20) as client:
            sessions = check_restart(client, loop, recorders, known)
        new = [sid for sid in sessions if sid not in known]
        interrupted += sum(1 for sid in new if sessions[sid]["status"] == "error")
        known |= set(sessions)
        got = [r.marks()[0] - m[0] for r, m in zip(recorders, loop.marks, strict=True)]
        per_loop.append((got[0], got[1]))
        sweep(watched, survivors)
        print(
            f"loop {index}: killed {loop.delay:.2f}s after the first start "
            f"({len(loop.answered)}/{loop.sent} answered), restarted in {restarted:.1f}s: "
            f"{len(new)} new sessions, received {got}, {len(watched)} processes "
            "of killed daemons still running"
        )

    assert d.stop() == 0
    sweep(watched, survivors, wait=ORPHAN_GRACE + 1)
    for r in recorders:
        assert not r.errors, r.errors
    check_received_order(recorders)
    assert not survivors, "processes of a killed daemon outlived it (killed now by PID): " + str(
        [(w.pid, w.argv, f"killed in loop {w.loop}") for w in survivors]
    )
    # the run was not vacuous: sessions were interrupted, subscribers received messages
    assert interrupted >= LOOPS // 2, interrupted
    loops_with_messages = sum(1 for a, b in per_loop if a and b)
    assert loops_with_messages >= max(1, LOOPS // 3), per_loop
    assert not watched, watched

"""systemd notify: datagrams on a real NOTIFY_SOCKET, STATUS on change, and a watchdog
that pings only while the router and the store make progress (wedged: no pings)."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest

from corral.actors.scheduler import Scheduler
from corral.actors.store import Drain, Heartbeat, StoreActor
from corral.supervisor.notify import (
    ProbedOutbox,
    Progress,
    Watchdog,
    sd_notify,
    status_line,
    watchdog_interval,
)


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, dict[str, str]]]:
    """A real datagram socket standing in for systemd's, and the env naming it."""
    directory = tempfile.mkdtemp(prefix="cr-n-", dir="/tmp")
    path = os.path.join(directory, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.05)
    try:
        yield sock, {"NOTIFY_SOCKET": path}
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(directory)


def flush(sock: socket.socket) -> None:
    """Drop the datagrams already queued."""
    sock.setblocking(False)
    try:
        while True:
            sock.recv(4096)
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(0.05)


def received(sock: socket.socket, seconds: float) -> list[str]:
    """Every datagram that arrives within ``seconds``."""
    out: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return out


def test_sd_notify_sends_one_datagram(notify_socket: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = notify_socket
    assert sd_notify("READY=1", env) is True
    assert sock.recv(64) == b"READY=1"
    assert sd_notify("READY=1", {}) is False
    assert sd_notify("READY=1", {"NOTIFY_SOCKET": "/nonexistent/sock"}) is False


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_step_pings_on_schedule_and_only_while_every_probe_moves() -> None:
    clock = Clock()
    router, store = Progress("router", clock), Progress("store", clock)
    dog = Watchdog(
        [router, store], lambda: (0, 0), {"WATCHDOG_USEC": "2000000"}, stale_after=3, clock=clock
    )
    assert dog.interval == 1.0
    assert dog.step() == ["WATCHDOG=1"]
    clock.now += 0.5
    assert dog.step() == []  # not due yet
    for _ in range(5):  # both make progress: one ping per interval
        clock.now += 1.0
        router.beat()
        store.beat()
        assert dog.step() == ["WATCHDOG=1"]
    for _ in range(3):  # the store is wedged; the router goes on
        clock.now += 1.0
        router.beat()
        dog.step()
    assert dog.stuck(clock.now) == []  # 3 s old is not stale yet
    clock.now += 1.0
    router.beat()
    assert dog.stuck(clock.now) == ["store"]
    assert dog.step() == []
    clock.now += 10.0
    router.beat()
    assert dog.step() == []
    store.beat()  # progress again: the ping goes at once
    assert dog.step() == ["WATCHDOG=1"]


def test_status_is_sent_when_the_counts_change() -> None:
    counts = [(0, 0)]
    dog = Watchdog([], lambda: counts[-1], {})
    assert dog.interval is None
    assert dog.step() == []
    counts.append((2, 1))
    assert dog.step() == ["STATUS=2 live sessions, 1 running"]
    assert dog.step() == []
    counts.append((1, 0))
    assert dog.step() == [status_line(1, 0)] == ["STATUS=1 live session, 0 running"]


def test_probed_outbox_notes_progress_and_counts() -> None:
    outbox = ProbedOutbox()
    try:
        router_before, store_before = outbox.router.beats, outbox.store.beats
        outbox.drain()
        assert outbox.router.beats == router_before + 1
        outbox.publish("daemon.heartbeat", {"live": 3, "lastSeqIds": {}})
        assert outbox.store.beats == store_before + 1
        outbox.publish("agent.status", {"sessionId": "a", "status": "running"}, "p")
        outbox.publish("agent.status", {"sessionId": "b", "status": "running"}, "q")
        outbox.publish("agent.status", {"sessionId": "a", "status": "done"}, "p")
        assert outbox.counts() == (3, 1)
        published = [item for item in outbox.drain() if hasattr(item, "event")]
        assert [item.event for item in published] == [  # type: ignore[union-attr]
            "daemon.heartbeat",
            "agent.status",
            "agent.status",
            "agent.status",
        ]
    finally:
        outbox.close()


class FakeRouter:
    """Drains the outbox like the router loop does, until wedged."""

    def __init__(self, outbox: ProbedOutbox) -> None:
        self.outbox = outbox
        self.running = threading.Event()
        self.running.set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            if self.running.is_set():
                self.outbox.drain()


def test_watchdog_thread_stops_pinging_while_the_real_store_is_wedged(
    notify_socket: tuple[socket.socket, dict[str, str]], tmp_path: Path
) -> None:
    sock, env = notify_socket
    outbox = ProbedOutbox()
    scheduler = Scheduler()
    scheduler.start()
    store = StoreActor.start(tmp_path / "corral.db", outbox)
    router = FakeRouter(outbox)
    scheduler.call_every(0.1, store, Heartbeat)
    dog = Watchdog(
        [outbox.router, outbox.store],
        outbox.counts,
        {**env, "WATCHDOG_USEC": "200000"},  # a ping every 0.1 s
        stale_after=0.6,
    )
    gate = threading.Event()
    try:
        dog.start()
        healthy = received(sock, 1.0)
        assert healthy.count("WATCHDOG=1") >= 5, healthy

        # Wedge the store thread inside a callback it runs: its heartbeats stop.
        store.tell(Drain(then=lambda: gate.wait(10)))
        time.sleep(0.8)  # past stale_after
        flush(sock)
        wedged = received(sock, 1.2)
        assert "WATCHDOG=1" not in wedged, wedged

        gate.set()  # the store moves again, and so do the pings
        recovered = received(sock, 1.0)
        assert recovered.count("WATCHDOG=1") >= 3, recovered

        # Now the router stops draining: no pings either.
        router.running.clear()
        time.sleep(0.8)
        flush(sock)
        assert "WATCHDOG=1" not in received(sock, 1.2)
        router.running.set()
        assert "WATCHDOG=1" in received(sock, 1.0)
    finally:
        gate.set()
        dog.stop()
        router.stop.set()
        router.thread.join(2)
        scheduler.stop()
        store.stop(block=True, timeout=5)
        outbox.close()
        pykka.ActorRegistry.stop_all(block=True, timeout=5)


def test_watchdog_thread_is_off_without_a_notify_socket() -> None:
    dog = Watchdog([Progress("x")], lambda: (0, 0), {"WATCHDOG_USEC": "100000"})
    dog.start()
    try:
        assert not dog.enabled and dog._thread is None
    finally:
        dog.stop()

"""A real daemon talking to a stand-in for systemd's notify socket: READY=1 once it
serves, WATCHDOG=1 while it works, STATUS= as sessions come and go, STOPPING=1."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.conftest import DaemonFactory
from tests.integration.helpers import start_mock


def collect(sock: socket.socket, until: str, timeout: float) -> list[str]:
    """Datagrams until one equals ``until`` (included); AssertionError after ``timeout``."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
        if got[-1] == until:
            return got
    raise AssertionError(f"no {until!r} within {timeout}s; got {got}")


def test_ready_watchdog_status_and_stopping(daemon_factory: DaemonFactory, short_tmp: Path) -> None:
    path = short_tmp / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    try:
        daemon = daemon_factory(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"})
        first = collect(sock, "READY=1", 10)
        assert first == ["READY=1"]  # nothing before READY
        assert collect(sock, "WATCHDOG=1", 3)[-1] == "WATCHDOG=1"
        with daemon.client() as client:
            start_mock(client, "notify", delayMs=300, turns=2)
            running = collect(sock, "STATUS=1 live session, 1 running", 10)
            assert "STOPPING=1" not in running
            collect(sock, "STATUS=1 live session, 0 running", 20)
        pings = collect(sock, "WATCHDOG=1", 3)
        assert pings[-1] == "WATCHDOG=1"
        daemon.stop()
        tail = collect(sock, "STOPPING=1", 20)
        assert tail[-1] == "STOPPING=1"
        time.sleep(0.5)
        try:
            after = sock.recv(4096).decode()
        except TimeoutError:
            after = None
        assert after is None  # the watchdog stopped before STOPPING
    finally:
        sock.close()

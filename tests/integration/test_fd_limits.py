"""The descriptor limit: the daemon raises its soft limit to the hard one (so
1,100 clients under systemd's soft 1024 do not exhaust it) and refuses starts
with ``overloaded`` before sessions take the descriptors clients need."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq

from corral.actors import fd_budget
from corral.protocol.client import Client
from corral.protocol.errors import Overloaded
from corral.supervisor.background import DaemonProcess
from tests.conftest import DaemonFactory

pytestmark = pytest.mark.faults

LIMIT = 256


def fd_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-files line")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_the_soft_limit_is_raised_and_many_clients_connect(
    daemon_factory: DaemonFactory,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard descriptor limit here is {hard}: too low to show the raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # systemd's default soft
    try:
        d = daemon_factory()  # inherits soft 1024
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert d.proc is not None
    daemon_soft, daemon_hard = fd_limits(d.proc.pid)
    assert daemon_hard == hard and daemon_soft == min(hard, fd_budget.SOFT_LIMIT_CAP)
    with d.client() as client:
        connect_many(d, client, d.proc.pid, 1100, everyone_answered=True)
    assert d.proc.poll() is None


def test_sessions_cannot_take_the_descriptors_clients_need(
    daemon_factory: DaemonFactory,
) -> None:
    d = daemon_factory()
    assert d.proc is not None
    pid = d.proc.pid
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (LIMIT, LIMIT))
    assert fd_limits(pid) == (LIMIT, LIMIT)
    with d.client() as client:
        started = start_until_overloaded(client)
        # Each session holds about five descriptors; the reserve keeps clients room.
        assert 10 <= started <= LIMIT // 5, started
        assert open_fds(pid) <= LIMIT - fd_budget.client_reserve(LIMIT) + 8
        connect_many(d, client, pid, 10, everyone_answered=True)
        for n in range(started):
            client.call("agent.stop", {"projectId": f"fd{n}"}, timeout=20)
        # Stopped sessions free their descriptors: starts work again.
        client.call(
            "agent.start",
            {"projectId": "fd0", "provider": "mock", "prompt": "again"},
            timeout=20,
        )
    assert d.proc.poll() is None, "the daemon died"


def start_until_overloaded(client: Client) -> int:
    for n in range(LIMIT):
        params: dict[str, Any] = {
            "projectId": f"fd{n}",
            "provider": "mock",
            "prompt": "hold",
            "providerConfig": {"hang": True, "delayMs": 0},
        }
        try:
            client.call("agent.start", params, timeout=20)
        except Overloaded as exc:
            assert "file descriptors" in exc.message
            return n
    raise AssertionError("never overloaded")


def connect_many(
    d: DaemonProcess, client: Client, pid: int, count: int, *, everyone_answered: bool
) -> None:
    """``count`` clients connect and ask for a ping; the daemon stays up."""
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, count + 64)
    socks = []
    try:
        for n in range(count):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(d.rpc_url)
            request = {"jsonrpc": "2.0", "id": n, "method": "daemon.ping"}
            sock.send_multipart([b"", orjson.dumps(request)])
            socks.append(sock)
        deadline = time.monotonic() + 60
        pending = list(socks)
        while pending and time.monotonic() < deadline:
            pending = [s for s in pending if not s.poll(50, zmq.POLLIN)]
        assert d.proc is not None and d.proc.poll() is None, "the daemon was aborted"
        if everyone_answered:
            assert not pending, f"{len(pending)} of {count} clients got no answer"
        assert client.call("daemon.ping", timeout=10)["pong"] is True
    finally:
        for sock in socks:
            sock.close()
        ctx.term()

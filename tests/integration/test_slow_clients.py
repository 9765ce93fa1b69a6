"""Clients that do not read cannot grow the daemon's memory.

A subscriber that never reads while sessions print 1 MiB texts, and a DEALER
that asks for pages of 1 MiB messages and never reads the answers: the
daemon's resident memory (sampled from /proc) stays under a stated bound, its
ping stays fast, and a reading client still gets everything (cut events are
marked; the store keeps the whole text).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq

from corral.protocol.client import Client, Subscriber
from corral.supervisor.background import DaemonProcess
from tests.integration.helpers import all_messages, start_mock, wait_status

pytestmark = pytest.mark.faults

MIB = 1024 * 1024
TEXT = MIB  # the mock's largest text
TURNS = 30  # per session: 310 texts of 1 MiB from ten sessions


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class PeakRss:
    """Samples a process's resident memory on a thread until stopped."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.peak = rss_kib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.peak = max(self.peak, rss_kib(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def daemon_pid(daemon: DaemonProcess) -> int:
    assert daemon.proc is not None
    return daemon.proc.pid


def ping_ms(client: Client) -> float:
    began = time.monotonic()
    client.call("daemon.ping", timeout=5)
    return (time.monotonic() - began) * 1000


def test_a_subscriber_that_never_reads_large_messages_costs_bounded_memory(
    daemon: DaemonProcess, client: Client, subscriber: Subscriber
) -> None:
    pid = daemon_pid(daemon)
    ctx = zmq.Context.instance()
    stuck = ctx.socket(zmq.SUB)  # subscribes to everything, never reads
    stuck.setsockopt(zmq.LINGER, 0)
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.RCVBUF, 4096)
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    stuck.connect(daemon.events_url)
    try:
        time.sleep(0.3)
        base = rss_kib(pid)
        peak = PeakRss(pid)
        ids = [
            start_mock(client, f"big{n}", turns=TURNS, toolCalls=0, textBytes=TEXT)["sessionId"]
            for n in range(10)
        ]
        pings: list[float] = []
        ended: set[str] = set()
        deadline = time.monotonic() + 100
        while ended != set(ids) and time.monotonic() < deadline:
            got = subscriber.recv(0.2)
            pings.append(ping_ms(client))
            if got is not None and got[1].get("event") == "agent.status":
                data = got[1]["data"]
                if data["status"] in ("done", "error"):
                    ended.add(data["sessionId"])
        grown = (peak.stop() - base) / 1024
        assert ended == set(ids), "not every session ended"
    finally:
        stuck.close()
    # 310 MiB went through; a subscriber holds at most about 1,000 events of
    # 64 KiB, and the rest is transient (one read at a time per session).
    assert grown < 160, f"the daemon grew by {grown:.0f} MiB"
    assert max(pings) < 2500, pings  # a blocked daemon would take seconds more

    # The store has every text whole.
    stored = all_messages(client, ids[0])
    texts = [m for m in stored if m["role"] == "assistant" and len(m["content"]) == TEXT]
    assert len(texts) == TURNS + 1  # a text per turn, and the final answer
    assert all("truncated" not in m for m in stored)


def test_large_messages_reach_subscribers_cut_and_marked(
    client: Client, subscriber: Subscriber
) -> None:
    sid = start_mock(client, "cut", turns=2, toolCalls=0, textBytes=100_000)["sessionId"]
    seen: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = subscriber.recv(0.5)
        if got is None:
            continue
        _topic, frame = got
        if frame.get("event") == "agent.message" and frame["data"]["sessionId"] == sid:
            for m in frame["data"]["messages"]:
                seen[m["seqId"]] = m
        if frame.get("event") == "agent.status" and frame["data"]["status"] == "done":
            break
    big = [m for m in seen.values() if m["role"] == "assistant" and m.get("truncated")]
    assert len(big) == 3  # a text per turn, and the final answer
    for m in big:
        assert m["truncated"] is True and m["contentBytes"] == 100_000
        assert len(m["content"].encode()) == 16 * 1024
    small = [m for m in seen.values() if m["role"] == "user"]
    assert small and "truncated" not in small[0]
    stored = {m["seqId"]: m for m in all_messages(client, sid)}
    for seq, m in seen.items():
        whole = stored[seq]
        if m.get("truncated"):
            assert whole["content"].startswith(m["content"])
            assert len(whole["content"].encode()) == m["contentBytes"]
        else:
            assert whole == m


def test_pages_are_bounded_in_bytes_and_a_client_that_never_reads_costs_bounded_memory(
    daemon: DaemonProcess, client: Client, subscriber: Subscriber
) -> None:
    pid = daemon_pid(daemon)
    sid = start_mock(client, "hist", turns=60, toolCalls=0, textBytes=TEXT)["sessionId"]
    wait_status(subscriber, sid, timeout=120)

    page = client.call("session.messages.load", {"sessionId": sid, "limit": 5000})
    assert page["hasMore"] is True
    size = sum(len(orjson.dumps(m)) for m in page["messages"])
    assert len(page["messages"]) == 1 or size <= 512 * 1024 + 2 * MIB
    everything = all_messages(client, sid)
    assert [m["seqId"] for m in everything] == list(range(1, len(everything) + 1))
    assert sum(len(m["content"]) == TEXT for m in everything) == 61

    time.sleep(0.3)
    base = rss_kib(pid)
    peak = PeakRss(pid)
    ctx = zmq.Context.instance()
    deaf = ctx.socket(zmq.DEALER)  # asks, never reads
    deaf.setsockopt(zmq.LINGER, 0)
    deaf.setsockopt(zmq.RCVHWM, 1)
    deaf.setsockopt(zmq.RCVBUF, 4096)
    deaf.connect(daemon.rpc_url)
    try:
        for n in range(8):
            request = {
                "jsonrpc": "2.0",
                "id": n,
                "method": "session.messages.load",
                "params": {"sessionId": sid, "limit": 5000},
            }
            deaf.send_multipart([b"", orjson.dumps(request)])
        pings = [ping_ms(client) for _ in range(20)]
        time.sleep(1.0)
        held = (rss_kib(pid) - base) / 1024
        grown = (peak.stop() - base) / 1024
    finally:
        deaf.close()
    assert grown < 128, f"the daemon grew by {grown:.0f} MiB at its peak"
    assert held < 64, f"the daemon holds {held:.0f} MiB more"
    assert max(pings) < 2500, pings  # a blocked daemon would take seconds more

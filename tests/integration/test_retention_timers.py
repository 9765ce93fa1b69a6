"""Retention (count and age, never live sessions), the stall notification and
the cleanup timer, through a real daemon and its real database."""

from __future__ import annotations

import time

import apsw

from corral.protocol.client import Client, Subscriber
from corral.supervisor.background import DaemonProcess
from tests.integration.helpers import poll, set_setting, start_mock, wait_status

DAY_MS = 86_400_000


def stored_ids(client: Client, project: str) -> list[str]:
    return [s["sessionId"] for s in client.call("session.list", {"projectId": project})["sessions"]]


def run_to_end(client: Client, sub: Subscriber, project: str) -> str:
    sid = start_mock(client, project)["sessionId"]
    wait_status(sub, sid)
    return sid


def test_retention_by_count_keeps_newest(client: Client, subscriber: Subscriber) -> None:
    set_setting(client, "session_retention_count", "2")
    ids = [run_to_end(client, subscriber, "r") for _ in range(4)]
    poll(lambda: stored_ids(client, "r") == [ids[3], ids[2]])
    # other projects are counted separately
    other = run_to_end(client, subscriber, "other")
    poll(lambda: stored_ids(client, "other") == [other])
    assert stored_ids(client, "r") == [ids[3], ids[2]]


def test_retention_by_age_spares_running_sessions(
    daemon: DaemonProcess, client: Client, subscriber: Subscriber
) -> None:
    old = run_to_end(client, subscriber, "aged")
    client.call("session.clear", {"projectId": "aged"})
    running = start_mock(client, "busy", hang=True)["sessionId"]
    conn = apsw.Connection(str(daemon.data_dir / "corral.db"))
    conn.set_busy_timeout(5000)
    long_ago = int(time.time() * 1000) - 40 * DAY_MS
    with conn:
        conn.execute(
            "UPDATE sessions SET updated_at = ? WHERE session_id IN (?, ?)",
            (long_ago, old, running),
        )
    conn.close()
    # a session ending triggers retention
    run_to_end(client, subscriber, "trigger")
    poll(lambda: stored_ids(client, "aged") == [])
    assert stored_ids(client, "busy") == [running]
    assert client.call("session.get", {"projectId": "busy"})["session"]["status"] == "running"


def test_retention_setting_change_applies_at_once(client: Client, subscriber: Subscriber) -> None:
    ids = [run_to_end(client, subscriber, "s") for _ in range(3)]
    assert stored_ids(client, "s") == ids[::-1]
    set_setting(client, "session_retention_count", "1")
    poll(lambda: stored_ids(client, "s") == [ids[2]])


def test_stall_notification(client: Client, subscriber: Subscriber) -> None:
    set_setting(client, "stall_timeout_ms", "1000")
    sid = start_mock(client, "st", hang=True)["sessionId"]
    _t, frame = subscriber.wait_for(
        lambda _t, f: f["event"] == "notification" and f["data"]["kind"] == "agent_stalled",
        10,
    )
    note = frame["data"]
    assert note["variant"] == "warning" and note["sessionId"] == sid
    assert frame["projectId"] == "st"
    health = client.call("health.get", {"projectId": "st"})
    assert health["projects"][0]["stalled"] is True
    assert health["aggregates"]["stalled"] == 1
    listed = client.call("notifications.list", {})["notifications"]
    assert listed[0]["kind"] == "agent_stalled"


def test_no_stall_while_output_flows(client: Client, subscriber: Subscriber) -> None:
    set_setting(client, "stall_timeout_ms", "1000")
    # 3 turns x (thinking, text, 2 x tool) lines at 150 ms: ~2.5 s of steady output
    sid = start_mock(client, "flow", delayMs=150, turns=3)["sessionId"]
    wait_status(subscriber, sid, timeout=30)
    kinds = [n["kind"] for n in client.call("notifications.list", {})["notifications"]]
    assert "agent_stalled" not in kinds
    assert "agent_complete" in kinds


def test_cleanup_timer_removes_session_from_memory_only(
    client: Client, subscriber: Subscriber
) -> None:
    set_setting(client, "cleanup_grace_ms", "300")
    sid = run_to_end(client, subscriber, "c")
    poll(lambda: client.call("session.get", {"projectId": "c"})["session"] is None, timeout=5)
    assert client.call("daemon.info")["sessions"]["live"] == 0
    stored = client.call("session.load", {"projectId": "c"})["session"]
    assert stored["sessionId"] == sid and stored["status"] == "done"
    assert client.call("session.messages.load", {"sessionId": sid})["lastSeqId"] == 9


def test_cleanup_waits_for_the_grace(client: Client, subscriber: Subscriber) -> None:
    set_setting(client, "cleanup_grace_ms", "1500")
    sid = run_to_end(client, subscriber, "g")
    assert client.call("session.get", {"projectId": "g"})["session"]["sessionId"] == sid
    time.sleep(0.5)
    assert client.call("session.get", {"projectId": "g"})["session"] is not None
    poll(lambda: client.call("session.get", {"projectId": "g"})["session"] is None, timeout=5)

"""Supervision through a real daemon: Health, attention, notifications, file conflicts.

Mock sessions script exactly which files they write (`tools`) and how many
tokens they report (`usage`), as the contract's mock keys allow.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from corral.protocol.client import Client, Subscriber
from corral.supervisor.background import DaemonProcess
from tests.conftest import DaemonFactory
from tests.integration.helpers import poll, set_setting, start_mock, wait_status


def write(path: str) -> dict[str, Any]:
    return {"name": "Write", "input": {"file_path": path, "content": "x"}}


def start_in(client: Client, project: str, cwd: Path, **config: Any) -> str:
    params = {
        "projectId": project,
        "provider": "mock",
        "prompt": "work",
        "cwd": str(cwd),
        "providerConfig": {"delayMs": 0, **config},
    }
    return str(client.call("agent.start", params)["sessionId"])


def until_done(sub: Subscriber, session_id: str, timeout: float = 20.0) -> list[Any]:
    """Every event received until the session ends (inclusive)."""
    out: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    while True:
        got = sub.recv(max(0.0, deadline - time.monotonic()))
        assert got is not None, "the session did not end in time"
        out.append(got)
        data = got[1]["data"]
        if (
            got[1]["event"] == "agent.status"
            and data.get("sessionId") == session_id
            and data.get("status") in ("done", "error")
        ):
            return out


def drain(sub: Subscriber, seconds: float) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        got = sub.recv(left)
        if got is not None:
            out.append(got)
    return out


def test_two_projects_writing_one_file_conflict_once_each(
    client: Client, subscriber: Subscriber, short_tmp: Path
) -> None:
    work, other = short_tmp / "work", short_tmp / "other"
    (work / "src").mkdir(parents=True)
    (other / "src").mkdir(parents=True)
    link = short_tmp / "link"
    link.symlink_to(work, target_is_directory=True)
    a = start_in(client, "a", work, tools=[write("src/app.py")])
    events = until_done(subscriber, a)
    b = start_in(client, "b", work, tools=[write("./src/../src/app.py")])
    events += until_done(subscriber, b)
    c = start_in(client, "c", other, tools=[write("src/app.py")])
    events += until_done(subscriber, c)
    events += drain(subscriber, 1.5)
    conflicts = [(t, f) for t, f in events if f["event"] == "conflict"]
    notes = [f for _t, f in events if f["event"] == "notification"]
    target = str((work / "src" / "app.py").resolve())
    assert sorted(f["projectId"] for _t, f in conflicts) == ["a", "b"]
    for topic, frame in conflicts:
        assert topic == f"project/{frame['projectId']}/conflict"
        data = frame["data"]
        assert data["path"] == target and sorted(data["sessionIds"]) == sorted([a, b])
        assert sorted(data["projectIds"]) == ["a", "b"] and data["acknowledged"] is False
    assert [n["data"]["kind"] for n in notes].count("conflict") == 1
    listed = client.call("conflicts.list")["conflicts"]
    assert sorted((c["projectId"], c["path"]) for c in listed) == [("a", target), ("b", target)]
    health = {h["projectId"]: h for h in client.call("health.get")["projects"]}
    assert health["a"]["openConflicts"] == 1 and health["c"]["openConflicts"] == 0
    assert health["a"]["attention"]["score"] == 70

    # a fourth project writing the same file through a symlinked directory joins
    d = start_in(client, "d", link, tools=[write("src/app.py")])
    wait_status(subscriber, d)
    rows = client.call("conflicts.list", {"projectId": "d"})["conflicts"]
    assert [r["path"] for r in rows] == [target]
    # later writes by the same sessions publish nothing new
    assert client.call("conflicts.ack", {"projectId": "a"}) == {"acknowledged": 1}
    assert client.call("conflicts.list", {"projectId": "a"}) == {"conflicts": []}


def test_a_bash_redirection_conflicts_with_an_edit(
    client: Client, subscriber: Subscriber, short_tmp: Path
) -> None:
    bash = {"name": "Bash", "input": {"command": "echo x > notes.md"}}
    edit = {"name": "Edit", "input": {"file_path": str(short_tmp / "notes.md")}}
    wait_status(subscriber, start_in(client, "sh", short_tmp, tools=[bash]))
    wait_status(subscriber, start_in(client, "ed", short_tmp, tools=[edit]))
    listed = client.call("conflicts.list")["conflicts"]
    assert {c["projectId"] for c in listed} == {"sh", "ed"}
    assert {c["path"] for c in listed} == {str((short_tmp / "notes.md").resolve())}


def test_a_hung_tool_is_stalled_and_named(
    client: Client, subscriber: Subscriber, short_tmp: Path
) -> None:
    set_setting(client, "stall_timeout_ms", "1000")
    tools = [{"name": "Bash", "input": {"command": "sleep 600"}, "hang": True}]
    start_in(client, "hung", short_tmp, tools=tools)
    _t, frame = subscriber.wait_for(
        lambda _t, f: f["event"] == "notification" and f["data"]["kind"] == "agent_stalled", 10
    )
    assert "Bash" in frame["data"]["message"]
    health = client.call("health.get", {"projectId": "hung"})["projects"][0]
    assert health["activity"] == "stalled" and health["stalled"] is True
    assert health["activeTool"] == "Bash" and health["toolSince"] is not None
    assert health["attention"]["score"] == 100 and "Bash" in health["attention"]["reason"]
    time.sleep(1.5)
    notes = client.call("notifications.list")["notifications"]
    assert [n["kind"] for n in notes].count("agent_stalled") == 1
    assert client.call("health.get")["aggregates"]["stalled"] == 1
    client.call("agent.stop", {"projectId": "hung"}, timeout=20)


def test_context_pressure_from_the_reported_usage(
    client: Client, subscriber: Subscriber, short_tmp: Path
) -> None:
    sid = start_in(client, "ctx", short_tmp, usage={"input_tokens": 185_000}, toolCalls=0)
    wait_status(subscriber, sid)
    health = poll(
        lambda: next(
            (
                h
                for h in client.call("health.get", {"projectId": "ctx"})["projects"]
                if h["contextTokens"] >= 185_000
            ),
            None,
        )
    )
    assert health["contextLimit"] == 200_000
    assert health["contextPressure"] > 0.9
    assert health["attention"]["score"] == 80


def test_notifications_list_answers_the_newest_hundred(
    client: Client, subscriber: Subscriber
) -> None:
    for i in range(150):
        sid = start_mock(client, f"q{i}", toolCalls=0)["sessionId"]
        wait_status(subscriber, sid)
    notes = client.call("notifications.list", {"limit": 100})["notifications"]
    assert len(notes) == 100
    assert notes[0]["projectId"] == "q149" and notes[-1]["projectId"] == "q50"
    assert [n["ts"] for n in notes] == sorted((n["ts"] for n in notes), reverse=True)


def test_a_burst_of_tool_calls_gives_at_most_two_health_events(
    client: Client, subscriber: Subscriber, short_tmp: Path
) -> None:
    # the mock takes at most 100 scripted calls per turn: two turns of 100
    tools = [{"name": "Read", "input": {"file_path": f"f{i}.py"}} for i in range(100)]
    began = time.monotonic()
    sid = start_in(client, "burst", short_tmp, tools=tools, turns=2)
    seen = until_done(subscriber, sid)
    took = time.monotonic() - began
    events = [f for _t, f in seen + drain(subscriber, 1.5) if f["event"] == "health"]
    # at most one health event per second: 200 calls give at most 2 per second
    stamps = [f["ts"] for f in events]
    assert all(b - a >= 950 for a, b in itertools.pairwise(stamps)), stamps
    assert len(events) <= int(took) + 2
    final = client.call("health.get", {"projectId": "burst"})["projects"][0]
    assert final["toolCalls"] == {"started": 200, "finished": 200}
    assert events, "no health event at all"
    last = events[-1]["data"]
    assert last["toolCalls"] == final["toolCalls"] and last["status"] == "done"
    assert last["costUsd"] == final["costUsd"]


def test_a_configured_provider_binary_missing_at_start_is_a_system_notification(
    daemon_factory: DaemonFactory,
) -> None:
    first = daemon_factory("m")
    settings = '{"codex": {"config": {"bin": "/nonexistent/codex"}}}'
    with first.client() as client:
        set_setting(client, "provider_settings", settings)
        assert client.call("notifications.list") == {"notifications": []}
    first.stop()
    again = daemon_factory("m")
    with again.client() as client:
        notes = client.call("notifications.list")["notifications"]
    assert [n["kind"] for n in notes] == ["system"]
    assert notes[0]["message"].startswith("codex is not available: ")
    assert "/nonexistent/codex" in notes[0]["message"]


def test_the_operator_log_names_project_then_session(
    daemon: DaemonProcess, client: Client, subscriber: Subscriber
) -> None:
    sid = start_mock(client, "oplog", toolCalls=0)["sessionId"]
    wait_status(subscriber, sid)
    log = poll(lambda: (t := daemon.log_tail()) and "turn ended" in t and t)
    assert f"session started project=oplog session={sid} provider=mock" in log
    assert f"turn ended project=oplog session={sid} status=done" in log

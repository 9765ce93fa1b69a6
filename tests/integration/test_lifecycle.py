"""A mock session's whole life through a real daemon: start, stream, prompt,
stop, cleanup, restore, prompt again."""

from __future__ import annotations

import time
from typing import Any

import pytest

from corral.protocol.client import Client, Subscriber
from corral.protocol.errors import NoSession
from corral.supervisor.background import DaemonProcess
from tests.integration.helpers import all_messages, poll, set_setting, start_mock, wait_status
from tests.support.proc import descendants, read_stat, wait_until


def collect_messages(
    sub: Subscriber, session_id: str, until_status: tuple[str, ...], timeout: float = 20.0
) -> tuple[list[dict[str, Any]], str]:
    messages: list[dict[str, Any]] = []
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = sub.recv(0.5)
        if got is None:
            continue
        _t, frame = got
        data = frame["data"]
        if data.get("sessionId") != session_id:
            continue
        if frame["event"] == "agent.message":
            messages.extend(data["messages"])
        elif frame["event"] == "agent.status" and data["status"] in until_status:
            return messages, data["status"]
    raise TimeoutError("no final status")


def test_start_streams_gapless_seq_ids(client: Client, subscriber: Subscriber) -> None:
    started = start_mock(client)
    assert started["status"] == "running"
    messages, status = collect_messages(subscriber, started["sessionId"], ("done", "error"))
    assert status == "done"
    seqs = [m["seqId"] for m in messages]
    assert seqs == list(range(1, len(seqs) + 1))
    roles = [m["role"] for m in messages]
    assert roles == [
        "user",
        "system",
        "thinking",
        "assistant",
        "tool-call",
        "tool-result",
        "tool-call",
        "tool-result",
        "assistant",
    ]
    assert messages[0]["content"] == "hello"
    assert subscriber.gaps == 0


def test_follow_up_prompt_stop_and_cleanup(client: Client, subscriber: Subscriber) -> None:
    started = start_mock(client)
    sid = started["sessionId"]
    wait_status(subscriber, sid)
    reply = client.call("agent.prompt", {"projectId": "p1", "prompt": "again"})
    assert reply["sessionId"] == sid and reply["status"] == "running"
    assert reply["seqId"] == 10
    wait_status(subscriber, sid)
    session = client.call("session.get", {"projectId": "p1"})["session"]
    assert session["status"] == "done" and session["lastSeqId"] == 18
    assert session["costUsd"] > 0

    set_setting(client, "cleanup_grace_ms", "0")
    # the cleanup timer was armed with the old grace; a new terminal state re-arms it
    client.call("agent.prompt", {"projectId": "p1", "prompt": "third"})
    wait_status(subscriber, sid)
    poll(lambda: client.call("session.get", {"projectId": "p1"})["session"] is None)
    with pytest.raises(NoSession):
        client.call("agent.prompt", {"projectId": "p1", "prompt": "x"})

    # a restored session gets the (restored) cleanup grace like any ended session
    set_setting(client, "cleanup_grace_ms", "60000")
    restored = client.call("session.restore", {"projectId": "p1"})
    assert restored["restored"] is True and restored["session"]["sessionId"] == sid
    client.call("agent.prompt", {"projectId": "p1", "prompt": "after restore"})
    wait_status(subscriber, sid)
    messages = all_messages(client, sid)
    assert [m["seqId"] for m in messages] == list(range(1, len(messages) + 1))
    # the mock resumed its conversation: this is its fourth prompt
    assert "turn 4" in messages[-1]["content"]


def start_hanging(client: Client, subscriber: Subscriber) -> str:
    """Start a `hang` mock in p1; return its session id once it has started."""
    sid: str = start_mock(client, hang=True)["sessionId"]
    subscriber.wait_for(
        lambda _t, f: (
            f["event"] == "agent.message"
            and any(m["role"] == "system" for m in f["data"]["messages"])
        ),
        10,
    )
    return sid


def test_stop_a_hanging_turn(client: Client, subscriber: Subscriber) -> None:
    sid = start_hanging(client, subscriber)
    stopped = client.call("agent.stop", {"projectId": "p1"}, timeout=15)
    assert stopped == {"sessionId": sid, "status": "done"}
    messages = all_messages(client, sid)
    assert messages[-1]["role"] == "system" and messages[-1]["content"] == "stopped"
    session = client.call("session.get", {"projectId": "p1"})["session"]
    assert session["status"] == "done" and "error" not in session
    # stopping a finished session just reports it
    assert client.call("agent.stop", {"projectId": "p1"}) == {"sessionId": sid, "status": "done"}


def test_a_stop_cancels_a_queued_prompt_and_nothing_runs_after_it(
    daemon: DaemonProcess, client: Client, subscriber: Subscriber
) -> None:
    sid = start_hanging(client, subscriber)
    assert daemon.proc is not None
    provider = [(pid, read_stat(pid)) for pid in descendants(daemon.proc.pid)]
    assert provider
    reply = client.call("agent.prompt", {"projectId": "p1", "prompt": "queued"})
    assert reply["status"] == "running"
    stopped = client.call("agent.stop", {"projectId": "p1"}, timeout=15)
    assert stopped == {"sessionId": sid, "status": "done"}
    # The provider that held the queued prompt is closed: it cannot run it.
    assert wait_until(lambda: all(read_stat(pid) != st for pid, st in provider), 10)
    time.sleep(1.0)
    messages = all_messages(client, sid)
    assert [m["content"] for m in messages[-2:]] == [
        "stopped",
        "1 queued prompt(s) cancelled by the stop",
    ]
    assert not any(m["content"].startswith("Session started") for m in messages[3:])
    session = client.call("session.get", {"projectId": "p1"})["session"]
    assert session["status"] == "done" and session["lastSeqId"] == len(messages)
    # The next prompt resumes the conversation in a new process.
    client.call("agent.prompt", {"projectId": "p1", "prompt": "again"})
    assert client.call("agent.stop", {"projectId": "p1"}, timeout=15)["status"] == "done"
    after = all_messages(client, sid)
    assert [m["content"] for m in after if m["role"] == "user"] == ["hello", "queued", "again"]
    assert after[-1]["content"] == "stopped"


def test_prompt_during_a_turn_is_queued_and_answered(
    client: Client, subscriber: Subscriber
) -> None:
    sid = start_mock(client, delayMs=30)["sessionId"]
    reply = client.call("agent.prompt", {"projectId": "p1", "prompt": "while busy"})
    assert reply["seqId"] == 2 and reply["status"] == "running"
    _messages, status = collect_messages(subscriber, sid, ("done", "error"), timeout=30)
    assert status == "done"
    stored = all_messages(client, sid)
    users = [m["content"] for m in stored if m["role"] == "user"]
    assert users == ["hello", "while busy"]
    # the session was done only after the second answer
    assert sum(1 for m in stored if m["role"] == "system") == 2
    assert stored[-1]["role"] == "assistant" and "while busy" in stored[-1]["content"]

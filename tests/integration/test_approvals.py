"""Approvals through a real daemon, with the mock agent asking as Claude Code does."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from corral.protocol.client import Client, Subscriber
from corral.protocol.errors import NotFound
from tests.conftest import DaemonFactory
from tests.integration.helpers import all_messages, poll, set_setting, wait_status

ASK = {"name": "Bash", "input": {"command": "echo hi > out.txt"}, "ask": True}


def start_asking(client: Client, project: str, cwd: Path, mode: str = "default") -> str:
    params = {
        "projectId": project,
        "provider": "mock",
        "prompt": "write out.txt",
        "cwd": str(cwd),
        "permissionMode": mode,
        "providerConfig": {"delayMs": 0, "tools": [ASK]},
    }
    return str(client.call("agent.start", params)["sessionId"])


def requested(sub: Subscriber, timeout: float = 15.0) -> dict[str, Any]:
    _t, frame = sub.wait_for(lambda _t, f: f["event"] == "approval.requested", timeout)
    return dict(frame["data"])


def resolved(sub: Subscriber, timeout: float = 15.0) -> dict[str, Any]:
    _t, frame = sub.wait_for(lambda _t, f: f["event"] == "approval.resolved", timeout)
    return dict(frame["data"])


def test_allow_runs_the_call_and_a_second_answer_is_not_found(
    client: Client, subscriber: Subscriber, short_tmp: Path
) -> None:
    sid = start_asking(client, "ap", short_tmp)
    approval = requested(subscriber)
    assert approval["summary"] == "echo hi > out.txt" and approval["toolName"] == "Bash"
    assert approval["sessionId"] == sid and approval["projectId"] == "ap"
    assert client.call("approvals.list", {"projectId": "ap"})["approvals"] == [approval]
    health = client.call("health.get", {"projectId": "ap"})["projects"][0]
    assert health["activity"] == "waiting" and health["attention"]["score"] == 95
    assert "echo hi > out.txt" in health["attention"]["reason"]
    notes = client.call("notifications.list")["notifications"]
    assert [n["kind"] for n in notes].count("approval_needed") == 1
    answer = {"projectId": "ap", "approvalId": approval["approvalId"], "decision": "allow"}
    assert client.call("agent.approve", answer) == {
        "approvalId": approval["approvalId"],
        "decision": "allow",
    }
    assert resolved(subscriber) == {
        "approvalId": approval["approvalId"],
        "sessionId": sid,
        "decision": "allow",
        "by": "client",
    }
    assert wait_status(subscriber, sid)["status"] == "done"
    with pytest.raises(NotFound):
        client.call("agent.approve", answer)
    texts = [m["content"] for m in all_messages(client, sid)]
    assert "approval requested: echo hi > out.txt" in texts
    assert "allowed by a client: echo hi > out.txt" in texts
    assert client.call("approvals.list") == {"approvals": []}


def test_deny_tells_the_agent_why(client: Client, subscriber: Subscriber, short_tmp: Path) -> None:
    sid = start_asking(client, "dn", short_tmp)
    approval = requested(subscriber)
    client.call(
        "agent.approve",
        {
            "projectId": "dn",
            "approvalId": approval["approvalId"],
            "decision": "deny",
            "message": "not in this directory",
        },
    )
    assert resolved(subscriber)["decision"] == "deny"
    assert wait_status(subscriber, sid)["status"] == "done"
    messages = all_messages(client, sid)
    result = next(m for m in messages if m["role"] == "tool-result")
    assert "not in this directory" in result["content"]
    assert "denied: not in this directory" in [m["content"] for m in messages]


def test_an_unanswered_approval_times_out(
    client: Client, subscriber: Subscriber, short_tmp: Path
) -> None:
    set_setting(client, "approval_timeout_ms", "1000")
    sid = start_asking(client, "to", short_tmp)
    approval = requested(subscriber)
    done = resolved(subscriber)
    assert done == {
        "approvalId": approval["approvalId"],
        "sessionId": sid,
        "decision": "deny",
        "by": "timeout",
    }
    wait_status(subscriber, sid)
    assert "denied (timeout): no answer within 1 s" in [
        m["content"] for m in all_messages(client, sid)
    ]


def test_stop_while_waiting_denies_by_stop(
    client: Client, subscriber: Subscriber, short_tmp: Path
) -> None:
    sid = start_asking(client, "st", short_tmp)
    requested(subscriber)
    assert client.call("agent.stop", {"projectId": "st"}, timeout=20)["status"] == "done"
    assert resolved(subscriber)["by"] == "stop"
    assert client.call("approvals.list") == {"approvals": []}
    assert client.call("session.get", {"projectId": "st"})["session"]["sessionId"] == sid


def test_bypass_permissions_never_asks(
    client: Client, subscriber: Subscriber, short_tmp: Path
) -> None:
    sid = start_asking(client, "by", short_tmp, mode="bypassPermissions")
    assert wait_status(subscriber, sid)["status"] == "done"
    assert client.call("approvals.list") == {"approvals": []}
    assert "approval requested" not in " ".join(m["content"] for m in all_messages(client, sid))


def test_a_daemon_killed_while_waiting_denies_by_restart(
    daemon_factory: DaemonFactory, short_tmp: Path
) -> None:
    first = daemon_factory("k")
    with first.client() as client, Subscriber(first.events_url) as sub:
        sub.wait_connected(client)
        sid = start_asking(client, "kk", short_tmp)
        approval = requested(sub)
    os.kill(first.pid, signal.SIGKILL)
    first.proc.wait(10)
    again = daemon_factory("k")
    with again.client() as client:
        session = poll(lambda: client.call("session.load", {"projectId": "kk"})["session"])
        assert session["sessionId"] == sid and session["status"] == "error"
        assert session["error"] == "interrupted: daemon restarted"
        texts = [m["content"] for m in all_messages(client, sid)]
        assert "denied (daemon restarted): echo hi > out.txt" in texts
        assert texts[-1] == "interrupted: daemon restarted"
        assert client.call("approvals.list") == {"approvals": []}
    assert approval["approvalId"]

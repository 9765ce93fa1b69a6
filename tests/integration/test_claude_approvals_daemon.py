"""Approvals with the real Claude Code CLI through the daemon (permission mode
``default``, the fake Anthropic server scripting ``echo hi > out.txt``)."""

from __future__ import annotations

import json
from typing import Any

from corral.protocol.client import Client, Subscriber
from tests.conftest import DaemonFactory
from tests.integration.helpers import all_messages, set_setting
from tests.integration.test_claude_daemon import QUIET_ENV, Rig
from tests.integration.test_claude_daemon import rig as rig_fixture  # noqa: F401
from tests.support.claude_fixtures import FakeAnthropicFactory
from tests.support.fake_anthropic import FakeAnthropic, script_bash, tool_results

COMMAND = "echo hi > out.txt"
TIMEOUT = 30.0


def configure(client: Client, server: FakeAnthropic) -> None:
    env = dict(QUIET_ENV, ANTHROPIC_BASE_URL=server.base_url)
    set_setting(client, "provider_settings", json.dumps({"claude": {"config": {"env": env}}}))


def start(client: Client, rig: Rig, project: str) -> str:
    params = {
        "projectId": project,
        "provider": "claude",
        "prompt": f"Run {COMMAND}",
        "cwd": str(rig.work),
        "permissionMode": "default",
    }
    return str(client.call("agent.start", params, timeout=TIMEOUT)["sessionId"])


def next_event(sub: Subscriber, name: str, session_id: str) -> dict[str, Any]:
    _t, frame = sub.wait_for(
        lambda _t, f: f["event"] == name and f["data"].get("sessionId") == session_id, TIMEOUT
    )
    return dict(frame["data"])


def ended(sub: Subscriber, session_id: str) -> str:
    data = next_event_status(sub, session_id)
    return str(data["status"])


def next_event_status(sub: Subscriber, session_id: str) -> dict[str, Any]:
    _t, frame = sub.wait_for(
        lambda _t, f: (
            f["event"] == "agent.status"
            and f["data"].get("sessionId") == session_id
            and f["data"].get("status") in ("done", "error")
        ),
        TIMEOUT,
    )
    return dict(frame["data"])


def test_allow_runs_the_command_and_deny_tells_the_model(
    rig_fixture: Rig,  # noqa: F811 (the fixture imported above)
    daemon_factory: DaemonFactory,
    fake_anthropic: FakeAnthropicFactory,
) -> None:
    rig = rig_fixture
    server = fake_anthropic(
        [*script_bash(COMMAND, "Done."), *script_bash(COMMAND, "It was refused.")]
    )
    daemon = daemon_factory("approve", env=rig.env)
    with daemon.client() as client, Subscriber(daemon.events_url) as sub:
        sub.wait_connected(client)
        configure(client, server)
        sid = start(client, rig, "ca")
        approval = next_event(sub, "approval.requested", sid)
        assert approval["toolName"] == "Bash" and COMMAND in approval["summary"]
        health = client.call("health.get", {"projectId": "ca"})["projects"][0]
        assert health["activity"] == "waiting" and health["attention"]["score"] == 95
        kinds = [n["kind"] for n in client.call("notifications.list")["notifications"]]
        assert "approval_needed" in kinds
        client.call(
            "agent.approve",
            {"projectId": "ca", "approvalId": approval["approvalId"], "decision": "allow"},
        )
        assert ended(sub, sid) == "done"
        assert (rig.work / "out.txt").read_text() == "hi\n"

        (rig.work / "out.txt").unlink()
        client.call("agent.prompt", {"projectId": "ca", "prompt": f"Run {COMMAND} again"})
        second = next_event(sub, "approval.requested", sid)
        client.call(
            "agent.approve",
            {
                "projectId": "ca",
                "approvalId": second["approvalId"],
                "decision": "deny",
                "message": "not now, please",
            },
        )
        assert ended(sub, sid) == "done"
        assert not (rig.work / "out.txt").exists()
        results = tool_results(server.requests[-1]["body"])
        assert any("not now, please" in json.dumps(r) for r in results)
        texts = [m["content"] for m in all_messages(client, sid)]
        assert "denied: not now, please" in texts
        assert any(t.startswith("allowed by a client: ") for t in texts)

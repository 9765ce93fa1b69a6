"""Every RPC method, every error code and the event stream of the contract,
through a real daemon process (one per test) and the mock provider."""

from __future__ import annotations

import itertools
import os
import stat
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from corral.protocol.client import Client, Subscriber
from corral.protocol.errors import (
    InvalidParams,
    NoSession,
    NotFound,
    Overloaded,
    ProviderUnavailable,
    RpcError,
    SessionRunning,
    ShuttingDown,
)
from corral.protocol.schema import validate
from corral.supervisor.background import DaemonProcess
from tests.conftest import DaemonFactory
from tests.integration.helpers import poll, set_setting, start_mock
from tests.support.contract import CONTRACT_METHOD_ERRORS, CONTRACT_METHODS

REASONS = {
    "parse_error",
    "invalid_request",
    "too_large",
    "method_not_found",
    "invalid_params",
    "internal_error",
    "no_session",
    "session_running",
    "start_in_progress",
    "provider_unavailable",
    "not_found",
    "overloaded",
    "shutting_down",
}
CONTRACT_EVENTS = {
    "agent.message",
    "agent.status",
    "agent.cost",
    "notification",
    "health",
    "conflict",
    "approval.requested",
    "approval.resolved",
    "daemon.started",
    "daemon.stopping",
    "settings.changed",
    "daemon.heartbeat",
}
# Events corral publishes beyond the contract (documented in docs/protocol.md):
# agent.delta, the unstored preview of a message still streaming.
CORRAL_EVENTS = {"agent.delta"}
DAEMON_EVENTS = {"daemon.started", "daemon.stopping", "settings.changed", "daemon.heartbeat"}
SESSION_KEYS = {
    "sessionId",
    "projectId",
    "provider",
    "status",
    "model",
    "costUsd",
    "inputTokens",
    "outputTokens",
    "createdAt",
    "updatedAt",
    "messageCount",
    "lastSeqId",
}
MESSAGE_KEYS = {"id", "seqId", "role", "content", "timestamp"}
ROLES = {"user", "assistant", "tool-call", "tool-result", "thinking", "system"}
NOTIFICATION_KEYS = {"id", "variant", "kind", "message", "ts"}
SETTINGS_DEFAULTS = {
    "permission_mode": "default",
    "system_prompt_template": "",
    "default_cwd": "",
    "provider_settings": "{}",
    "session_retention_count": "5",
    "session_retention_days": "30",
    "stall_timeout_ms": "900000",
    "cleanup_grace_ms": "60000",
    "max_live_sessions": "256",
    "approval_timeout_ms": "0",
    "desktop_notifications": "on",
}
TERMINAL = ("done", "error")
DEFAULT_RUN = 9  # messages of a default mock run: user, system, thinking, text, 2 x tool, text


# --------------------------------------------------------------------------- helpers


def now_ms() -> int:
    return int(time.time() * 1000)


def health_status(client: Client, project: str) -> str | None:
    status: str | None = client.call("health.get", {"projectId": project})["projects"][0]["status"]
    return status


def wait_ended(client: Client, project: str, timeout: float = 15.0) -> str:
    """Wait until the registry (not only storage) sees the project's session ended."""
    status: str = poll(
        lambda: (s := health_status(client, project)) in TERMINAL and s, timeout=timeout
    )
    return status


def run_mock(client: Client, project: str, **config: Any) -> str:
    """A default mock run to its end; its sessionId."""
    sid: str = start_mock(client, project, **config)["sessionId"]
    wait_ended(client, project)
    return sid


def start_hang(client: Client, project: str) -> str:
    sid: str = start_mock(client, project, hang=True)["sessionId"]
    return sid


def listed(client: Client, **params: Any) -> list[str]:
    return [s["sessionId"] for s in client.call("session.list", params)["sessions"]]


def rpc_error(exc: RpcError, code: int, reason: str) -> None:
    assert exc.code == code, (exc.code, exc.data)
    assert exc.data["reason"] == reason, exc.data
    assert exc.message


def start_params(project: str, provider: str = "mock", **extra: Any) -> dict[str, Any]:
    return {"projectId": project, "provider": provider, "prompt": "hi", **extra}


# --------------------------------------------------------------------------- daemon.*


def test_ping_and_info(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory()
    with daemon.client() as client:
        ping = client.call("daemon.ping")
        assert ping["pong"] is True
        assert isinstance(ping["boot"], str) and ping["boot"]
        assert abs(ping["time"] - now_ms()) < 60_000

        info = client.call("daemon.info")
        assert {
            "version",
            "boot",
            "pid",
            "startedAt",
            "endpoints",
            "dataDir",
            "sessions",
            "providers",
        } <= info.keys()
        assert info["boot"] == ping["boot"]
        assert isinstance(info["version"], str) and info["version"]
        assert info["pid"] == daemon.pid
        assert now_ms() - 120_000 < info["startedAt"] <= now_ms()
        assert info["endpoints"] == {"rpc": daemon.rpc_url, "events": daemon.events_url}
        assert Path(info["dataDir"]) == daemon.data_dir
        assert info["sessions"] == {"live": 0, "stored": 0}
        assert {"claude", "codex", "ollama", "mock"} <= info["providers"].keys()
        for name, provider in info["providers"].items():
            assert isinstance(provider["available"], bool), name
            assert isinstance(provider["detail"], str) and provider["detail"], name
        assert info["providers"]["mock"]["available"] is True
        assert info["providers"]["codex"]["available"] is False
        assert info["providers"]["ollama"]["available"] is False
    # boot identifies one run: a restart on the same data gets a new one
    daemon.stop()
    again = daemon_factory()
    with again.client() as client:
        assert client.call("daemon.ping")["boot"] not in ("", ping["boot"])


def test_info_session_counts_follow_sessions(client: Client) -> None:
    start_hang(client, "a")
    assert client.call("daemon.info")["sessions"] == {"live": 1, "stored": 1}
    done = run_mock(client, "b")
    assert client.call("daemon.info")["sessions"] == {"live": 2, "stored": 2}
    assert client.call("session.clear", {"projectId": "b"}) == {"cleared": True}
    assert client.call("daemon.info")["sessions"] == {"live": 1, "stored": 2}
    assert client.call("session.purge", {"sessionId": done}) == {"purged": True}
    assert client.call("daemon.info")["sessions"] == {"live": 1, "stored": 1}


def test_describe_lists_the_contract(client: Client) -> None:
    described = client.call("rpc.describe")
    assert described["protocolVersion"] == 1
    methods = described["methods"]
    assert set(methods) == CONTRACT_METHODS
    for name, spec in methods.items():
        assert spec["params"]["type"] == "object", name
        # unknown params are refused, so the schema is closed
        assert spec["params"].get("additionalProperties") is False, name
        assert isinstance(spec["result"], dict) and spec["result"], name
        assert set(spec["errors"]) <= REASONS, name
        assert CONTRACT_METHOD_ERRORS.get(name, set()) <= set(spec["errors"]), name
    start = methods["agent.start"]["params"]
    assert set(start["required"]) == {"projectId", "provider", "prompt"}
    assert {
        "cwd",
        "model",
        "systemPrompt",
        "maxTurns",
        "permissionMode",
        "claudeConfigDir",
        "extraEnv",
        "additionalDirectories",
        "worktreeName",
        "providerConfig",
        "idempotencyKey",
    } <= start["properties"].keys()
    assert set(described["events"]) == CONTRACT_EVENTS | CORRAL_EVENTS
    assert all(isinstance(s, dict) and s for s in described["events"].values())

    # what the daemon answers conforms to what it describes
    sid = run_mock(client, "d")
    calls: list[tuple[str, dict[str, Any] | None]] = [
        ("daemon.ping", None),
        ("daemon.info", None),
        ("rpc.describe", None),
        ("session.get", {"projectId": "d"}),
        ("session.list", {}),
        ("session.load", {"projectId": "d"}),
        ("session.messages.load", {"sessionId": sid}),
        ("settings.getAll", None),
        ("health.get", {}),
        ("notifications.list", {}),
        ("conflicts.list", {}),
        ("conflicts.ack", {"projectId": "d"}),
        ("agent.stop", {"projectId": "d"}),
        ("session.restore", {"projectId": "d"}),
        ("agent.prompt", {"projectId": "d", "prompt": "more"}),
        ("settings.set", {"key": "permission_mode", "value": "plan"}),
        ("agent.start", start_params("e", providerConfig={"delayMs": 0})),
    ]
    for method, params in calls:
        result = client.call(method, params)
        validate(methods[method]["result"], result, method)
    wait_ended(client, "d")
    wait_ended(client, "e")
    validate(methods["session.clear"]["result"], client.call("session.clear", {"projectId": "e"}))
    validate(methods["session.purge"]["result"], client.call("session.purge", {"sessionId": sid}))
    validate(methods["project.purge"]["result"], client.call("project.purge", {"projectId": "e"}))


# --------------------------------------------------------------------------- agent.*


def test_start_result_and_dropped_env(client: Client) -> None:
    result = client.call(
        "agent.start",
        start_params(
            "p",
            providerConfig={"delayMs": 0},
            model="mock-7",
            extraEnv={
                "ANTHROPIC_API_KEY": "sk-secret",
                "CLAUDE_FOO": "1",
                "CLAUDE_CODE_EXPERIMENTAL_X": "1",
                "OTHER": "z",
            },
        ),
    )
    assert {"sessionId", "status", "model", "droppedEnv"} <= result.keys()
    assert result["status"] == "running"
    assert isinstance(result["sessionId"], str) and result["sessionId"]
    assert result["model"] == "mock-7"
    assert sorted(result["droppedEnv"]) == ["ANTHROPIC_API_KEY", "CLAUDE_FOO"]
    session = client.call("session.get", {"projectId": "p"})["session"]
    assert session.keys() >= SESSION_KEYS
    assert session["sessionId"] == result["sessionId"]
    assert session["projectId"] == "p" and session["provider"] == "mock"
    assert session["model"] == "mock-7"
    # without any refused name, droppedEnv is empty
    plain = start_mock(client, "q", prompt="x")
    assert plain["droppedEnv"] == []


def test_idempotent_start_returns_the_first_result(client: Client) -> None:
    params = start_params("p", providerConfig={"hang": True}, idempotencyKey="key-1")
    first = client.call("agent.start", params)
    # a retry gets the first answer, not session_running
    assert client.call("agent.start", params) == first
    with pytest.raises(SessionRunning):
        client.call("agent.start", {**params, "idempotencyKey": "key-2"})
    with pytest.raises(SessionRunning):
        client.call("agent.start", {k: v for k, v in params.items() if k != "idempotencyKey"})
    assert listed(client) == [first["sessionId"]]
    # still the first answer once that session has ended
    client.call("agent.stop", {"projectId": "p"}, timeout=15)
    assert client.call("agent.start", params) == first
    assert listed(client) == [first["sessionId"]]
    # a start without the key replaces the ended session
    other = start_mock(client, "p")
    assert other["sessionId"] != first["sessionId"]
    assert set(listed(client)) == {first["sessionId"], other["sessionId"]}


def test_no_session(client: Client) -> None:
    with pytest.raises(NoSession) as stop:
        client.call("agent.stop", {"projectId": "p"})
    rpc_error(stop.value, -32001, "no_session")
    with pytest.raises(NoSession) as prompt:
        client.call("agent.prompt", {"projectId": "p", "prompt": "hello"})
    rpc_error(prompt.value, -32001, "no_session")
    assert client.call("session.get", {"projectId": "p"}) == {"session": None}
    assert client.call("session.load", {"projectId": "p"}) == {"session": None}
    assert client.call("session.restore", {"projectId": "p"}) == {
        "restored": False,
        "session": None,
    }
    assert client.call("session.clear", {"projectId": "p"}) == {"cleared": False}
    assert client.call("session.list") == {"sessions": []}
    # a project whose session was cleared has no session either
    run_mock(client, "p")
    client.call("session.clear", {"projectId": "p"})
    with pytest.raises(NoSession):
        client.call("agent.prompt", {"projectId": "p", "prompt": "hello"})
    with pytest.raises(NoSession):
        client.call("agent.stop", {"projectId": "p"})


def test_stop_and_prompt(client: Client) -> None:
    sid = start_hang(client, "p")
    assert client.call("agent.stop", {"projectId": "p"}, timeout=15) == {
        "sessionId": sid,
        "status": "done",
    }
    stored = client.call("session.get", {"projectId": "p"})["session"]
    assert stored["status"] == "done"
    reply = client.call("agent.prompt", {"projectId": "p", "prompt": "go on"})
    assert reply == {"sessionId": sid, "status": "running", "seqId": stored["lastSeqId"] + 1}
    assert client.call("session.get", {"projectId": "p"})["session"]["status"] == "running"
    messages = client.call(
        "session.messages.load", {"sessionId": sid, "afterSeq": stored["lastSeqId"]}
    )["messages"]
    assert messages[0]["seqId"] == reply["seqId"]
    assert messages[0]["role"] == "user" and messages[0]["content"] == "go on"
    assert client.call("agent.stop", {"projectId": "p"}, timeout=15)["status"] == "done"


# --------------------------------------------------------------------------- session.*


def test_session_list(client: Client) -> None:
    s1 = run_mock(client, "a")
    s2 = run_mock(client, "b")
    s3 = run_mock(client, "a")
    s4 = start_hang(client, "c")
    sessions = client.call("session.list")["sessions"]
    assert [s["sessionId"] for s in sessions] == [s4, s3, s2, s1]
    for s in sessions:
        assert s.keys() >= SESSION_KEYS
    created = [s["createdAt"] for s in sessions]
    assert created == sorted(created, reverse=True)
    assert listed(client, projectId="a") == [s3, s1]
    assert listed(client, status="running") == [s4]
    assert listed(client, status="done") == [s3, s2, s1]
    assert listed(client, status="idle") == []
    assert listed(client, projectId="zz") == []
    assert listed(client, limit=2) == [s4, s3]
    assert listed(client, limit=1, status="done") == [s3]
    by_id = {s["sessionId"]: s for s in sessions}
    assert listed(client, before=by_id[s3]["createdAt"]) == [s2, s1]
    assert listed(client, before=by_id[s3]["createdAt"], projectId="a") == [s1]
    assert listed(client, before=by_id[s1]["createdAt"]) == []


def test_session_load(client: Client) -> None:
    assert client.call("session.load", {"projectId": "p"}) == {"session": None}
    s1 = run_mock(client, "p")
    assert client.call("session.clear", {"projectId": "p"}) == {"cleared": True}
    assert client.call("session.get", {"projectId": "p"}) == {"session": None}
    loaded = client.call("session.load", {"projectId": "p"})["session"]
    assert loaded["sessionId"] == s1 and loaded["status"] == "done"
    assert loaded.keys() >= SESSION_KEYS
    assert loaded["lastSeqId"] == DEFAULT_RUN and loaded["messageCount"] == DEFAULT_RUN
    s2 = start_hang(client, "p")
    assert client.call("session.load", {"projectId": "p"})["session"]["sessionId"] == s2
    assert client.call("session.load", {"projectId": "other"}) == {"session": None}


def test_session_messages_load(client: Client) -> None:
    sid = run_mock(client, "p", prompt="hello there")
    page = client.call("session.messages.load", {"sessionId": sid})
    assert page["lastSeqId"] == DEFAULT_RUN and page["hasMore"] is False
    messages = page["messages"]
    assert [m["seqId"] for m in messages] == list(range(1, DEFAULT_RUN + 1))
    for m in messages:
        assert m.keys() >= MESSAGE_KEYS
        assert m["role"] in ROLES
        assert isinstance(m["timestamp"], int)
    assert messages[0]["role"] == "user" and messages[0]["content"] == "hello there"
    assert len({m["id"] for m in messages}) == DEFAULT_RUN

    page = client.call("session.messages.load", {"sessionId": sid, "afterSeq": 3, "limit": 4})
    assert [m["seqId"] for m in page["messages"]] == [4, 5, 6, 7]
    assert page["hasMore"] is True and page["lastSeqId"] == DEFAULT_RUN
    assert page["messages"] == messages[3:7]
    page = client.call("session.messages.load", {"sessionId": sid, "afterSeq": 7, "limit": 2})
    assert [m["seqId"] for m in page["messages"]] == [8, 9] and page["hasMore"] is False
    page = client.call("session.messages.load", {"sessionId": sid, "afterSeq": DEFAULT_RUN})
    assert page == {"messages": [], "lastSeqId": DEFAULT_RUN, "hasMore": False}
    page = client.call("session.messages.load", {"sessionId": sid, "afterSeq": 100})
    assert page["messages"] == [] and page["hasMore"] is False

    with pytest.raises(NotFound) as info:
        client.call("session.messages.load", {"sessionId": "no-such-session"})
    rpc_error(info.value, -32005, "not_found")


def test_session_restore(client: Client) -> None:
    assert client.call("session.restore", {"projectId": "p"}) == {
        "restored": False,
        "session": None,
    }
    s1 = run_mock(client, "p")
    # never replaces a running session
    running = start_hang(client, "q")
    reply = client.call("session.restore", {"projectId": "q"})
    assert reply["restored"] is False and reply["session"]["sessionId"] == running
    assert client.call("session.get", {"projectId": "q"})["session"]["status"] == "running"

    assert client.call("session.clear", {"projectId": "p"}) == {"cleared": True}
    reply = client.call("session.restore", {"projectId": "p"})
    assert reply["restored"] is True
    assert reply["session"]["sessionId"] == s1 and reply["session"]["status"] == "done"
    assert reply["session"].keys() >= SESSION_KEYS
    assert client.call("session.get", {"projectId": "p"})["session"]["sessionId"] == s1
    # restoring the current one again is a no-op that reports it
    again = client.call("session.restore", {"projectId": "p"})
    assert again["restored"] is True and again["session"]["sessionId"] == s1
    # the restored session continues where it stopped
    reply = client.call("agent.prompt", {"projectId": "p", "prompt": "again"})
    assert reply == {"sessionId": s1, "status": "running", "seqId": DEFAULT_RUN + 1}
    assert wait_ended(client, "p") == "done"


def test_session_clear(client: Client) -> None:
    assert client.call("session.clear", {"projectId": "p"}) == {"cleared": False}
    running = start_hang(client, "r")
    assert client.call("session.clear", {"projectId": "r"}) == {"cleared": False}
    assert client.call("session.get", {"projectId": "r"})["session"]["sessionId"] == running
    done = run_mock(client, "p")
    assert client.call("session.clear", {"projectId": "p"}) == {"cleared": True}
    assert client.call("session.get", {"projectId": "p"}) == {"session": None}
    assert client.call("session.clear", {"projectId": "p"}) == {"cleared": False}
    # storage is kept
    assert client.call("session.load", {"projectId": "p"})["session"]["sessionId"] == done
    assert len(client.call("session.messages.load", {"sessionId": done})["messages"]) == 9


def test_session_purge(client: Client) -> None:
    sid = start_hang(client, "p")
    with pytest.raises(SessionRunning) as info:
        client.call("session.purge", {"sessionId": sid})
    rpc_error(info.value, -32002, "session_running")
    assert listed(client) == [sid]
    client.call("agent.stop", {"projectId": "p"}, timeout=15)
    wait_ended(client, "p")
    assert client.call("session.purge", {"sessionId": sid}) == {"purged": True}
    assert client.call("session.get", {"projectId": "p"}) == {"session": None}
    assert client.call("session.load", {"projectId": "p"}) == {"session": None}
    assert listed(client) == []
    with pytest.raises(NotFound):
        client.call("session.messages.load", {"sessionId": sid})
    assert client.call("session.purge", {"sessionId": sid}) == {"purged": False}
    assert client.call("session.purge", {"sessionId": "never-was"}) == {"purged": False}
    # an older stored session goes without touching the current one
    old = run_mock(client, "q")
    new = run_mock(client, "q")
    assert client.call("session.purge", {"sessionId": old}) == {"purged": True}
    assert listed(client) == [new]
    assert client.call("session.get", {"projectId": "q"})["session"]["sessionId"] == new


def test_project_purge(client: Client) -> None:
    a1 = run_mock(client, "a")
    a2 = run_mock(client, "a")
    b1 = run_mock(client, "b")
    c1 = start_hang(client, "c")
    assert client.call("project.purge", {"projectId": "a"}) == {"purgedSessions": 2}
    assert listed(client, projectId="a") == []
    assert client.call("session.get", {"projectId": "a"}) == {"session": None}
    for sid in (a1, a2):
        with pytest.raises(NotFound):
            client.call("session.messages.load", {"sessionId": sid})
    assert listed(client) == [c1, b1]
    with pytest.raises(SessionRunning) as info:
        client.call("project.purge", {"projectId": "c"})
    rpc_error(info.value, -32002, "session_running")
    assert listed(client, projectId="c") == [c1]
    assert client.call("project.purge", {"projectId": "nothing-here"}) == {"purgedSessions": 0}
    assert client.call("project.purge", {"projectId": "b"}) == {"purgedSessions": 1}
    assert listed(client) == [c1]


# --------------------------------------------------------------------------- settings


def test_settings_every_key(daemon: DaemonProcess, client: Client, short_tmp: Path) -> None:
    sub = Subscriber(daemon.events_url, ["daemon/settings.changed"])
    try:
        sub.wait_connected(client)
        assert client.call("settings.getAll") == {"settings": SETTINGS_DEFAULTS}
        valid = [
            ("permission_mode", "plan"),
            ("system_prompt_template", "Be brief."),
            ("default_cwd", str(short_tmp)),
            ("provider_settings", '{"mock": {"defaultModel": "mock-9", "enabled": true}}'),
            ("session_retention_count", "50"),
            ("session_retention_days", "1"),
            ("stall_timeout_ms", "1000"),
            ("cleanup_grace_ms", "0"),
            ("max_live_sessions", "10000"),
            ("approval_timeout_ms", "1000"),
            ("desktop_notifications", "off"),
        ]
        invalid = {
            "permission_mode": ["yolo", ""],
            "system_prompt_template": ["x" * 4097],
            "default_cwd": ["relative/dir", str(short_tmp / "missing")],
            "provider_settings": ["not json", "[]", '{"gpt": {}}', '{"mock": {"enabled": 1}}'],
            "session_retention_count": ["0", "51", "five"],
            "session_retention_days": ["0", "366"],
            "stall_timeout_ms": ["999", "-5"],
            "cleanup_grace_ms": ["-1", "1.5"],
            "max_live_sessions": ["0", "10001"],
            "approval_timeout_ms": ["-1", "1.5"],
            "desktop_notifications": ["yes", ""],
        }
        assert {k for k, _ in valid} == set(SETTINGS_DEFAULTS) == set(invalid)
        expected = dict(SETTINGS_DEFAULTS)
        for key, value in valid:
            settings = client.call("settings.set", {"key": key, "value": value})["settings"]
            if key == "provider_settings":
                assert orjson.loads(settings[key]) == orjson.loads(value)
            else:
                assert settings[key] == value
            expected[key] = settings[key]
            assert settings == expected
            assert client.call("settings.getAll")["settings"] == expected
            topic, frame = sub.wait_for(lambda _t, f: f["event"] == "settings.changed", 5)
            assert topic == "daemon/settings.changed"
            assert "projectId" not in frame
            assert frame["data"]["key"] == key
            assert frame["data"]["settings"] == expected
            for bad in invalid[key]:
                with pytest.raises(InvalidParams) as info:
                    client.call("settings.set", {"key": key, "value": bad})
                assert info.value.field == "value", (key, bad)
                rpc_error(info.value, -32602, "invalid_params")
            assert client.call("settings.getAll")["settings"] == expected
        # a refused value published nothing
        assert sub.drain() == []
    finally:
        sub.close()


def test_provider_settings_refuse_a_model_no_process_can_take(client: Client) -> None:
    with pytest.raises(InvalidParams) as info:
        set_setting(client, "provider_settings", '{"mock": {"defaultModel": "m\\u0000"}}')
    assert info.value.field == "value"
    assert client.call("settings.getAll")["settings"]["provider_settings"] == "{}"


def test_provider_settings_take_effect(client: Client) -> None:
    set_setting(client, "provider_settings", '{"mock": {"defaultModel": "mock-9"}}')
    started = start_mock(client, "p")
    assert started["model"] == "mock-9"
    wait_ended(client, "p")
    set_setting(client, "provider_settings", '{"mock": {"enabled": false}}')
    with pytest.raises(ProviderUnavailable) as info:
        start_mock(client, "q")
    rpc_error(info.value, -32004, "provider_unavailable")
    assert isinstance(info.value.data["detail"], str) and info.value.data["detail"]
    mock = client.call("daemon.info")["providers"]["mock"]
    assert mock["available"] is False and mock["detail"]
    assert listed(client) == [started["sessionId"]]
    set_setting(client, "provider_settings", "{}")
    assert client.call("daemon.info")["providers"]["mock"]["available"] is True


# --------------------------------------------------------------------------- health, notices


def test_health(client: Client) -> None:
    empty = client.call("health.get")
    assert empty["projects"] == []
    assert empty["aggregates"] == {
        "running": 0,
        "idle": 0,
        "stalled": 0,
        "burnRateUsdPerHour": 0,
        "attention": None,  # the top project's projectId, score and reason
    }
    running = start_hang(client, "a")
    done = run_mock(client, "b")
    health = client.call("health.get")
    projects = {h["projectId"]: h for h in health["projects"]}
    assert set(projects) == {"a", "b"}
    assert projects["a"]["sessionId"] == running and projects["a"]["status"] == "running"
    assert projects["b"]["sessionId"] == done and projects["b"]["status"] == "done"
    assert projects["b"]["costUsd"] > 0 and projects["b"]["messageCount"] == DEFAULT_RUN
    assert projects["b"]["inputTokens"] > 0 and projects["b"]["outputTokens"] > 0
    for h in projects.values():
        assert h["stalled"] is False
    agg = health["aggregates"]
    assert agg["running"] == 1 and agg["stalled"] == 0
    assert agg["running"] + agg["idle"] == 2  # every live session is running or idle
    assert isinstance(agg["burnRateUsdPerHour"], int | float) and agg["burnRateUsdPerHour"] >= 0
    one = client.call("health.get", {"projectId": "b"})
    assert [h["projectId"] for h in one["projects"]] == ["b"]
    unknown = client.call("health.get", {"projectId": "nobody"})["projects"]
    assert len(unknown) == 1 and unknown[0]["sessionId"] is None


def test_stalled_session_in_health_and_notifications(client: Client) -> None:
    set_setting(client, "stall_timeout_ms", "1000")
    sid = start_hang(client, "s")
    health = poll(
        lambda: (h := client.call("health.get"))["aggregates"]["stalled"] == 1 and h, timeout=10
    )
    assert health["projects"][0]["stalled"] is True
    assert health["projects"][0]["status"] == "running"
    assert health["aggregates"]["running"] == 1
    notes = client.call("notifications.list")["notifications"]
    assert [(n["kind"], n["variant"], n["sessionId"]) for n in notes] == [
        ("agent_stalled", "warning", sid)
    ]
    client.call("agent.stop", {"projectId": "s"}, timeout=15)
    wait_ended(client, "s")
    after = client.call("health.get")
    assert after["aggregates"]["stalled"] == 0 and after["projects"][0]["stalled"] is False


def test_notifications(client: Client) -> None:
    assert client.call("notifications.list") == {"notifications": []}
    sids = [run_mock(client, p) for p in ("a", "b", "c")]
    failed = start_mock(client, "d", failAfter=1)["sessionId"]
    assert wait_ended(client, "d") == "error"
    notes = poll(
        lambda: len(n := client.call("notifications.list")["notifications"]) >= 4 and n,
        timeout=5,
    )
    assert len(notes) == 4
    for n in notes:
        assert n.keys() >= NOTIFICATION_KEYS
        assert isinstance(n["message"], str) and n["message"]
    assert [n["sessionId"] for n in notes] == [failed, *reversed(sids)]
    assert notes[0]["kind"] == "agent_error" and notes[0]["variant"] == "error"
    assert {n["kind"] for n in notes[1:]} == {"agent_complete"}
    assert {n["variant"] for n in notes[1:]} == {"success"}
    ts = [n["ts"] for n in notes]
    assert ts == sorted(ts, reverse=True)
    assert client.call("notifications.list", {"limit": 2})["notifications"] == notes[:2]
    assert client.call("notifications.list", {"limit": 100})["notifications"] == notes


def test_conflicts_are_empty(client: Client) -> None:
    run_mock(client, "p")  # writes no file twice: no conflict
    assert client.call("conflicts.list") == {"conflicts": []}
    assert client.call("conflicts.list", {"projectId": "p"}) == {"conflicts": []}
    assert client.call("conflicts.ack", {"projectId": "p"}) == {"acknowledged": 0}


# --------------------------------------------------------------------------- guards


def test_start_in_progress(client: Client) -> None:
    hang = start_params("p", providerConfig={"hang": True})
    replies = client.call_batch(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "agent.start", "params": hang},
            {"jsonrpc": "2.0", "id": 2, "method": "agent.start", "params": hang},
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "agent.prompt",
                "params": {"projectId": "p", "prompt": "x"},
            },
        ],
        timeout=15,
    )
    by_id = {r["id"]: r for r in replies}
    assert set(by_id) == {1, 2, 3}
    assert by_id[1]["result"]["status"] == "running"
    error = by_id[2]["error"]
    assert error["code"] == -32003 and error["data"]["reason"] == "start_in_progress"
    # a prompt while the start is in flight is refused too (no_session would also be honest)
    assert by_id[3]["error"]["data"]["reason"] in ("start_in_progress", "no_session")
    assert listed(client) == [by_id[1]["result"]["sessionId"]]


def test_session_running(client: Client) -> None:
    first = start_hang(client, "p")
    with pytest.raises(SessionRunning) as info:
        start_mock(client, "p")
    rpc_error(info.value, -32002, "session_running")
    assert listed(client) == [first]
    current = client.call("session.get", {"projectId": "p"})["session"]
    assert current["sessionId"] == first and current["status"] == "running"


def test_provider_unavailable_for_unsupported_providers(client: Client) -> None:
    providers = client.call("daemon.info")["providers"]
    for name in ("codex", "ollama"):
        with pytest.raises(ProviderUnavailable) as info:
            client.call("agent.start", start_params("p", name))
        rpc_error(info.value, -32004, "provider_unavailable")
        assert info.value.data["detail"] == providers[name]["detail"]
    assert client.call("session.list") == {"sessions": []}
    assert client.call("session.get", {"projectId": "p"}) == {"session": None}


def test_provider_unavailable_without_claude(
    daemon_factory: DaemonFactory, short_tmp: Path
) -> None:
    for fixed in ("/usr/local/bin/claude", "/usr/bin/claude"):
        if os.access(fixed, os.X_OK):
            pytest.skip(f"a claude binary is installed at {fixed}")
    bin_dir, home = short_tmp / "bin", short_tmp / "home"
    bin_dir.mkdir()
    home.mkdir()
    daemon = daemon_factory(
        "noclaude", env={"PATH": str(bin_dir), "HOME": str(home), "CORRAL_CLAUDE_BIN": ""}
    )
    with daemon.client() as client:
        with pytest.raises(ProviderUnavailable) as info:
            client.call("agent.start", start_params("p", "claude"))
        rpc_error(info.value, -32004, "provider_unavailable")
        detail = info.value.data["detail"]
        assert "not found" in detail and str(bin_dir / "claude") in detail
        claude = client.call("daemon.info")["providers"]["claude"]
        assert claude["available"] is False and "not found" in claude["detail"]
        assert client.call("session.list") == {"sessions": []}
        # the mock provider needs nothing from PATH or HOME
        assert start_mock(client, "m")["status"] == "running"


def test_claude_available_when_its_binary_is_configured(
    daemon_factory: DaemonFactory, short_tmp: Path
) -> None:
    fake = short_tmp / "claude-fake"
    fake.write_text('#!/bin/sh\necho "9.9.9 (Claude Code)"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    daemon = daemon_factory("fake", env={"CORRAL_CLAUDE_BIN": str(fake)})
    with daemon.client() as client:
        claude = client.call("daemon.info")["providers"]["claude"]
        assert claude["available"] is True
        assert str(fake) in claude["detail"] and "9.9.9" in claude["detail"]


def test_overloaded(client: Client) -> None:
    set_setting(client, "max_live_sessions", "1")
    first = start_hang(client, "a")
    with pytest.raises(Overloaded) as info:
        start_mock(client, "b")
    rpc_error(info.value, -32006, "overloaded")
    assert client.call("session.get", {"projectId": "b"}) == {"session": None}
    assert listed(client) == [first]
    assert client.call("daemon.info")["sessions"]["live"] == 1
    # freeing the slot lets the next start in
    client.call("agent.stop", {"projectId": "a"}, timeout=15)
    wait_ended(client, "a")
    assert client.call("session.clear", {"projectId": "a"}) == {"cleared": True}
    assert start_mock(client, "b")["status"] == "running"
    # and a higher cap allows more
    set_setting(client, "max_live_sessions", "2")
    assert start_mock(client, "c")["status"] == "running"
    with pytest.raises(Overloaded):
        start_mock(client, "d")


def test_shutting_down_refuses_new_work(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("s")
    with daemon.client() as client:
        replies = client.call_batch(
            [
                ("daemon.shutdown", None),
                ("agent.start", start_params("p", providerConfig={"delayMs": 0})),
                ("agent.prompt", {"projectId": "p", "prompt": "x"}),
                ("session.restore", {"projectId": "p"}),
                ("daemon.ping", None),
            ]
        )
    by_id = {r["id"]: r for r in replies}
    ids = sorted(by_id)
    assert len(ids) == 5
    assert by_id[ids[0]]["result"] == {"stopping": True}
    for rid in ids[1:4]:
        error = by_id[rid]["error"]
        assert error["code"] == -32007 and error["data"]["reason"] == "shutting_down", error
    assert by_id[ids[4]]["result"]["pong"] is True
    assert daemon.proc is not None and daemon.proc.wait(30) == 0
    # the refused start left nothing behind
    again = daemon_factory("s")
    with again.client() as client:
        assert client.call("session.list") == {"sessions": []}


def test_shutting_down_seen_from_another_client(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("t")
    with daemon.client() as first, daemon.client(timeout=5) as second:
        start_hang(first, "busy")  # ending it keeps the daemon stopping for a moment
        second.ping()
        assert first.call("daemon.shutdown") == {"stopping": True}
        with pytest.raises(ShuttingDown) as info:
            start_mock(second, "other")
        rpc_error(info.value, -32007, "shutting_down")
    assert daemon.proc is not None and daemon.proc.wait(30) == 0


# --------------------------------------------------------------------------- events


def collect(sub: Subscriber, until: Any, timeout: float = 15.0) -> list[tuple[str, dict[str, Any]]]:
    """Every event received until ``until(topic, frame)`` held (inclusive)."""
    out: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    while True:
        got = sub.recv(max(0.0, deadline - time.monotonic()))
        if got is None:
            raise TimeoutError(f"condition not met; got {[f['event'] for _, f in out]}")
        out.append(got)
        if until(*got):
            return out


def check_frame(topic: str, frame: dict[str, Any], boot: str) -> None:
    assert {"event", "boot", "eseq", "ts", "data"} <= frame.keys(), frame
    assert frame["boot"] == boot
    assert isinstance(frame["eseq"], int) and frame["eseq"] >= 1
    assert abs(frame["ts"] - now_ms()) < 60_000
    assert isinstance(frame["data"], dict)
    event = frame["event"]
    assert event in CONTRACT_EVENTS | CORRAL_EVENTS, event
    if event in DAEMON_EVENTS:
        assert topic == f"daemon/{event}", (topic, event)
        assert "projectId" not in frame
    else:
        assert topic == f"project/{frame['projectId']}/{event}", (topic, frame)


def test_event_frames_topics_and_eseq(client: Client, subscriber: Subscriber) -> None:
    described = client.call("rpc.describe")["events"]
    boot = client.call("daemon.ping")["boot"]
    sid = start_mock(client, "ev")["sessionId"]
    events = collect(
        subscriber,
        lambda _t, f: f["event"] == "notification" and f["data"].get("sessionId") == sid,
    )
    # and what comes next, e.g. a heartbeat and the throttled health
    events += collect(subscriber, lambda _t, f: f["event"] == "daemon.heartbeat", timeout=3)
    eseqs = [f["eseq"] for _, f in events]
    assert eseqs == list(range(eseqs[0], eseqs[0] + len(eseqs))), eseqs
    assert subscriber.gaps == 0
    for topic, frame in events:
        check_frame(topic, frame, boot)
        validate(described[frame["event"]], frame["data"], frame["event"])
        if frame["event"] not in DAEMON_EVENTS:
            assert frame["projectId"] == "ev"
    names = {f["event"] for _, f in events}
    assert {"agent.message", "agent.status", "agent.cost", "notification", "health"} <= names

    messages = [
        m for _, f in events if f["event"] == "agent.message" for m in f["data"]["messages"]
    ]
    assert [m["seqId"] for m in messages] == list(range(1, DEFAULT_RUN + 1))
    statuses = [f["data"]["status"] for _, f in events if f["event"] == "agent.status"]
    assert statuses == ["running", "done"]
    costs = [f["data"] for _, f in events if f["event"] == "agent.cost"]
    assert costs, "no agent.cost event"
    session = client.call("session.get", {"projectId": "ev"})["session"]
    last = costs[-1]
    assert last["sessionId"] == sid
    assert last["costUsd"] == session["costUsd"] and last["costUsd"] > 0
    assert last["inputTokens"] == session["inputTokens"] > 0
    assert last["outputTokens"] == session["outputTokens"] > 0
    note = next(f["data"] for _, f in events if f["event"] == "notification")
    assert note["kind"] == "agent_complete" and note["variant"] == "success"


def test_project_prefix_subscription(daemon: DaemonProcess, client: Client) -> None:
    foo = Subscriber(daemon.events_url, ["project/foo/"])
    bar = Subscriber(daemon.events_url, ["project/bar/"])
    try:
        foo.wait_connected(client)
        bar.wait_connected(client)
        sids = {p: start_mock(client, p)["sessionId"] for p in ("foo", "bar", "foo2")}

        def ended(project: str) -> Any:
            return lambda _t, f: f["event"] == "notification" and f["projectId"] == project

        foo_events = collect(foo, ended("foo"))
        bar_events = collect(bar, ended("bar"))
        wait_ended(client, "foo2")
        time.sleep(0.3)
        foo_events += foo.drain()
        bar_events += bar.drain()
    finally:
        foo.close()
        bar.close()
    for project, events in (("foo", foo_events), ("bar", bar_events)):
        assert events
        for topic, frame in events:
            assert topic.startswith(f"project/{project}/"), topic
            assert frame["projectId"] == project
            assert frame["data"].get("sessionId", sids[project]) == sids[project]
        assert {"agent.message", "agent.status"} <= {f["event"] for _, f in events}


def test_heartbeat(daemon: DaemonProcess, client: Client) -> None:
    sub = Subscriber(daemon.events_url, ["daemon/daemon.heartbeat"])
    try:
        sub.wait_connected(client)
        sub.drain()
        idle = sub.wait_for(lambda _t, _f: True, 3)[1]
        assert idle["data"] == {"live": 0, "lastSeqIds": {}}
        sid = start_hang(client, "hb")
        last_seq = poll(
            lambda: (
                client.call("session.get", {"projectId": "hb"})["session"]["lastSeqId"] >= 2
                and client.call("session.get", {"projectId": "hb"})["session"]["lastSeqId"]
            ),
            timeout=10,
        )
        beats = [sub.wait_for(lambda _t, f: f["data"]["lastSeqIds"].get(sid) == last_seq, 5)[1]]
        for _ in range(2):
            beats.append(sub.wait_for(lambda _t, _f: True, 3)[1])
        for beat in beats:
            assert beat["event"] == "daemon.heartbeat"
            assert beat["data"] == {"live": 1, "lastSeqIds": {sid: last_seq}}
        gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(beats)]
        assert all(600 <= g <= 1600 for g in gaps), gaps
        # a session that leaves memory leaves the heartbeat
        client.call("agent.stop", {"projectId": "hb"}, timeout=15)
        wait_ended(client, "hb")
        client.call("session.clear", {"projectId": "hb"})
        sub.wait_for(lambda _t, f: f["data"] == {"live": 0, "lastSeqIds": {}}, 5)
    finally:
        sub.close()

"""Every client command of `corral` against a live daemon: human output, `--json`
shapes and exit codes 0/1/2 (3 is in test_cli_connect)."""

from __future__ import annotations

import orjson

from corral.protocol.client import Client
from corral.supervisor.background import DaemonProcess
from tests.integration.helpers import all_messages, poll
from tests.integration.test_cli_support import (
    FAST,
    UUID,
    doc,
    ndjson,
    ok,
    on,
    start_args,
)


def test_start_follow_then_ls_and_show(daemon: DaemonProcess, client: Client) -> None:
    res = ok(on(daemon, *start_args("p1", "Add a flag"), "--follow"))
    lines = res.stdout.splitlines()
    assert UUID.match(lines[0])
    session_id = lines[0]
    assert "   1 you      Add a flag" in lines
    assert any(" tool     Read  " in line for line in lines)  # a tool call, one line
    assert lines[-1] == "── done ──"
    stored = all_messages(client, session_id)
    # (lines[0] is the session id, which may itself begin with five digits)
    assert sum(1 for line in lines[1:] if line[:5].strip().isdigit()) == len(stored)

    table = ok(on(daemon, "ls")).stdout
    assert "PROJECT" in table and "SESSION" in table and "STATUS" in table
    row = next(line for line in table.splitlines() if line.startswith("p1 "))
    assert session_id[:8] in row and "mock" in row and "done" in row and "$0.0" in row
    listed = doc(on(daemon, "ls", "--json"))
    assert [s["sessionId"] for s in listed["sessions"]] == [session_id]
    assert doc(on(daemon, "ls", "--json", "--project", "nope"))["sessions"] == []
    assert "no sessions" in ok(on(daemon, "ls", "--status", "running")).stdout

    shown = ok(on(daemon, "show", "p1")).stdout.splitlines()
    assert shown[0].startswith(f"── session {session_id[:8]}") and "p1 · mock" in shown[0]
    assert "   1 you      Add a flag" in shown
    assert doc(on(daemon, "show", "p1", "--json")) == {"messages": stored}
    assert doc(on(daemon, "show", session_id[:8], "--json")) == {"messages": stored}
    assert doc(on(daemon, "show", session_id, "--json")) == {"messages": stored}
    page = doc(on(daemon, "show", "p1", "--after", "3", "--limit", "2", "--json"))
    assert [m["seqId"] for m in page["messages"]] == [4, 5]
    res = on(daemon, "show", "nothing-here")
    assert res.exit_code == 1 and "no project or session matches" in res.stderr


def test_start_json_warns_about_dropped_env(daemon: DaemonProcess) -> None:
    res = ok(on(daemon, *start_args("p2"), "-e", "CLAUDE_X=1", "-e", "OK=yes", "--json"))
    result = orjson.loads(res.stdout)
    assert set(result) >= {"sessionId", "status", "model", "droppedEnv"}
    assert result["droppedEnv"] == ["CLAUDE_X"]
    assert "CLAUDE_X" in res.stderr and "warning" in res.stderr


def test_start_follow_json_is_ndjson_and_error_exits_1(daemon: DaemonProcess) -> None:
    res = ok(on(daemon, *start_args("p3"), "--follow", "--json"))
    rows = ndjson(res.stdout)
    assert UUID.match(rows[0]["sessionId"]) and rows[0]["status"] == "running"
    messages = [r["message"]["seqId"] for r in rows[1:] if r["kind"] == "message"]
    assert messages == list(range(1, len(messages) + 1))
    assert rows[-1] == {"kind": "status", "sessionId": rows[0]["sessionId"], "status": "done"}

    bad = on(daemon, *start_args("p4", config='{"delayMs": 0, "failAfter": 2}'), "-f")
    assert bad.exit_code == 1
    assert "error: provider exited with code 1" in bad.stdout


def test_prompt_and_stop(daemon: DaemonProcess, client: Client) -> None:
    ok(on(daemon, *start_args("p5"), "--follow"))
    res = ok(on(daemon, "prompt", "p5", "again", "--follow"))
    assert "you      again" in res.stdout and res.stdout.rstrip().endswith("── done ──")
    assert "   1 you" not in res.stdout  # only the new turn
    sent = doc(on(daemon, "prompt", "p5", "third", "--json"))
    assert set(sent) == {"sessionId", "status", "seqId"}

    hang = '{"delayMs": 0, "hang": true}'
    started = ok(on(daemon, *start_args("p6", config=hang))).stdout.strip()
    poll(lambda: (client.session("p6") or {}).get("status") == "running")
    res = on(daemon, *start_args("p6", config=hang))
    assert res.exit_code == 1
    assert "(session_running" in res.stderr and started in res.stderr
    assert ok(on(daemon, "stop", "p6")).stdout.strip() == f"stopped session {started[:8]}: done"
    assert doc(on(daemon, "stop", "p6", "--json")) == {"sessionId": started, "status": "done"}
    res = on(daemon, "stop", "nobody")
    assert res.exit_code == 1 and "(no_session)" in res.stderr


def test_restore_clear_purge(daemon: DaemonProcess, client: Client) -> None:
    sid = ok(on(daemon, *start_args("p7"), "-f")).stdout.splitlines()[0]
    assert ok(on(daemon, "clear", "p7")).stdout.strip() == "cleared"
    assert ok(on(daemon, "clear", "p7")).stdout.strip() == "nothing to clear for p7"
    assert ok(on(daemon, "restore", "p7")).stdout.strip() == f"restored session {sid[:8]} (done)"
    assert doc(on(daemon, "restore", "zz", "--json")) == {"restored": False, "session": None}
    assert doc(on(daemon, "clear", "zz", "--json")) == {"cleared": False}

    res = on(daemon, "purge", sid[:8], input="n\n")
    assert res.exit_code == 1 and "Aborted" in res.stderr
    assert client.call("session.list")["sessions"]
    res = ok(on(daemon, "purge", sid[:8], input="y\n"))
    assert f"Delete session {sid} (p7, " in res.stdout and f"purged session {sid}" in res.stdout
    assert client.call("session.list", {"projectId": "p7"})["sessions"] == []

    ok(on(daemon, *start_args("p8"), "-f"))
    ok(on(daemon, *start_args("p8"), "-f"))
    assert doc(on(daemon, "purge", "--project", "p8", "--yes", "--json")) == {"purgedSessions": 2}
    assert on(daemon, "purge").exit_code == 2
    assert on(daemon, "purge", "x", "--project", "y").exit_code == 2
    res = on(daemon, "purge", "no-such-session", "-y")
    assert res.exit_code == 1 and "no session matches" in res.stderr


def test_settings(daemon: DaemonProcess) -> None:
    table = ok(on(daemon, "settings")).stdout
    assert "stall_timeout_ms" in table and "900000" in table
    everything = doc(on(daemon, "settings", "--json"))["settings"]
    assert everything["session_retention_count"] == "5"
    assert ok(on(daemon, "settings", "get", "stall_timeout_ms")).stdout == "900000\n"
    got = doc(on(daemon, "settings", "get", "permission_mode", "--json"))
    assert got == {"key": "permission_mode", "value": "default"}
    res = ok(on(daemon, "settings", "set", "session_retention_count", "7"))
    assert res.stdout == "session_retention_count = 7\n"
    changed = doc(on(daemon, "settings", "set", "session_retention_days", "9", "--json"))
    assert changed["settings"]["session_retention_days"] == "9"
    res = on(daemon, "settings", "set", "session_retention_count", "0")
    assert res.exit_code == 1 and "invalid_params" in res.stderr
    res = on(daemon, "settings", "get", "nope")
    assert res.exit_code == 1 and "unknown setting 'nope'" in res.stderr


def test_status_commands(daemon: DaemonProcess) -> None:
    ok(on(daemon, *start_args("h1"), "-f"))
    assert (
        on(daemon, *start_args("h2", config='{"delayMs": 0, "failAfter": 1}'), "-f").exit_code == 1
    )
    health = ok(on(daemon, "health")).stdout
    assert "ACTIVITY" in health and "ATTENTION" in health and "h1" in health
    assert "running 0 · idle" in health
    got = doc(on(daemon, "health", "--json"))
    assert {h["projectId"] for h in got["projects"]} >= {"h1"} and "aggregates" in got
    assert [h["projectId"] for h in doc(on(daemon, "health", "h1", "--json"))["projects"]] == ["h1"]

    notes = ok(on(daemon, "notifications")).stdout
    assert "agent_complete" in notes and "h1: agent finished" in notes
    listed = doc(on(daemon, "notifications", "--limit", "1", "--json"))["notifications"]
    assert len(listed) == 1 and {"id", "kind", "message", "variant", "ts"} <= set(listed[0])

    assert ok(on(daemon, "conflicts")).stdout.strip() == "no open conflicts"
    assert doc(on(daemon, "conflicts", "--json")) == {"conflicts": []}
    assert ok(on(daemon, "conflicts", "--ack", "h1")).stdout.startswith("acknowledged 0")
    assert doc(on(daemon, "conflicts", "--ack", "h1", "--json")) == {"acknowledged": 0}

    info = ok(on(daemon, "info")).stdout
    assert str(daemon.pid) in info and daemon.rpc_url in info and str(daemon.data_dir) in info
    assert "mock" in info and "yes" in info
    assert doc(on(daemon, "info", "--json"))["pid"] == daemon.pid

    described = ok(on(daemon, "describe")).stdout
    assert "agent.start" in described and "session_running" in described
    assert "projectId provider prompt" in described
    schemas = doc(on(daemon, "describe", "--json"))
    assert schemas["protocolVersion"] == 1 and "agent.start" in schemas["methods"]


def test_call(daemon: DaemonProcess) -> None:
    assert doc(on(daemon, "call", "daemon.ping"))["pong"] is True
    assert doc(on(daemon, "call", "session.get", '{"projectId": "x"}')) == {"session": None}
    res = on(daemon, "call", "agent.stop", '{"projectId": "x"}')
    assert res.exit_code == 1 and res.stdout == "" and "(no_session)" in res.stderr
    res = on(daemon, "call", "session.list", '{"limit": 0}')
    assert res.exit_code == 1 and "field: limit" in res.stderr
    assert on(daemon, "call", "nope.nope").exit_code == 1
    assert on(daemon, "call", "daemon.ping", "{not json").exit_code == 2
    assert on(daemon, "call", "daemon.ping", "[1]").exit_code == 2


def test_usage_errors_exit_2(daemon: DaemonProcess) -> None:
    for args in (
        ["ls", "--limit", "0"],
        ["ls", "--limit", "x"],
        ["start", "p"],
        ["start", "p", "x", "--env", "NOEQUALS"],
        ["start", "p", "x", "--config", "[1]"],
        ["start", "p", "x", "--config", "{bad"],
        ["show"],
        ["nonsense"],
    ):
        res = on(daemon, *args)
        assert res.exit_code == 2, (args, res.stdout, res.stderr)
    assert "--config" in on(daemon, "start", "p", "x", "--config", "[1]").stderr


def test_start_options_reach_the_daemon(daemon: DaemonProcess, client: Client) -> None:
    extra = daemon.data_dir.parent
    res = ok(
        on(
            daemon,
            *start_args("opts", config=FAST),
            "--cwd",
            str(extra),
            "--model",
            "mock-2",
            "--max-turns",
            "3",
            "--permission-mode",
            "plan",
            "--add-dir",
            str(extra),
            "--idempotency-key",
            "k1",
            "--json",
        )
    )
    first = orjson.loads(res.stdout)
    again = doc(on(daemon, *start_args("opts", config=FAST), "--idempotency-key", "k1", "--json"))
    assert again["sessionId"] == first["sessionId"]  # the retry got the first answer
    assert on(daemon, *start_args("opts"), "--max-turns", "0").exit_code == 2

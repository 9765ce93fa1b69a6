"""The real Claude Code CLI driven through a real daemon's RPC, against the fake API.

Every test starts ``corral serve`` as a subprocess whose environment points the
``claude`` it finds (on PATH) at a private HOME and TMPDIR; the operator env in
``provider_settings`` points the CLI at a local fake Messages API server. The
fixtures stop daemons and fake servers by PID; every wait here is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from corral.protocol.client import Client, Subscriber
from corral.protocol.errors import ProviderUnavailable
from corral.supervisor.background import DaemonProcess
from corral.supervisor.providers.claude.launch import FALLBACK_LOCATIONS
from tests.conftest import DaemonFactory
from tests.integration.helpers import all_messages, poll, set_setting
from tests.support.claude_cli import check_claude_version
from tests.support.claude_fixtures import FakeAnthropicFactory
from tests.support.fake_anthropic import (
    FakeAnthropic,
    error,
    message_texts,
    script_bash,
    script_slow_tool,
    text_reply,
)
from tests.support.proc import pid_alive, pids_in_group

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
PROJECT = "claude-p1"
TURN_TIMEOUT = 30.0
GONE_TIMEOUT = 10.0
TERMINAL = ("done", "error")

#: The operator env that keeps the CLI offline, quiet and quick to give up.
QUIET_ENV = {
    "ANTHROPIC_API_KEY": "dummy",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_MAX_RETRIES": "1",
}


@dataclass
class Rig:
    """A private HOME, TMPDIR and working directory, and the daemon env using them."""

    home: Path
    tmp: Path
    work: Path
    env: dict[str, str]


def _rig(root: Path, path: str) -> Rig:
    home, tmp, work = root / "home", root / "tmp", root / "work"
    for directory in (home, tmp, work):
        directory.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": path,
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "CORRAL_CLAUDE_BIN": "",  # never one inherited from the caller
    }
    return Rig(home, tmp, work, env)


@pytest.fixture
def rig(short_tmp: Path, claude_bin: Path) -> Rig:
    return _rig(short_tmp / "claude", f"{claude_bin.parent}{os.pathsep}{os.environ['PATH']}")


def configure(client: Client, server: FakeAnthropic, *, sandbox: bool = IS_ROOT) -> None:
    """Point the daemon's claude at ``server`` (operator env, trusted)."""
    env = dict(QUIET_ENV, ANTHROPIC_BASE_URL=server.base_url)
    if sandbox:
        env["IS_SANDBOX"] = "1"  # bypassPermissions as root needs it
    value = {"claude": {"config": {"env": env}}}
    set_setting(client, "provider_settings", json.dumps(value))


def start_claude(client: Client, rig: Rig, prompt: str, **options: Any) -> str:
    params: dict[str, Any] = {
        "projectId": PROJECT,
        "provider": "claude",
        "prompt": prompt,
        "cwd": str(rig.work),
        "permissionMode": "bypassPermissions",
    }
    params.update(options)
    started = client.call("agent.start", params, timeout=TURN_TIMEOUT)
    assert started["status"] == "running"
    return str(started["sessionId"])


def session_of(client: Client) -> dict[str, Any]:
    session = client.call("session.get", {"projectId": PROJECT})["session"]
    assert session is not None
    return dict(session)


def wait_terminal(client: Client, timeout: float = TURN_TIMEOUT) -> dict[str, Any]:
    """The current session once it is done or error."""

    def ended() -> dict[str, Any] | None:
        session = session_of(client)
        return session if session["status"] in TERMINAL else None

    result: dict[str, Any] = poll(ended, timeout=timeout, interval=0.1)
    return result


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def claude_pids(daemon: DaemonProcess) -> list[int]:
    """The daemon's live stream-json claude children (not ``claude --version`` probes)."""
    return [
        pid
        for pid in daemon.children()
        if pid_alive(pid) and "--input-format stream-json" in _cmdline(pid)
    ]


def the_claude_pid(daemon: DaemonProcess) -> int:
    pids: list[int] = poll(lambda: claude_pids(daemon), timeout=10)
    assert len(pids) == 1, pids
    return pids[0]


def descendants(pid: int) -> set[int]:
    """``pid``'s live descendants (through /proc/<pid>/task/*/children)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                kids = [int(p) for p in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            for kid in kids:
                if kid not in found:
                    found.add(kid)
                    todo.append(kid)
    return found


def tool_processes(claude: int) -> set[int]:
    """Once the slow tool's ``sleep`` runs: the claude process group and descendants."""

    def sleeping() -> set[int]:
        found = set(pids_in_group(claude)) | descendants(claude)
        return found if any(_cmdline(p).startswith("sleep ") for p in found) else set()

    group: set[int] = poll(sleeping, timeout=TURN_TIMEOUT)
    assert claude in group
    return group


def wait_gone(pids: set[int], timeout: float = GONE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        alive = sorted(p for p in pids if pid_alive(p))
        if not alive:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(
                "still running: " + ", ".join(f"{p} ({_cmdline(p)})" for p in alive)
            )
        time.sleep(0.05)


# --- tests -------------------------------------------------------------------------------


def test_bash_tool_turn_through_the_daemon(
    rig: Rig, daemon_factory: DaemonFactory, fake_anthropic: FakeAnthropicFactory
) -> None:
    server = fake_anthropic(script_bash("echo hi from tool", "It printed: hi from tool."))
    daemon = daemon_factory("bash", env=rig.env)
    with daemon.client() as client:
        configure(client, server)
        sid = start_claude(client, rig, "Run echo hi from tool and tell me what it printed")
        session = wait_terminal(client)
        assert session["status"] == "done", session
        assert "error" not in session

        messages = all_messages(client, sid)
        assert [m["seqId"] for m in messages] == list(range(1, len(messages) + 1))
        assert messages[0]["role"] == "user"
        assert messages[0]["content"].startswith("Run echo hi from tool")
        calls = [m for m in messages if m["role"] == "tool-call"]
        results = [m for m in messages if m["role"] == "tool-result"]
        assert [c["content"] for c in calls] == ["echo hi from tool"]
        assert calls[0]["toolName"] == "Bash"
        assert len(results) == 1
        assert "hi from tool" in results[0]["content"]
        assert results[0]["toolName"] == "Bash"
        assert results[0]["toolUseId"] == calls[0]["toolUseId"]
        assert not results[0].get("isError")
        assert messages.index(calls[0]) < messages.index(results[0])
        assert messages[-1]["role"] == "assistant"
        assert messages[-1]["content"] == "It printed: hi from tool."

        assert session["costUsd"] > 0
        assert session["inputTokens"] > 0 and session["outputTokens"] > 0
        assert "cacheReadTokens" in session and "cacheCreationTokens" in session
        assert session["providerSessionId"] == sid  # launched with --session-id <sessionId>
        assert session["lastSeqId"] == len(messages) == session["messageCount"]

    assert len(server.requests) == 2
    last = server.requests[1]["body"]["messages"][-1]
    assert last["role"] == "user" and last["content"][0]["type"] == "tool_result"


def test_follow_up_prompt_uses_the_same_process(
    rig: Rig, daemon_factory: DaemonFactory, fake_anthropic: FakeAnthropicFactory
) -> None:
    server = fake_anthropic([text_reply("First answer: noted 7."), text_reply("Second: 42.")])
    daemon = daemon_factory("follow", env=rig.env)
    with daemon.client() as client:
        configure(client, server)
        sid = start_claude(client, rig, "Remember the number 7.")
        first = wait_terminal(client)
        assert first["status"] == "done", first
        first_pid = the_claude_pid(daemon)

        reply = client.call("agent.prompt", {"projectId": PROJECT, "prompt": "Now times 6."})
        assert reply["sessionId"] == sid and reply["status"] == "running"
        session = wait_terminal(client)
        assert session["status"] == "done", session
        assert the_claude_pid(daemon) == first_pid  # no relaunch
        assert pid_alive(first_pid)
        assert session["costUsd"] > first["costUsd"] > 0
        assert session["inputTokens"] > first["inputTokens"]

        messages = all_messages(client, sid)
        assert [m["seqId"] for m in messages] == list(range(1, len(messages) + 1))
        users = [m for m in messages if m["role"] == "user"]
        assert [u["content"] for u in users] == ["Remember the number 7.", "Now times 6."]
        assert users[1]["seqId"] == reply["seqId"]
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        assert answers == ["First answer: noted 7.", "Second: 42."]

    assert len(server.requests) == 2
    texts = message_texts(server.requests[1]["body"])
    assert any("Remember the number 7." in t for t in texts)
    assert "First answer: noted 7." in texts
    assert any("Now times 6." in t for t in texts)


def test_stop_during_a_slow_tool_leaves_no_process(
    rig: Rig, daemon_factory: DaemonFactory, fake_anthropic: FakeAnthropicFactory
) -> None:
    server = fake_anthropic(script_slow_tool(30, "Resumed after the stop."))
    daemon = daemon_factory("stop", env=rig.env)
    with daemon.client() as client:
        configure(client, server)
        sid = start_claude(client, rig, "Wait a while")
        group = tool_processes(the_claude_pid(daemon))
        assert session_of(client)["status"] == "running"

        began = time.monotonic()
        stopped = client.call("agent.stop", {"projectId": PROJECT}, timeout=20)
        assert stopped == {"sessionId": sid, "status": "done"}
        wait_gone(group)
        took = time.monotonic() - began

        messages = all_messages(client, sid)
        assert messages[-1]["role"] == "system" and messages[-1]["content"] == "stopped"
        assert [m["seqId"] for m in messages] == list(range(1, len(messages) + 1))
        session = session_of(client)
        assert session["status"] == "done" and "error" not in session
        assert claude_pids(daemon) == []
        assert took < 10, took
        assert len(server.requests) == 1  # the model was not asked again

        # a later prompt resumes the conversation in a new process
        client.call("agent.prompt", {"projectId": PROJECT, "prompt": "Go on"})
        assert "--resume" in _cmdline(the_claude_pid(daemon)).split()
        assert wait_terminal(client)["status"] == "done"
        assert all_messages(client, sid)[-1]["content"] == "Resumed after the stop."
    assert len(server.requests) == 2
    texts = message_texts(server.requests[1]["body"])
    assert any("Wait a while" in t for t in texts)
    assert any("Go on" in t for t in texts)


def test_daemon_stop_during_a_slow_tool_leaves_no_process(
    rig: Rig, daemon_factory: DaemonFactory, fake_anthropic: FakeAnthropicFactory
) -> None:
    server = fake_anthropic(script_slow_tool(30))
    daemon = daemon_factory("shutdown", env=rig.env)
    with daemon.client() as client:
        configure(client, server)
        start_claude(client, rig, "Wait a while")
        group = tool_processes(the_claude_pid(daemon))
    assert daemon.stop(timeout=20) == 0
    wait_gone(group)
    assert len(server.requests) == 1


class ToolProcessesSurvived(AssertionError):
    """The tool processes of a claude that died are still running."""


def test_crashed_claude_leaves_no_tool_process(
    rig: Rig, daemon_factory: DaemonFactory, fake_anthropic: FakeAnthropicFactory
) -> None:
    server = fake_anthropic(script_slow_tool(30))
    daemon = daemon_factory("crash", env=rig.env)
    with daemon.client() as client:
        configure(client, server)
        start_claude(client, rig, "Wait a while")
        claude = the_claude_pid(daemon)
        group = tool_processes(claude)
        commands = {pid: _cmdline(pid) for pid in group}
        try:
            os.kill(claude, signal.SIGKILL)  # as a crash or the OOM killer would
            session = wait_terminal(client)
            assert session["status"] == "error", session
            assert "signal 9" in session["error"], session["error"]
            try:
                wait_gone(group, timeout=2.0)
            except AssertionError as exc:
                raise ToolProcessesSurvived(str(exc)) from None
        finally:
            for pid, command in commands.items():
                if pid_alive(pid) and _cmdline(pid) == command:
                    os.kill(pid, signal.SIGKILL)
            wait_gone(group)


def test_resume_after_a_daemon_restart(
    rig: Rig, daemon_factory: DaemonFactory, fake_anthropic: FakeAnthropicFactory
) -> None:
    server = fake_anthropic(
        [text_reply("Noted: the code word is PAPAYA."), text_reply("It was PAPAYA.")]
    )
    first = daemon_factory("resume", env=rig.env)
    with first.client() as client:
        configure(client, server)
        sid = start_claude(client, rig, "The code word is PAPAYA. Remember it.")
        session = wait_terminal(client)
        assert session["status"] == "done", session
        provider_sid = session["providerSessionId"]
        old_claude = the_claude_pid(first)
    assert first.stop(timeout=20) == 0
    wait_gone({old_claude})
    # the CLI saved the conversation under the private HOME
    assert list((rig.home / ".claude" / "projects").glob(f"*/{provider_sid}.jsonl"))

    second = daemon_factory("resume", env=rig.env)  # same data dir, same HOME
    with second.client() as client:
        restored = client.call("session.restore", {"projectId": PROJECT})
        assert restored["restored"] is True
        assert restored["session"]["sessionId"] == sid
        reply = client.call(
            "agent.prompt", {"projectId": PROJECT, "prompt": "What was the code word?"}
        )
        assert reply["sessionId"] == sid
        argv = _cmdline(the_claude_pid(second)).split()
        assert argv[argv.index("--resume") + 1] == provider_sid
        assert "--session-id" not in argv
        resumed = wait_terminal(client)
        assert resumed["status"] == "done", resumed
        assert resumed["providerSessionId"] == provider_sid
        assert resumed["costUsd"] > session["costUsd"] > 0

        messages = all_messages(client, sid)
        assert [m["seqId"] for m in messages] == list(range(1, len(messages) + 1))
        assert messages[-1]["role"] == "assistant"
        assert messages[-1]["content"] == "It was PAPAYA."

    assert len(server.requests) == 2
    texts = message_texts(server.requests[1]["body"])
    assert any("The code word is PAPAYA." in t for t in texts)
    assert "Noted: the code word is PAPAYA." in texts
    assert any("What was the code word?" in t for t in texts)


@pytest.mark.parametrize(
    ("status", "words"),
    [(529, ("529", "overloaded")), (401, ("401", "authentication", "api key"))],
)
def test_api_error_ends_the_session_in_error(
    status: int,
    words: tuple[str, ...],
    rig: Rig,
    daemon_factory: DaemonFactory,
    fake_anthropic: FakeAnthropicFactory,
) -> None:
    # the first try and the one retry fail; the next request succeeds
    server = fake_anthropic([error(status), error(status), text_reply("Back again.")])
    daemon = daemon_factory(f"err{status}", env=rig.env)
    with daemon.client() as client, Subscriber(daemon.events_url) as sub:
        sub.wait_connected(client, timeout=5.0)
        configure(client, server)
        sid = start_claude(client, rig, "Say hello")
        _topic, frame = sub.wait_for(
            lambda _t, f: (
                f.get("event") == "notification"
                and f["data"].get("kind") == "agent_error"
                and f["data"].get("sessionId") == sid
            ),
            TURN_TIMEOUT,
        )
        note = frame["data"]
        assert note["variant"] == "error" and note["projectId"] == PROJECT

        session = wait_terminal(client)
        assert session["status"] == "error", session
        reason = session["error"].lower()
        assert any(word in reason for word in words), session["error"]
        assert session["error"] in note["message"]

        messages = all_messages(client, sid)
        errors = [m for m in messages if m["role"] == "system" and "error" in m["content"].lower()]
        assert len(errors) == 1, messages  # reported once, not by both the line and the result
        assert errors[0]["content"].endswith(session["error"])
        listed = client.call("notifications.list", {"limit": 100})["notifications"]
        assert any(n["id"] == note["id"] for n in listed)
        assert len(server.requests) == 2  # CLAUDE_CODE_MAX_RETRIES=1: one retry

        # the process survived the failed turn: a new prompt continues in it
        claude = the_claude_pid(daemon)
        client.call("agent.prompt", {"projectId": PROJECT, "prompt": "Try again"})
        session = wait_terminal(client)
        assert session["status"] == "done" and "error" not in session, session
        assert all_messages(client, sid)[-1]["content"] == "Back again."
        assert the_claude_pid(daemon) == claude


@pytest.mark.skipif(not IS_ROOT, reason="the CLI refuses bypassPermissions only as root")
def test_bypass_as_root_without_sandbox_is_an_error_with_the_cli_reason(
    rig: Rig, daemon_factory: DaemonFactory, fake_anthropic: FakeAnthropicFactory
) -> None:
    server = fake_anthropic(script_bash("echo must not run"))
    # IS_SANDBOX in the daemon's own env must not reach the CLI (only the operator's does)
    daemon = daemon_factory("root", env=dict(rig.env, IS_SANDBOX="1"))
    with daemon.client() as client:
        configure(client, server, sandbox=False)
        sid = start_claude(client, rig, "Run echo")
        session = wait_terminal(client)
        assert session["status"] == "error", session
        assert "cannot be used with root/sudo privileges" in session["error"], session["error"]
        assert "exited with code 1" in session["error"]
        messages = all_messages(client, sid)
        assert messages[-1]["role"] == "system"
        assert "cannot be used with root/sudo privileges" in messages[-1]["content"]
        assert claude_pids(daemon) == []
    assert server.requests == []


def test_daemon_info_reports_the_claude_version(
    rig: Rig, claude_bin: Path, daemon_factory: DaemonFactory
) -> None:
    version = check_claude_version(claude_bin).splitlines()[0]
    daemon = daemon_factory("info", env=rig.env)
    with daemon.client() as client:
        claude = client.call("daemon.info")["providers"]["claude"]
    assert claude["available"] is True, claude
    assert version in claude["detail"]
    assert str(claude_bin.parent) in claude["detail"]


def test_claude_not_found_is_provider_unavailable(
    short_tmp: Path, daemon_factory: DaemonFactory
) -> None:
    system_wide = [p for p in FALLBACK_LOCATIONS if p.startswith("/") and os.path.exists(p)]
    if system_wide:
        pytest.skip(f"a system-wide claude is always found: {system_wide}")
    empty = _rig(short_tmp / "nothing", str(short_tmp / "nothing" / "bin"))
    (short_tmp / "nothing" / "bin").mkdir()
    daemon = daemon_factory("missing", env=empty.env)
    with daemon.client() as client:
        claude = client.call("daemon.info")["providers"]["claude"]
        assert claude["available"] is False
        searched = str(short_tmp / "nothing" / "bin" / "claude")
        assert searched in claude["detail"]
        assert str(empty.home / ".local" / "bin" / "claude") in claude["detail"]
        with pytest.raises(ProviderUnavailable) as raised:
            start_claude(client, empty, "hello")
        assert searched in str(raised.value.data.get("detail"))
        assert client.call("session.get", {"projectId": PROJECT})["session"] is None

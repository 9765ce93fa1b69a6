"""The codex provider through a real daemon: the real `codex app-server` (installed
from npm into the test cache) against the fake Responses API server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.protocol.client import Client, Subscriber
from tests.conftest import DaemonFactory
from tests.integration.helpers import all_messages, poll, wait_status
from tests.support import fake_openai as fo
from tests.support.codex_cli import codex_config_toml
from tests.support.proc import descendants, pid_alive


@pytest.fixture
def codex_daemon(
    daemon_factory: DaemonFactory, short_tmp: Path
) -> Iterator[tuple[DaemonFactory, dict[str, str]]]:
    home, tmp = short_tmp / "home", short_tmp / "tmp"
    home.mkdir()
    tmp.mkdir()
    yield daemon_factory, {"HOME": str(home), "TMPDIR": str(tmp)}


def configure(client: Client, codex_bin: Path, server: fo.FakeOpenAI) -> None:
    settings = {
        "codex": {
            "config": {
                "bin": str(codex_bin),
                "configToml": codex_config_toml(server.port),
                "env": {"OPENAI_API_KEY": "dummy"},
            }
        }
    }
    client.call("settings.set", {"key": "provider_settings", "value": json.dumps(settings)})


def start(client: Client, project: str, prompt: str, cwd: Path, **extra: object) -> str:
    params = {
        "projectId": project,
        "provider": "codex",
        "prompt": prompt,
        "cwd": str(cwd),
        "permissionMode": "bypassPermissions",
    }
    params.update(extra)
    return str(client.call("agent.start", params)["sessionId"])


def provider_pid(daemon_pid: int) -> int:
    """The one codex app-server the daemon runs (its helpers and tools run under it)."""
    found = [p for p in descendants(daemon_pid) if _cmdline(p).endswith(" app-server ")]
    assert len(found) == 1, found
    return found[0]


def last_answer(client: Client, session_id: str) -> str:
    return str(
        [m for m in all_messages(client, session_id) if m["role"] == "assistant"][-1]["content"]
    )


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_shell_command_runs_and_a_second_turn_uses_the_same_process(
    codex_daemon: tuple[DaemonFactory, dict[str, str]], codex_bin: Path, short_tmp: Path
) -> None:
    factory, env = codex_daemon
    script = [*fo.script_exec("echo hi", "It printed hi."), fo.text_reply("Second answer.")]
    with fo.FakeOpenAI(script) as server:
        daemon = factory("c", env=env)
        with daemon.client() as client, Subscriber(daemon.events_url) as sub:
            sub.wait_connected(client)
            configure(client, codex_bin, server)
            sid = start(client, "cx", "Run echo hi", short_tmp)
            assert wait_status(sub, sid, timeout=60)["status"] == "done"
            pid = provider_pid(daemon.pid)
            messages = all_messages(client, sid)
            call = next(m for m in messages if m["role"] == "tool-call")
            result = next(m for m in messages if m["role"] == "tool-result")
            assert call["toolName"] == "Bash" and call["content"] == "echo hi"
            assert result["content"] == "hi\n"
            assert last_answer(client, sid) == "It printed hi."
            session = client.call("session.get", {"projectId": "cx"})["session"]
            assert session["providerSessionId"] and session["inputTokens"] > 0

            client.call("agent.prompt", {"projectId": "cx", "prompt": "And now?"})
            assert wait_status(sub, sid, timeout=60)["status"] == "done"
            assert provider_pid(daemon.pid) == pid
            assert last_answer(client, sid) == "Second answer."
            assert fo.user_texts(server.requests[-1]["body"])[-2:] == ["Run echo hi", "And now?"]


def test_apply_patch_creates_the_file(
    codex_daemon: tuple[DaemonFactory, dict[str, str]], codex_bin: Path, short_tmp: Path
) -> None:
    factory, env = codex_daemon
    work = short_tmp / "work"
    work.mkdir()
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hello from corral\n*** End Patch\n"
    with fo.FakeOpenAI([fo.reply(fo.apply_patch(patch)), fo.text_reply("Created.")]) as server:
        daemon = factory("p", env=env)
        with daemon.client() as client, Subscriber(daemon.events_url) as sub:
            sub.wait_connected(client)
            configure(client, codex_bin, server)
            sid = start(client, "cp", "Create hello.txt", work)
            assert wait_status(sub, sid, timeout=60)["status"] == "done"
            assert (work / "hello.txt").read_text() == "hello from corral\n"
            call = next(m for m in all_messages(client, sid) if m["role"] == "tool-call")
            assert call["toolName"] == "Write" and call["toolPath"] == str(work / "hello.txt")


def test_http_500_is_a_session_error_and_the_next_prompt_works(
    codex_daemon: tuple[DaemonFactory, dict[str, str]], codex_bin: Path, short_tmp: Path
) -> None:
    factory, env = codex_daemon

    def script(body: dict[str, object]) -> fo.Response:
        if fo.user_texts(body)[-1] == "Try again":
            return fo.text_reply("Recovered.")
        return fo.error(500, "fake internal error")

    with fo.FakeOpenAI(script) as server:
        daemon = factory("e", env=env)
        with daemon.client() as client, Subscriber(daemon.events_url) as sub:
            sub.wait_connected(client)
            configure(client, codex_bin, server)
            sid = start(client, "ce", "Say hello", short_tmp)
            status = wait_status(sub, sid, timeout=60)
            assert status["status"] == "error"
            # Codex 0.169's own words for an HTTP 500 (codexErrorInfo internalServerError)
            assert "temporary errors" in status["error"], status
            client.call("agent.prompt", {"projectId": "ce", "prompt": "Try again"})
            assert wait_status(sub, sid, timeout=60)["status"] == "done"
            assert last_answer(client, sid) == "Recovered."


def test_stop_during_a_long_command_leaves_no_process(
    codex_daemon: tuple[DaemonFactory, dict[str, str]], codex_bin: Path, short_tmp: Path
) -> None:
    factory, env = codex_daemon
    with fo.FakeOpenAI([fo.reply(fo.exec_command("sleep 30")), fo.text_reply("x")]) as server:
        daemon = factory("s", env=env)
        with daemon.client() as client, Subscriber(daemon.events_url) as sub:
            sub.wait_connected(client)
            configure(client, codex_bin, server)
            sid = start(client, "cs", "Sleep", short_tmp)
            sleepers = poll(
                lambda: [p for p in descendants(daemon.pid) if "sleep 30" in _cmdline(p)],
                timeout=30,
            )
            app = provider_pid(daemon.pid)
            began = time.monotonic()
            result = client.call("agent.stop", {"projectId": "cs"}, timeout=30)
            assert result["status"] == "done"
            assert time.monotonic() - began < 15
            assert poll(lambda: not any(pid_alive(p) for p in [*sleepers, app]), timeout=15)
            assert all_messages(client, sid)[-1]["content"] == "stopped"


def test_resume_after_a_daemon_restart_sends_the_earlier_turn(
    codex_daemon: tuple[DaemonFactory, dict[str, str]], codex_bin: Path, short_tmp: Path
) -> None:
    factory, env = codex_daemon
    script = [fo.text_reply("The code word is PAPAYA."), fo.text_reply("PAPAYA.")]
    with fo.FakeOpenAI(script) as server:
        first = factory("r", env=env)
        with first.client() as client, Subscriber(first.events_url) as sub:
            sub.wait_connected(client)
            configure(client, codex_bin, server)
            sid = start(client, "cr", "Remember PAPAYA", short_tmp)
            assert wait_status(sub, sid, timeout=60)["status"] == "done"
        first.stop()
        again = factory("r", env=env)
        with again.client() as client, Subscriber(again.events_url) as sub:
            sub.wait_connected(client)
            assert client.call("session.restore", {"projectId": "cr"})["restored"] is True
            client.call("agent.prompt", {"projectId": "cr", "prompt": "What was the word?"})
            assert wait_status(sub, sid, timeout=60)["status"] == "done"
        body = server.requests[-1]["body"]
        assert "The code word is PAPAYA." in fo.assistant_texts(body)
        assert fo.user_texts(body)[-1] == "What was the word?"

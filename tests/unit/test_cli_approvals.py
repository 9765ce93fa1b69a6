"""`corral approvals` / `approve` and the approvals of `corral watch`, without a daemon:
which approval a ref names, the lines and tables printed, the commands against a
scripted daemon (``Ctx.call`` replaced), and the dashboard's approvals panel, keys,
key parsing and the key reader on a pseudo-terminal."""

from __future__ import annotations

import os
import termios
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from corral.protocol.errors import NoSession, NotFound, RpcError
from corral.protocol.transport import DaemonUnreachable
from corral.supervisor.cli import app
from corral.supervisor.cli.approvals import choose
from corral.supervisor.cli.common import CommandFailed, Ctx
from corral.supervisor.cli.dashboard import KeyAction, WatchState, key_action, render
from corral.supervisor.cli.render import approvals_table, decision_line
from corral.supervisor.cli.watch import KeyReader, Watcher, handle_keys, parse_keys

NOW = 1_700_000_000_000
A1 = "1a2b3c4d" + "0" * 24
A2 = "1a2b9999" + "1" * 24
B1 = "beefcafe" + "2" * 24


def approval(approval_id: str, project: str = "api", summary: str = "echo hi > out.txt",
             tool: str = "Bash", created: int = NOW - 65_000) -> dict[str, Any]:  # fmt: skip
    return {
        "approvalId": approval_id,
        "sessionId": "s-" + project,
        "projectId": project,
        "provider": "mock",
        "toolName": tool,
        "input": {"command": summary},
        "summary": summary,
        "createdAt": created,
    }


def text(renderable: Any, width: int = 120) -> list[str]:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return [line.rstrip() for line in console.export_text().splitlines()]


# -- which approval ------------------------------------------------------------------


def test_choose_the_only_one_or_a_unique_prefix() -> None:
    one, two = approval(A1), approval(A2, summary="rm -rf build")
    assert choose([one], "api", None) is one
    assert choose([one, two], "api", "1a2b3") is one
    assert choose([one, two], "api", "1a2b9") is two
    assert choose([one, two], "api", A2) is two
    with pytest.raises(CommandFailed, match="no pending approval in project 'api'") as none:
        choose([], "api", None)
    assert none.value.code == 1
    with pytest.raises(CommandFailed) as several:
        choose([one, two], "api", None)
    assert "has 2 pending approvals" in str(several.value)
    assert "1a2b3c4d  Bash  echo hi > out.txt" in str(several.value)
    assert "1a2b9999  Bash  rm -rf build" in str(several.value)
    with pytest.raises(CommandFailed, match="'1a2b' matches 2 pending approvals"):
        choose([one, two], "api", "1a2b")
    with pytest.raises(CommandFailed, match="no pending approval of project 'api' matches 'ff'"):
        choose([one, two], "api", "ff")
    # a full id nothing listed matches goes to the daemon, whose not_found answers
    assert choose([one], "api", B1) == {"approvalId": B1, "projectId": "api"}


def test_decision_lines_and_table() -> None:
    one = approval(A1)
    assert decision_line(one, "allow") == "allowed Bash: echo hi > out.txt (api, approval 1a2b3c4d)"
    assert decision_line(one, "allow", remember=True).startswith(
        "allowed (and remembered for this session) Bash: "
    )
    assert decision_line(one, "deny", message="use make\nplease") == (
        "denied Bash: echo hi > out.txt (api, approval 1a2b3c4d): use make please"
    )
    assert decision_line({"approvalId": B1, "projectId": "web"}, "deny") == (
        "denied (web, approval beefcafe)"
    )
    lines = text(approvals_table([one, approval(B1, "web", "Write [b]src/x.py[/b]", "Write")],
                                 NOW, plain=True))  # fmt: skip
    assert lines[0].split() == ["PROJECT", "APPROVAL", "TOOL", "SUMMARY", "AGE"]
    assert lines[1].split() == [
        "api",
        "1a2b3c4d",
        "Bash",
        "echo",
        "hi",
        ">",
        "out.txt",
        "1m",
        "ago",
    ]
    assert "[b]src/x.py[/b]" in lines[2]  # a summary is text, never rich markup


# -- the commands against a scripted daemon --------------------------------------------


class Script:
    """Stands in for the daemon: answers each method from a table, records the calls."""

    def __init__(self, answers: Mapping[str, Any]) -> None:
        self.answers = dict(answers)
        self.calls: list[tuple[str, Any]] = []

    def call(self, method: str, params: Any = None) -> Any:
        self.calls.append((method, params))
        answer = self.answers[method]
        if isinstance(answer, Exception):
            raise answer
        return answer(params) if callable(answer) else answer


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Iterator[Script]:
    fake = Script({})
    monkeypatch.setattr(
        Ctx, "call", lambda _cx, method, params=None, **_kw: fake.call(method, params)
    )
    yield fake


def corral(*args: str) -> Result:
    env = {"NO_COLOR": "1", "COLUMNS": "200", "CORRAL_RPC": "ipc:///nonexistent/rpc.sock"}
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def test_approvals_lists_them(script: Script) -> None:
    script.answers["approvals.list"] = {"approvals": [approval(A1), approval(B1, "web")]}
    result = corral("approvals")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["PROJECT", "APPROVAL", "TOOL", "SUMMARY", "AGE"]
    assert lines[1].split()[:3] == ["api", "1a2b3c4d", "Bash"]
    assert lines[2].split()[:2] == ["web", "beefcafe"]
    assert script.calls == [("approvals.list", None)]
    script.answers["approvals.list"] = {"approvals": []}
    result = corral("approvals", "web")
    assert result.stdout == "no pending approvals in project web\n"
    assert script.calls[-1] == ("approvals.list", {"projectId": "web"})
    script.answers["approvals.list"] = {"approvals": [approval(A1)]}
    assert corral("approvals", "--json").stdout.startswith('{\n  "approvals": [\n')


def test_approve_the_only_pending_one(script: Script) -> None:
    script.answers["approvals.list"] = {"approvals": [approval(A1)]}
    script.answers["agent.approve"] = lambda p: {"approvalId": p["approvalId"],
                                                 "decision": p["decision"]}  # fmt: skip
    result = corral("approve", "api")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "allowed Bash: echo hi > out.txt (api, approval 1a2b3c4d)\n"
    assert script.calls == [
        ("approvals.list", {"projectId": "api"}),
        ("agent.approve", {"projectId": "api", "approvalId": A1, "decision": "allow"}),
    ]
    result = corral("approve", "api", "1a2b", "--deny", "--message", "use make", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f'{{\n  "approvalId": "{A1}",\n  "decision": "deny"\n}}\n'
    assert script.calls[-1][1] == {
        "projectId": "api", "approvalId": A1, "decision": "deny", "message": "use make"
    }  # fmt: skip
    corral("approve", "api", "--remember")
    assert script.calls[-1][1]["remember"] is True


def test_approve_without_a_clear_target_exits_1(script: Script) -> None:
    script.answers["approvals.list"] = {"approvals": []}
    none = corral("approve", "api")
    assert none.exit_code == 1
    assert none.stderr == "corral: no pending approval in project 'api'\n"
    script.answers["approvals.list"] = {"approvals": [approval(A1), approval(A2)]}
    several = corral("approve", "api")
    assert several.exit_code == 1 and "1a2b3c4d" in several.stderr and "1a2b9999" in several.stderr
    assert [method for method, _ in script.calls] == ["approvals.list", "approvals.list"]
    script.answers["agent.approve"] = NotFound("no pending approval 'x'")
    gone = corral("approve", "api", A1)
    assert gone.exit_code == 1 and "(not_found)" in gone.stderr


@pytest.mark.parametrize(
    ("args", "wrong"),
    [(["--message", "no"], "--message"), (["--deny", "--remember"], "--remember")],
)
def test_approve_usage_errors_change_nothing(script: Script, args: list[str], wrong: str) -> None:
    result = corral("approve", "api", *args)
    assert result.exit_code == 2
    assert wrong in result.stderr
    assert script.calls == []  # refused before asking the daemon anything


# -- the dashboard -------------------------------------------------------------------


def waiting() -> WatchState:
    state = WatchState()
    state.now = NOW
    state.connected = True
    state.set_approvals([approval(B1, "web", "src/x.py", "Write", NOW - 5_000),
                         approval(A1, created=NOW - 65_000)])  # fmt: skip
    return state


def test_approvals_panel_is_at_the_top_with_the_keys() -> None:
    state = waiting()
    state.keys = True
    lines = text(render(state), width=100)
    assert lines[2].startswith("╭─ 2 approvals waiting · ↑/↓ or j/k select ─")
    # oldest first; the selected one shows the keys that answer it
    assert lines[3].split() == ["│", "▶", "api", "Bash", "echo", "hi", ">", "out.txt",
                                "1m", "ago", "a", "allow", "·", "d", "deny", "│"]  # fmt: skip
    assert lines[4].split() == ["│", "web", "Write", "src/x.py", "5s", "ago", "│"]
    assert lines[5].startswith("╰")
    assert "no projects with a current session" in lines[7]
    state.select(1)
    lines = text(render(state), width=100)
    assert "a allow · d deny" in lines[4] and "▶" in lines[4] and "a allow" not in lines[3]
    assert text(render(state), width=100) == lines  # a pure function of the state
    # without keys (a snapshot, a pipe) each row says how to answer it
    state.keys = False
    lines = text(render(state), width=100)
    assert lines[2].startswith("╭─ 2 approvals waiting ─") and "select" not in lines[2]
    assert lines[3].rstrip(" │").endswith("corral approve api 1a2b3c4d")
    assert "▶" not in "".join(lines)
    assert not any("approval" in line for line in text(render(WatchState())))


def test_approval_events_and_the_selection() -> None:
    state = waiting()
    assert [a["approvalId"] for a in state.pending()] == [A1, B1]
    assert state.selected() == state.approvals[A1]
    newer = approval(A2, created=NOW)
    frame = {"event": "approval.requested", "projectId": "api", "data": newer}
    state.apply_event("project/api/approval.requested", frame)
    assert [a["approvalId"] for a in state.pending()] == [A1, B1, A2]
    state.select(1)
    assert state.selected_id == B1
    resolved = {"approvalId": B1, "sessionId": "s-web", "decision": "allow", "by": "client"}
    frame = {"event": "approval.resolved", "projectId": "web", "data": resolved}
    state.apply_event("project/web/approval.resolved", frame)
    # the next one takes the place of the one that went away
    assert B1 not in state.approvals and state.selected() == newer
    state.set_approvals([approval(A1)])  # a refresh: A2 was answered elsewhere
    assert state.selected()["approvalId"] == A1  # type: ignore[index]
    assert state.to_json()["approvals"] == [approval(A1)]
    state.set_approvals([])
    assert state.selected() is None and state.pending() == []


def test_keys_are_actions_of_the_state() -> None:
    state = waiting()
    first, second = state.pending()
    assert key_action(state, "a") == KeyAction("allow", 0, first)
    assert key_action(state, "d") == KeyAction("deny", 0, first)
    assert key_action(state, "up") is None and key_action(state, "k") is None  # at the top
    assert key_action(state, "down") == KeyAction("select", 1)
    assert key_action(state, "j") == KeyAction("select", 1)
    state.select(1)
    assert key_action(state, "a") == KeyAction("allow", 1, second)
    assert key_action(state, "j") is None and key_action(state, "k") == KeyAction("select", 0)
    assert key_action(state, "x") is None and key_action(state, "A") is None
    assert key_action(state, "q") == KeyAction("quit")
    assert key_action(WatchState(), "a") is None and key_action(WatchState(), "q") is not None


def test_parse_terminal_keys() -> None:
    assert parse_keys(b"ad") == ["a", "d"]
    assert parse_keys(b"\x1b[A\x1b[Bj") == ["up", "down", "j"]
    assert parse_keys(b"\x1bOA\x1bOB") == ["up", "down"]  # application cursor mode
    assert parse_keys(b"\x1b[1;5A") == ["up"]  # with a modifier
    assert parse_keys(b"\x1b[3~q") == ["q"]  # delete: dropped
    assert parse_keys(b"\x1b\n\x03\xc3\xa9") == []  # a lone escape, controls, non-ASCII
    assert parse_keys(b"\x1b[") == []  # cut short


class FakeClient:
    def __init__(self, answer: Exception | None = None) -> None:
        self.answer = answer
        self.calls: list[tuple[str, Any]] = []

    def call(self, method: str, params: Any = None) -> Any:
        self.calls.append((method, params))
        if self.answer is not None:
            raise self.answer
        return {"approvalId": params["approvalId"], "decision": params["decision"]}

    def close(self) -> None:
        pass


def watcher_with(answer: Exception | None = None) -> tuple[Watcher, FakeClient]:
    cx = Ctx("ipc:///nonexistent/rpc.sock", "ipc:///nonexistent/events.sock")
    fake = FakeClient(answer)
    cx._client = fake  # type: ignore[assignment]
    watcher = Watcher(cx)
    watcher.state = waiting()
    watcher.state.connected = True
    return watcher, fake


def test_keys_answer_through_agent_approve() -> None:
    watcher, fake = watcher_with()
    assert handle_keys(watcher, ["j", "d"]) is True
    assert fake.calls == [("agent.approve", {"projectId": "web", "approvalId": B1,
                                             "decision": "deny"})]  # fmt: skip
    state = watcher.state
    assert list(state.approvals) == [A1] and state.flash is not None
    assert state.flash[0] == "denied Write: src/x.py (web, approval beefcafe)"
    state.now = state.flash[2]
    assert "denied Write: src/x.py" in "\n".join(text(render(state)))
    state.now += 10_000
    assert "denied Write" not in "\n".join(text(render(state)))  # gone after a while
    assert handle_keys(watcher, ["x"]) is False and fake.calls[1:] == []
    assert handle_keys(watcher, ["a", "q", "a"]) is None  # quits, after the first key
    assert fake.calls[1][1]["decision"] == "allow" and len(fake.calls) == 2 and not state.approvals


@pytest.mark.parametrize(
    ("error", "kept"),
    [(NotFound("no pending approval"), False), (NoSession("no session"), False),
     (RpcError("boom"), True)],
)  # fmt: skip
def test_a_refused_answer_is_shown(error: RpcError, kept: bool) -> None:
    watcher, _fake = watcher_with(error)
    assert handle_keys(watcher, ["a"]) is True
    assert (A1 in watcher.state.approvals) is kept  # answered elsewhere: gone
    assert watcher.state.flash is not None and watcher.state.flash[1] == "red"
    assert watcher.state.flash[0].startswith("approval 1a2b3c4d: ")


def test_an_unreachable_daemon_decides_nothing() -> None:
    watcher, _fake = watcher_with(DaemonUnreachable("ipc:///x", 1.0))
    assert watcher.answer(approval(A1), "allow") is False
    assert A1 in watcher.state.approvals and not watcher.state.connected
    assert watcher.state.flash is not None and "nothing was decided" in watcher.state.flash[0]


def test_key_reader_on_a_terminal() -> None:
    master, slave = os.openpty()
    with os.fdopen(slave, "rb", buffering=0) as tty_in:
        try:
            before = termios.tcgetattr(slave)
            reader = KeyReader.open(tty_in)
            assert reader is not None
            with reader:
                mode = termios.tcgetattr(slave)
                assert not mode[3] & (termios.ICANON | termios.ECHO)  # cbreak: keys at once
                assert mode[3] & termios.ISIG  # Ctrl-C still interrupts
                os.write(master, b"j\x1b[Ba")
                keys: list[str] = []
                deadline = time.monotonic() + 5
                while len(keys) < 3 and time.monotonic() < deadline:
                    keys += reader.keys()
                    time.sleep(0.01)
                assert keys == ["j", "down", "a"]
            assert termios.tcgetattr(slave) == before  # the terminal is given back
            assert not reader._thread.is_alive()
        finally:
            os.close(master)
    with open(os.devnull, "rb") as not_a_tty:
        assert KeyReader.open(not_a_tty) is None

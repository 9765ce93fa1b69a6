"""Approvals with the real native ``codex app-server`` driven through CodexProtocol.

No daemon: the driver of ``test_codex_app_server_raw.py`` spawns the app-server
as corral launches it, feeds its stdout to a :class:`CodexProtocol`, and these
tests answer its ``approval`` items through ``CodexProtocol.answer`` exactly as
the session would. The fake model asks for shell commands and patches; the
approval policy is the one that asks (``untrusted``, through
``providerConfig.approvalPolicy``), except where the test is about the
default mapping. Every process is stopped by PID (the driver's ``close``).

Without npm the tests skip, except under CI, where a missing npm fails them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.actors.normalized import Normalized
from corral.actors.ports import ApprovalDecision
from tests.integration import test_codex_app_server_raw as raw
from tests.support import fake_openai as fo

# the raw driver's fixtures, used here by name
codex_bin = raw.codex_bin
app_server = raw.app_server

AppServer = raw.AppServer
kinds = raw.kinds

ASKS: dict[str, Any] = {"providerConfig": {"approvalPolicy": "untrusted"}}
ALLOW = ApprovalDecision(allow=True)


def approvals(app: raw.AppServer) -> list[Normalized]:
    return kinds(app.items, "approval")


def wait_for_approval(app: raw.AppServer, count: int = 1) -> Normalized:
    """Pump until the ``count``-th approval item; nothing may end the turn first."""
    app.pump(lambda _items: len(approvals(app)) >= count or bool(app.turn_ends()))
    assert not app.turn_ends(), f"the turn ended without asking: {app.items}"
    return approvals(app)[count - 1]


def answer(app: raw.AppServer, item: Normalized, decision: ApprovalDecision) -> None:
    assert item.raw is not None
    lines = app.protocol.answer(item.raw["request"], decision)
    assert len(lines) == 1
    app.write(lines)


def finish_turn(app: raw.AppServer) -> Normalized:
    app.pump(lambda _items: bool(app.turn_ends()))
    return app.turn_ends()[-1]


def test_allow_runs_the_command_and_the_turn_completes(
    app_server: Callable[..., raw.AppServer],
) -> None:
    with fo.FakeOpenAI(fo.script_exec("echo hi > out.txt", "Wrote it.")) as server:
        app = app_server(server, **ASKS)
        app.write(app.protocol.opening("Write hi to out.txt"))
        item = wait_for_approval(app)
        (call,) = kinds(app.items, "tool_call")
        assert item.tool_name == "Bash" and item.tool_input == {"command": "echo hi > out.txt"}
        assert item.text == "echo hi > out.txt" and item.tool_id == call.tool_id
        assert item.raw is not None and item.raw["request"]["method"] == (
            "item/commandExecution/requestApproval"
        )
        assert not (app.work / "out.txt").exists()  # Codex waits for the answer
        answer(app, item, ALLOW)
        end = finish_turn(app)
        assert not end.is_error
        assert (app.work / "out.txt").read_text() == "hi\n"
        (result,) = kinds(app.items, "tool_result")
        assert result.tool_id == call.tool_id and not result.is_error
        assert [n.text for n in kinds(app.items, "text")] == ["Wrote it."]
        assert app.protocol.pending_approvals == []


def test_deny_runs_nothing_and_the_turn_goes_on(
    app_server: Callable[..., raw.AppServer],
) -> None:
    with fo.FakeOpenAI(fo.script_exec("echo hi > out.txt", "I was not allowed.")) as server:
        app = app_server(server, **ASKS)
        app.write(app.protocol.opening("Write hi to out.txt"))
        item = wait_for_approval(app)
        answer(app, item, ApprovalDecision(allow=False, message="not in this repo"))
        end = finish_turn(app)
        assert not end.is_error  # decline: the model goes on and ends its turn
        assert not (app.work / "out.txt").exists()
        (result,) = kinds(app.items, "tool_result")
        assert result.is_error and result.text == "Declined: the command was not run"
        assert [n.text for n in kinds(app.items, "text")] == ["I was not allowed."]
        (output,) = fo.function_outputs(server.requests[1]["body"])
        assert "rejected by user" in output  # what Codex tells the model (no deny text)
        assert "not in this repo" not in output


def test_remember_lets_the_identical_command_run_without_asking(
    app_server: Callable[..., raw.AppServer],
) -> None:
    same = fo.exec_command("echo hi >> out.txt")
    script = [
        fo.reply(same),
        fo.reply(fo.exec_command("echo hi >> out.txt")),
        fo.reply(fo.exec_command("echo other >> out.txt")),
        fo.text_reply("Done."),
    ]
    with fo.FakeOpenAI(script) as server:
        app = app_server(server, **ASKS)
        app.write(app.protocol.opening("Append twice"))
        first = wait_for_approval(app)
        assert first.raw is not None and first.raw["suggestions"][0]["decision"] == (
            "acceptForSession"
        )
        answer(app, first, ApprovalDecision(allow=True, remember=True))
        other = wait_for_approval(app, 2)  # the second identical command did not ask
        assert other.tool_input == {"command": "echo other >> out.txt"}
        assert (app.work / "out.txt").read_text() == "hi\nhi\n"
        answer(app, other, ALLOW)
        assert not finish_turn(app).is_error
        assert len(approvals(app)) == 2
        assert (app.work / "out.txt").read_text() == "hi\nhi\nother\n"


def test_the_default_mode_runs_a_workspace_command_without_asking(
    app_server: Callable[..., raw.AppServer],
) -> None:
    """permissionMode default = on-request + workspace-write: the sandbox allows it."""
    with fo.FakeOpenAI(fo.script_exec("echo hi > out.txt", "Wrote it.")) as server:
        app = app_server(server, permissionMode="default")
        items = app.run_turn("Write hi to out.txt", first=True)
        assert kinds(items, "approval") == []
        assert not items[-1].is_error
        assert (app.work / "out.txt").read_text() == "hi\n"


def test_interrupt_cancels_the_pending_approval_and_the_next_turn_works(
    app_server: Callable[..., raw.AppServer],
) -> None:
    script = [fo.reply(fo.exec_command("echo hi > out.txt")), fo.text_reply("Next turn.")]
    with fo.FakeOpenAI(script) as server:
        app = app_server(server, **ASKS)
        app.write(app.protocol.opening("Write hi to out.txt"))
        item = wait_for_approval(app)
        app.write(app.protocol.interrupt())
        end = finish_turn(app)
        assert end.is_error and end.text == "interrupted"
        assert not (app.work / "out.txt").exists()
        (result,) = kinds(app.items, "tool_result")
        assert result.is_error
        assert item.raw is not None and app.protocol.answer(item.raw["request"], ALLOW) == []
        after = app.run_turn("Go on")
        assert [n.text for n in kinds(after, "text")] == ["Next turn."]


def test_a_patch_asks_as_write_and_allow_writes_the_file(
    app_server: Callable[..., raw.AppServer],
) -> None:
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hello from corral\n*** End Patch\n"
    with fo.FakeOpenAI([fo.reply(fo.apply_patch(patch)), fo.text_reply("Created.")]) as server:
        app = app_server(server, **ASKS)
        app.write(app.protocol.opening("Create hello.txt"))
        item = wait_for_approval(app)
        path = str(app.work / "hello.txt")
        assert item.tool_name == "Write"
        assert item.tool_input == {"file_path": path, "content": "hello from corral\n"}
        assert item.text == f"Write {path}"
        assert not Path(path).exists()
        answer(app, item, ALLOW)
        assert not finish_turn(app).is_error
        assert Path(path).read_text() == "hello from corral\n"


def test_a_permissions_request_grants_writes_outside_the_workspace(
    app_server: Callable[..., raw.AppServer], tmp_path: Path
) -> None:
    outside = tmp_path / "reports"
    outside.mkdir()
    ask = {"reason": "Write the report", "permissions": {"file_system": {"write": [str(outside)]}}}
    script = [
        fo.reply(fo.function_call("request_permissions", ask)),
        fo.reply(fo.exec_command(f"echo done > {outside}/report.txt")),
        fo.text_reply("Reported."),
    ]
    config = {
        "features.request_permissions_tool": True,
        # /tmp is writable in the sandbox by default; the test's dirs live there
        "sandbox_workspace_write.exclude_slash_tmp": True,
        "sandbox_workspace_write.exclude_tmpdir_env_var": True,
    }
    with fo.FakeOpenAI(script) as server:
        app = app_server(server, permissionMode="default", providerConfig={"config": config})
        app.write(app.protocol.opening("Write the report"))
        item = wait_for_approval(app)
        assert item.tool_name == "Permissions"
        assert item.text == f"grant write {outside} (Write the report)"
        answer(app, item, ApprovalDecision(allow=True, remember=True))
        assert not finish_turn(app).is_error
        assert (outside / "report.txt").read_text() == "done\n"
        granted = fo.function_outputs(server.requests[1]["body"])[0]
        assert '"scope":"session"' in granted and str(outside) in granted

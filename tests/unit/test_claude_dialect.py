"""The Claude Code dialect: permission prompts in, answers out, other requests refused.

Shapes are checked line by line, then against transcripts recorded from the real
CLI (``tests/fixtures/claude/approvals``: its stdout, and what corral wrote to its
stdin, which the CLI accepted), then with the mock agent, which asks exactly as
the CLI does.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from corral.actors.normalized import Normalized
from corral.actors.ports import ApprovalDecision, ExitReport, LaunchRequest
from corral.supervisor.providers.api import ProviderContext
from corral.supervisor.providers.claude import approvals, dialect
from corral.supervisor.providers.claude.dialect import ClaudeDialect
from corral.supervisor.providers.mock.adapter import MockProvider
from corral.supervisor.providers.mock.permissions import Permissions

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "claude" / "approvals"

BASH_REQUEST: dict[str, Any] = {
    "subtype": "can_use_tool",
    "tool_name": "Bash",
    "display_name": "Bash",
    "input": {"command": "echo hi > out.txt", "description": "Write hi"},
    "description": "Write hi",
    "permission_suggestions": [
        {
            "type": "addRules",
            "rules": [{"toolName": "Bash", "ruleContent": "echo hi *"}],
            "behavior": "allow",
            "destination": "localSettings",
        },
        {"type": "addDirectories", "directories": ["/w"], "destination": "session"},
    ],
    "blocked_path": "/w/out.txt",
    "tool_use_id": "toolu_1",
}
QUESTION_INPUT: dict[str, Any] = {
    "questions": [
        {
            "question": "Which color?",
            "header": "Color",
            "options": [
                {"label": "Red", "description": "warm"},
                {"label": "Blue", "description": "cool"},
            ],
            "multiSelect": False,
        }
    ]
}


def line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


def control(request: dict[str, Any], request_id: str = "req-1") -> bytes:
    return line({"type": "control_request", "request_id": request_id, "request": request})


def decoded(lines: list[bytes]) -> list[dict[str, Any]]:
    for raw in lines:
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    return [orjson.loads(raw) for raw in lines]


def approval_of(request: dict[str, Any], request_id: str = "req-1") -> Normalized:
    items, replies = ClaudeDialect().feed(control(request, request_id))
    assert replies == []
    assert [n.kind for n in items] == ["approval"]
    return items[0]


@pytest.fixture(autouse=True)
def fresh_refusal_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """The once-per-subtype log is process-wide; each test starts with none logged."""
    monkeypatch.setattr(dialect, "_LOGGED_SUBTYPES", set())


# --- can_use_tool -> approval -------------------------------------------------------


def test_bash_prompt_becomes_one_approval() -> None:
    n = approval_of(BASH_REQUEST)
    assert (n.tool_name, n.tool_input, n.tool_id) == ("Bash", BASH_REQUEST["input"], "toolu_1")
    assert n.text == "echo hi > out.txt"
    assert n.raw is not None
    assert n.raw["request"] == {
        "request_id": "req-1",
        "tool_name": "Bash",
        "input": BASH_REQUEST["input"],
    }
    # the CLI's suggestions, kept for this session only, plus the written path
    assert n.raw["suggestions"] == [
        {
            "type": "addRules",
            "rules": [{"toolName": "Bash", "ruleContent": "echo hi *"}],
            "behavior": "allow",
            "destination": "session",
        },
        {"type": "addDirectories", "directories": ["/w"], "destination": "session"},
        {
            "type": "addRules",
            "rules": [{"toolName": "Edit", "ruleContent": "//w/out.txt"}],
            "behavior": "allow",
            "destination": "session",
        },
    ]


def test_prompt_without_tool_use_id_or_suggestions() -> None:
    n = approval_of({"subtype": "can_use_tool", "tool_name": "WebFetch", "input": {}})
    assert n.tool_id is None
    assert n.text == "WebFetch"
    assert n.raw == {
        "request": {"request_id": "req-1", "tool_name": "WebFetch", "input": {}},
        "suggestions": [],
    }


@pytest.mark.parametrize(
    ("tool", "tool_input", "summary"),
    [
        ("Write", {"file_path": "/w/a.py", "content": "x"}, "Write /w/a.py"),
        ("Edit", {"file_path": "/w/a.py", "old_string": "a", "new_string": "b"}, "Edit /w/a.py"),
        (
            "NotebookEdit",
            {"notebook_path": "/w/n.ipynb", "new_source": ""},
            "NotebookEdit /w/n.ipynb",
        ),
        (
            "WebFetch",
            {"url": "https://example.org", "prompt": "read"},
            "WebFetch https://example.org",
        ),
        ("Grep", {"pattern": "TODO"}, "Grep TODO"),
        ("mcp__srv__do", {"count": 3}, "mcp__srv__do"),
        ("Bash", {"command": "for f in *; do\n  echo $f\ndone"}, "for f in *; do echo $f done"),
        ("AskUserQuestion", QUESTION_INPUT, "Question: Which color? [Red | Blue]"),
        ("AskUserQuestion", {"questions": "?"}, "Question"),
    ],
)
def test_summary_is_one_line(tool: str, tool_input: dict[str, Any], summary: str) -> None:
    n = approval_of({"subtype": "can_use_tool", "tool_name": tool, "input": tool_input})
    assert n.text == summary


def test_summary_of_several_questions() -> None:
    second = {"question": "Ship it?", "header": "Ship", "options": [], "multiSelect": False}
    tool_input = {"questions": [*QUESTION_INPUT["questions"], second]}
    assert approvals.summarize("AskUserQuestion", tool_input) == (
        "Question: Which color? [Red | Blue]; Ship it?"
    )


def test_summary_is_bounded() -> None:
    text = approvals.summarize("Bash", {"command": "x" * 5000})
    assert len(text) == approvals.SUMMARY_CHARS and text.endswith("…")


def test_remember_keeps_only_grants_for_this_session() -> None:
    request = {
        "tool_name": "Write",
        "permission_suggestions": [
            {"type": "setMode", "mode": "acceptEdits", "destination": "session"},
            {"type": "setMode", "mode": "bypassPermissions", "destination": "session"},
            {"type": "addRules", "rules": [], "behavior": "deny", "destination": "userSettings"},
            {"type": "removeRules", "rules": [], "behavior": "allow", "destination": "session"},
            {"type": "removeDirectories", "directories": ["/"], "destination": "session"},
            "not an object",
        ],
        "blocked_path": "/w/a.py",  # not a Bash call: no path rule
    }
    assert approvals.remember_permissions(request) == [
        {"type": "setMode", "mode": "acceptEdits", "destination": "session"}
    ]


@pytest.mark.parametrize("path", ["relative/out.txt", "/w/*.txt", "/w/[a].txt", "/w/a\nb", 7])
def test_no_path_rule_for_a_pattern_or_relative_path(path: object) -> None:
    request = {"tool_name": "Bash", "blocked_path": path}
    assert approvals.remember_permissions(request) == []


@pytest.mark.parametrize(
    "request_body",
    [
        {"subtype": "can_use_tool", "input": {"command": "ls"}},
        {"subtype": "can_use_tool", "tool_name": "", "input": {}},
        {"subtype": "can_use_tool", "tool_name": "Bash", "input": ["ls"]},
        {"subtype": "can_use_tool", "tool_name": "Bash"},
    ],
)
def test_malformed_prompt_is_refused_at_once(request_body: dict[str, Any]) -> None:
    items, replies = ClaudeDialect().feed(control(request_body))
    assert items == []
    [reply] = decoded(replies)
    assert reply["type"] == "control_response"
    assert reply["response"]["subtype"] == "error"
    assert reply["response"]["request_id"] == "req-1"
    assert "malformed can_use_tool" in reply["response"]["error"]


# --- other control requests: refused at once, logged once ---------------------------


@pytest.mark.parametrize(
    ("request_body", "subtype"),
    [
        ({"subtype": "hook_callback", "callback_id": "hook_0", "input": {}}, "hook_callback"),
        (
            {"subtype": "mcp_message", "server_name": "s", "message": {"method": "initialize"}},
            "mcp_message",
        ),
        ({"subtype": "elicitation", "mcp_server_name": "s", "message": "?"}, "elicitation"),
        ({"subtype": "something_new"}, "something_new"),
        ({}, "None"),
    ],
)
def test_other_requests_get_an_error_reply(request_body: dict[str, Any], subtype: str) -> None:
    items, replies = ClaudeDialect().feed(control(request_body, "r-9"))
    assert items == []
    assert decoded(replies) == [
        {
            "type": "control_response",
            "response": {
                "subtype": "error",
                "request_id": "r-9",
                "error": f"corral does not serve control requests of subtype {subtype}",
            },
        }
    ]


def test_request_that_is_not_an_object_is_refused() -> None:
    raw = line({"type": "control_request", "request_id": "r-2", "request": "can_use_tool"})
    items, replies = ClaudeDialect().feed(raw)
    assert items == []
    assert decoded(replies)[0]["response"]["subtype"] == "error"


def test_refusals_are_logged_once_per_subtype(caplog: pytest.LogCaptureFixture) -> None:
    d = ClaudeDialect()
    with caplog.at_level(logging.WARNING, logger="corral.providers.claude"):
        for n in range(3):
            d.feed(control({"subtype": "hook_callback"}, f"h{n}"))
            d.feed(control({"subtype": "mcp_message"}, f"m{n}"))
    logged = [r.getMessage() for r in caplog.records if "not served" in r.getMessage()]
    assert len(logged) == 2
    assert any("hook_callback" in m for m in logged)
    assert any("mcp_message" in m for m in logged)


def test_request_without_id_cannot_be_answered_and_is_kept() -> None:
    raw = line({"type": "control_request", "request": {"subtype": "can_use_tool"}})
    items, replies = ClaudeDialect().feed(raw)
    assert replies == []
    assert [(n.kind, n.raw) for n in items] == [("unknown", orjson.loads(raw))]


def test_cancel_request_names_the_withdrawn_prompt() -> None:
    items, replies = ClaudeDialect().feed(
        line({"type": "control_cancel_request", "request_id": "req-1"})
    )
    assert replies == []
    assert [(n.kind, n.status, n.text, n.raw) for n in items] == [
        ("status", "approval_cancelled", "req-1", {"request": {"request_id": "req-1"}})
    ]


def test_other_lines_go_to_the_stream_parser() -> None:
    d = ClaudeDialect()
    # an assistant text that merely mentions a control request is just text
    text = {"type": "control_request", "note": "quoted"}
    assistant = {
        "type": "assistant",
        "message": {"content": [{"type": "text", "text": orjson.dumps(text).decode()}]},
    }
    items, replies = d.feed(line(assistant))
    assert replies == [] and [n.kind for n in items] == ["text"]
    items, replies = d.feed(b'{"type": "control_request", broken\n')
    assert replies == [] and [n.kind for n in items] == ["unknown"]
    ack = {"type": "control_response", "response": {"subtype": "success", "request_id": "x"}}
    items, _ = d.feed(line(ack))
    assert [(n.kind, n.status) for n in items] == [("status", "control_response")]


def test_prompts_and_interrupt_lines() -> None:
    d = ClaudeDialect()
    user = {"type": "user", "message": {"role": "user", "content": "hi"}}
    assert decoded(d.opening("hi")) == decoded(d.prompt("hi")) == [user]
    assert decoded(d.interrupt()) == [
        {
            "type": "control_request",
            "request_id": "corral-stop",
            "request": {"subtype": "interrupt"},
        }
    ]
    assert d.capabilities.mid_turn_prompts


# --- answers ------------------------------------------------------------------------


def answer(request: dict[str, Any], decision: ApprovalDecision) -> dict[str, Any]:
    [reply] = decoded(ClaudeDialect().answer(request, decision))
    assert reply["type"] == "control_response"
    assert reply["response"]["subtype"] == "success"
    assert reply["response"]["request_id"] == request["request_id"]
    inner: dict[str, Any] = reply["response"]["response"]
    return inner


def stored(request: dict[str, Any] = BASH_REQUEST) -> tuple[dict[str, Any], list[Any]]:
    """An approval's stored request and suggestions, as the session keeps them."""
    raw = approval_of(request).raw
    assert raw is not None
    return raw["request"], raw["suggestions"]


def test_allow_runs_the_original_input() -> None:
    request, _ = stored()
    assert answer(request, ApprovalDecision(True)) == {
        "behavior": "allow",
        "updatedInput": BASH_REQUEST["input"],
        "decisionClassification": "user_temporary",
    }


def test_allow_with_updated_input_replaces_it() -> None:
    request, _ = stored()
    got = answer(request, ApprovalDecision(True, updated_input={"command": "echo ho"}))
    assert got["updatedInput"] == {"command": "echo ho"}


def test_remember_sends_the_stored_suggestions() -> None:
    request, suggestions = stored()
    got = answer(request, ApprovalDecision(True, remember=True, suggestions=suggestions))
    assert got["updatedPermissions"] == suggestions
    assert got["decisionClassification"] == "user_permanent"


def test_remember_never_writes_a_settings_file() -> None:
    request, _ = stored()
    foreign = [
        {"type": "addRules", "rules": [], "behavior": "allow", "destination": "projectSettings"},
        {"type": "removeRules", "rules": [], "behavior": "allow", "destination": "session"},
    ]
    got = answer(request, ApprovalDecision(True, remember=True, suggestions=foreign))
    assert got["updatedPermissions"] == [{**foreign[0], "destination": "session"}]


def test_remember_without_suggestions_is_a_plain_allow() -> None:
    request, _ = stored({"subtype": "can_use_tool", "tool_name": "WebFetch", "input": {}})
    got = answer(request, ApprovalDecision(True, remember=True, suggestions=[]))
    assert "updatedPermissions" not in got
    assert got["decisionClassification"] == "user_temporary"


def test_suggestions_without_remember_are_not_sent() -> None:
    request, suggestions = stored()
    assert "updatedPermissions" not in answer(
        request, ApprovalDecision(True, suggestions=suggestions)
    )


def test_deny_tells_the_message_and_never_interrupts() -> None:
    request, _ = stored()
    assert answer(request, ApprovalDecision(False, "use a temp dir")) == {
        "behavior": "deny",
        "message": "use a temp dir",
        "decisionClassification": "user_reject",
    }


def test_deny_without_message_has_a_default() -> None:
    request, _ = stored()
    got = answer(request, ApprovalDecision(False))
    assert got["message"] == "The user denied permission to use Bash."
    assert "interrupt" not in got


def test_question_answers_merge_into_the_questions() -> None:
    request, _ = stored(
        {"subtype": "can_use_tool", "tool_name": "AskUserQuestion", "input": QUESTION_INPUT}
    )
    got = answer(
        request, ApprovalDecision(True, updated_input={"answers": {"Which color?": "Blue"}})
    )
    assert got["updatedInput"] == {**QUESTION_INPUT, "answers": {"Which color?": "Blue"}}


@pytest.mark.parametrize("request_id", [None, "", 5])
def test_no_answer_without_a_request_id(request_id: object) -> None:
    request = {"request_id": request_id, "tool_name": "Bash", "input": {}}
    assert ClaudeDialect().answer(request, ApprovalDecision(True)) == []


# --- the recorded real-CLI transcripts ----------------------------------------------


def _replay(name: str) -> tuple[list[Normalized], list[bytes]]:
    d = ClaudeDialect()
    items: list[Normalized] = []
    replies: list[bytes] = []
    with (FIXTURES / f"{name}.jsonl").open("rb") as fh:
        for raw in fh:
            found, wrote = d.feed(raw)
            items.extend(found)
            replies.extend(wrote)
    return items, replies


def _written(name: str, kind: str) -> list[dict[str, Any]]:
    """What corral wrote to the CLI in that recording, of one line type."""
    with (FIXTURES / f"{name}.stdin.jsonl").open("rb") as fh:
        return [obj for obj in map(orjson.loads, fh) if obj["type"] == kind]


RECORDED_DECISIONS: dict[str, Any] = {
    "bash_allow": lambda n: ApprovalDecision(True),
    "bash_deny": lambda n: ApprovalDecision(False, "Not in this directory, use a temp dir."),
    "bash_remember": lambda n: ApprovalDecision(
        True, remember=True, suggestions=n.raw["suggestions"]
    ),
    "ask_user_question": lambda n: ApprovalDecision(
        True, updated_input={"answers": {"Which color should the button be?": "Blue"}}
    ),
    "write_allow": lambda n: ApprovalDecision(True),
}
RECORDED_SUMMARIES = {
    "bash_allow": ["echo hi > out.txt"],
    "bash_deny": ["echo hi > out.txt"],
    "bash_remember": ["echo hi > out.txt"],  # the second identical call did not ask
    "ask_user_question": ["Question: Which color should the button be? [Red | Blue]"],
    "write_allow": ["Write /tmp/rec/work/notes.txt"],
    "cancel_on_interrupt": ["echo hi > out.txt"],
    "mcp_message": [],
}


def test_every_recording_is_checked() -> None:
    names = {p.name[: -len(".jsonl")] for p in FIXTURES.glob("*.jsonl")}
    assert {n for n in names if not n.endswith(".stdin")} == set(RECORDED_SUMMARIES)


@pytest.mark.parametrize("name", sorted(RECORDED_SUMMARIES))
def test_recording_yields_its_approvals_and_nothing_unknown(name: str) -> None:
    items, _ = _replay(name)
    assert [n.text for n in items if n.kind == "approval"] == RECORDED_SUMMARIES[name]
    assert [n for n in items if n.kind == "unknown"] == []
    assert items[-1].kind == "turn_end"


@pytest.mark.parametrize("name", sorted(RECORDED_DECISIONS))
def test_answers_are_what_the_cli_accepted(name: str) -> None:
    items, _ = _replay(name)
    decide = RECORDED_DECISIONS[name]
    ours = [
        orjson.loads(raw)
        for n in items
        if n.kind == "approval" and n.raw is not None
        for raw in ClaudeDialect().answer(n.raw["request"], decide(n))
    ]
    assert ours == _written(name, "control_response")


def test_recorded_mcp_message_is_refused_like_it_was() -> None:
    items, replies = _replay("mcp_message")
    assert decoded(replies) == _written("mcp_message", "control_response")
    assert len(replies) == 2 and items[-1].kind == "turn_end" and not items[-1].is_error


def test_recorded_cancel_follows_the_interrupt() -> None:
    items, _ = _replay("cancel_on_interrupt")
    [prompt] = [n for n in items if n.kind == "approval"]
    assert prompt.raw is not None
    cancels = [n for n in items if n.status == "approval_cancelled"]
    assert [n.text for n in cancels] == [prompt.raw["request"]["request_id"]]
    assert _written("cancel_on_interrupt", "control_request") == decoded(
        ClaudeDialect().interrupt()
    )


# --- the mock agent asks exactly as the CLI does --------------------------------------


def test_mock_permissions_understand_the_answers() -> None:
    permissions = Permissions("default")
    asked = permissions.request("r-1", "toolu_m", "Bash", {"command": "make"})
    n = approval_of(asked["request"], "r-1")
    assert (n.text, n.tool_id) == ("make", "toolu_m")
    assert n.raw is not None
    request, suggestions = n.raw["request"], n.raw["suggestions"]

    def decide(decision: ApprovalDecision) -> tuple[str | None, bool]:
        [reply] = decoded(ClaudeDialect().answer(request, decision))
        return permissions.decide(reply["response"], "Bash")

    assert decide(ApprovalDecision(False, "no")) == ("no", False)
    assert decide(ApprovalDecision(True)) == (None, False)
    assert permissions.may_ask("Bash", {"command": "make"})
    assert decide(ApprovalDecision(True, remember=True, suggestions=suggestions)) == (None, False)
    assert not permissions.may_ask("Bash", {"command": "make"})


class _Session:
    """Collects what a handle reports, as a session would."""

    def __init__(self) -> None:
        self.items: list[Normalized] = []
        self.changed = threading.Condition()
        self.exit: ExitReport | None = None

    def on_messages(self, items: list[Normalized], done: Any) -> None:
        with self.changed:
            self.items.extend(items)
            self.changed.notify_all()
        done()

    def on_exit(self, report: ExitReport) -> None:
        with self.changed:
            self.exit = report
            self.changed.notify_all()

    def wait_for(self, kind: str, count: int = 1, timeout: float = 20.0) -> list[Normalized]:
        with self.changed:
            ok = self.changed.wait_for(
                lambda: len([n for n in self.items if n.kind == kind]) >= count, timeout
            )
            assert ok, f"no {count} {kind} within {timeout}s: {self.items}"
            return [n for n in self.items if n.kind == kind]


@pytest.fixture
def mock_session(tmp_path: Path) -> Iterator[Any]:
    handles: list[Any] = []

    def start(mode: str | None, tools: list[dict[str, Any]]) -> tuple[Any, _Session]:
        provider = MockProvider(ProviderContext(data_dir=tmp_path, base_env=dict(os.environ)))
        session = _Session()
        options: dict[str, Any] = {"cwd": str(tmp_path), "providerConfig": {"tools": tools}}
        if mode is not None:
            options["permissionMode"] = mode
        request = LaunchRequest(
            session_id="11111111-2222-4333-8444-555555555555",
            project_id="p",
            provider="mock",
            options=options,
            prompt="go",
            resume_id=None,
            settings={},
            on_messages=session.on_messages,
            on_exit=session.on_exit,
        )
        handle = provider.open(request)
        handles.append(handle)
        return handle, session

    try:
        yield start
    finally:
        for handle in handles:
            handle.close()
            assert handle.wait_exit(10.0)


def test_mock_session_asks_through_the_dialect(mock_session: Any) -> None:
    tool = {"name": "Bash", "input": {"command": "rm -rf build"}, "output": "removed", "ask": True}
    handle, session = mock_session("default", [tool, {**tool, "output": "again"}])
    [asked] = session.wait_for("approval")
    assert asked.text == "rm -rf build"
    assert asked.raw is not None
    assert handle.answer(asked.raw["request"], ApprovalDecision(False, "not today"))
    second = session.wait_for("approval", 2)[1]
    assert second.raw is not None
    assert handle.answer(second.raw["request"], ApprovalDecision(True))
    session.wait_for("turn_end")
    results = [(n.text, n.is_error) for n in session.items if n.kind == "tool_result"]
    assert results == [("not today", True), ("again", False)]


def test_mock_session_in_bypass_mode_never_asks(mock_session: Any) -> None:
    tool = {"name": "Bash", "input": {"command": "rm -rf build"}, "ask": True}
    _handle, session = mock_session("bypassPermissions", [tool])
    session.wait_for("turn_end")
    assert [n for n in session.items if n.kind == "approval"] == []

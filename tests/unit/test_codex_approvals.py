"""Codex approval requests → ``approval`` items, and a person's decision → the answer.

The recorded approval scenarios are replayed through :class:`CodexProtocol`
(the harness of ``test_codex_protocol.py`` answers each approval the way the
recorder did); every answer line is checked against the app-server's JSON
Schema. The permissions request is the one the real CLI (0.169.0, feature
``request_permissions_tool``) sent, copied below.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from corral.actors.normalized import Normalized
from corral.actors.ports import ApprovalDecision
from corral.supervisor.providers.codex.approvals import COMMAND, FILE_CHANGE, PERMISSIONS
from corral.supervisor.providers.codex.options import CodexSessionOptions
from corral.supervisor.providers.codex.protocol import CodexProtocol
from tests.unit.test_codex_protocol import (
    _response_definition,
    _start,
    check_request,
    errors,
    load,
    replay,
)

ALLOW = ApprovalDecision(allow=True)
REMEMBER = ApprovalDecision(allow=True, remember=True)
DENY = ApprovalDecision(allow=False, message="not now")

SESSION_COMMAND = [
    {"decision": "acceptForSession", "allows": "this exact command for the rest of the session"}
]
SESSION_FILES = [
    {
        "decision": "acceptForSession",
        "allows": "further changes to these files for the rest of the session",
    }
]
SESSION_PERMISSIONS = [
    {"scope": "session", "allows": "these permissions for the rest of the session"}
]

#: item/permissions/requestApproval as codex-cli 0.169.0 sent it
PERMISSIONS_PARAMS: dict[str, Any] = {
    "threadId": "th-1",
    "turnId": "tu-1",
    "itemId": "call_perm",
    "environmentId": "local",
    "startedAtMs": 1796093065509,
    "cwd": "/w",
    "reason": "Need to write the report",
    "permissions": {
        "network": None,
        "fileSystem": {
            "read": None,
            "write": ["/srv/reports"],
            "entries": [{"path": {"type": "path", "path": "/srv/reports"}, "access": "write"}],
        },
    },
}


# ------------------------------------------------------------------ helpers


def _recorded_request(name: str) -> dict[str, Any]:
    """The (only) approval server request of a recording."""
    (msg,) = [
        r["msg"]
        for r in load(name)
        if r["dir"] == "out" and "id" in (r.get("msg") or {}) and "method" in r["msg"]
    ]
    return dict(msg)


def _ready(thread: str = "th-1", turn: str = "tu-1") -> CodexProtocol:
    """A protocol with an open thread and a running turn."""
    protocol = CodexProtocol(CodexSessionOptions(cwd="/w"))
    _start(protocol)
    protocol.feed(orjson.dumps({"id": 1, "result": {"thread": {"id": thread}, "model": "m"}}))
    protocol.feed(orjson.dumps({"id": 2, "result": {"turn": {"id": turn}}}))
    return protocol


def _ask(protocol: CodexProtocol, method: str, params: dict[str, Any], rid: Any = 0) -> Normalized:
    items, lines = protocol.feed(orjson.dumps({"method": method, "id": rid, "params": params}))
    assert lines == []  # nobody answers before a person does
    (item,) = items
    assert item.kind == "approval"
    return item


def _command_params(command: str = "/bin/bash -lc 'echo hi > out.txt'", **extra: Any) -> dict:
    return {"threadId": "th-1", "turnId": "tu-1", "itemId": "call_1", "command": command, **extra}


def _answer(protocol: CodexProtocol, item: Normalized, decision: ApprovalDecision) -> dict:
    assert item.raw is not None
    (line,) = protocol.answer(item.raw["request"], decision)
    answer = orjson.loads(line)
    method = item.raw["request"]["method"]
    assert not errors(_response_definition(method), answer["result"]), answer
    return dict(answer)


# ------------------------------------------------------------------ the recordings


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("approval_accept", None),
        ("approval_decline", None),
        ("approval_cancel", None),
        ("approval_on_request_escalated", "Allow running echo hi outside the sandbox?"),
    ],
)
def test_a_recorded_command_request_is_one_bash_approval(name: str, reason: str | None) -> None:
    request = _recorded_request(name)
    result = replay(name)
    (item,) = [n for n in result.items if n.kind == "approval"]
    (call,) = [n for n in result.items if n.kind == "tool_call"]
    assert item.tool_name == "Bash" and item.tool_input == {"command": "echo hi"}
    assert item.tool_id == request["params"]["itemId"] == call.tool_id
    assert item.text == (f"echo hi ({reason})" if reason else "echo hi")
    assert item.raw == {
        "request": {"id": request["id"], "method": COMMAND, "itemId": call.tool_id},
        "suggestions": SESSION_COMMAND,
    }
    assert result.items.index(call) < result.items.index(item)  # the call shows first


def test_a_recorded_file_change_request_names_the_items_change() -> None:
    result = replay("apply_patch_approval")
    cwd = result.meta["cwd"]
    (item,) = [n for n in result.items if n.kind == "approval"]
    (call,) = [n for n in result.items if n.kind == "tool_call"]
    assert item.tool_name == "Write" == call.tool_name
    assert (
        item.tool_input
        == call.tool_input
        == {
            "file_path": f"{cwd}/hello.txt",
            "content": "hello from apply_patch\n",
        }
    )
    assert item.tool_id == call.tool_id
    assert item.text == f"Write {cwd}/hello.txt"
    assert item.raw is not None and item.raw["request"]["method"] == FILE_CHANGE
    assert item.raw["suggestions"] == SESSION_FILES


@pytest.mark.parametrize(
    ("name", "sent"),
    [
        ("approval_accept", "accept"),
        ("approval_decline", "decline"),
        ("approval_cancel", "cancel"),
        ("approval_on_request_escalated", "accept"),
        ("apply_patch_approval", "accept"),
    ],
)
def test_replayed_answers_are_the_recorders_and_schema_valid(name: str, sent: str) -> None:
    (proc,) = replay(name).processes
    (answer,) = [(request, answer) for request, answer in proc.answers]
    request, line = answer
    assert line == {"id": request["id"], "result": {"decision": sent}}
    assert not errors(_response_definition(request["method"]), line["result"])
    assert proc.protocol.pending_approvals == []


def test_the_cancel_of_an_interrupt_comes_before_turn_interrupt() -> None:
    (proc,) = replay("approval_cancel").processes
    after = proc.written[proc.written.index({"id": 0, "result": {"decision": "cancel"}}) :]
    assert [m.get("method") for m in after[:3]] == [
        None,
        "turn/interrupt",
        "thread/backgroundTerminals/clean",
    ]
    for msg in after[1:3]:
        check_request(msg)


# ------------------------------------------------------------------ decisions


@pytest.mark.parametrize(
    ("decision", "sent"),
    [(ALLOW, "accept"), (REMEMBER, "acceptForSession"), (DENY, "decline")],
)
@pytest.mark.parametrize("method", [COMMAND, FILE_CHANGE])
def test_decisions_map_to_accept_accept_for_session_decline(
    method: str, decision: ApprovalDecision, sent: str
) -> None:
    protocol = _ready()
    item = _ask(protocol, method, _command_params(), rid=7)
    assert _answer(protocol, item, decision) == {"id": 7, "result": {"decision": sent}}


def test_a_deny_message_is_not_sent_to_codex() -> None:
    protocol = _ready()
    item = _ask(protocol, COMMAND, _command_params())
    assert item.raw is not None
    (line,) = protocol.answer(item.raw["request"], DENY)
    assert b"not now" not in line  # Codex has no field for it; the daemon shows it


def test_an_approval_is_answered_once() -> None:
    protocol = _ready()
    item = _ask(protocol, COMMAND, _command_params())
    assert item.raw is not None
    assert protocol.pending_approvals == [item.raw["request"]]
    assert len(protocol.answer(item.raw["request"], ALLOW)) == 1
    assert protocol.answer(item.raw["request"], ALLOW) == []
    assert protocol.answer(item.raw["request"], DENY) == []
    assert protocol.pending_approvals == []


@pytest.mark.parametrize(
    "request_",
    [
        {"id": 99, "method": COMMAND, "itemId": "call_1"},
        {"id": "0", "method": COMMAND, "itemId": "call_1"},  # "0" is not 0
        {"id": 0, "method": FILE_CHANGE, "itemId": "call_1"},  # another request's method
        {"method": COMMAND},
        {},
    ],
)
def test_an_unknown_request_gets_no_answer(request_: dict[str, Any]) -> None:
    protocol = _ready()
    _ask(protocol, COMMAND, _command_params(), rid=0)
    assert protocol.answer(request_, ALLOW) == []
    assert len(protocol.pending_approvals) == 1


def test_string_request_ids_are_answered_as_strings() -> None:
    protocol = _ready()
    item = _ask(protocol, COMMAND, _command_params(), rid="req-1")
    assert _answer(protocol, item, ALLOW)["id"] == "req-1"


def test_an_allow_with_a_changed_input_is_declined_and_said() -> None:
    protocol = _ready()
    item = _ask(protocol, COMMAND, _command_params())
    same = ApprovalDecision(allow=True, updated_input={"command": "echo hi > out.txt"})
    assert _answer(protocol, item, same)["result"] == {"decision": "accept"}

    item = _ask(protocol, COMMAND, _command_params(), rid=1)
    changed = ApprovalDecision(allow=True, updated_input={"command": "echo bye > out.txt"})
    assert _answer(protocol, item, changed)["result"] == {"decision": "decline"}
    resolved = {"method": "serverRequest/resolved", "params": {"threadId": "th-1", "requestId": 1}}
    items, _ = protocol.feed(orjson.dumps(resolved))
    assert [(n.kind, n.text) for n in items] == [
        (
            "system",
            "Codex cannot run a changed command: the allow came with another input, "
            "so corral declined it.",
        )
    ]
    assert protocol.feed(orjson.dumps(resolved)) == ([], [])  # said once


# ------------------------------------------------------------------ request shapes


def test_a_multi_line_command_is_summarized_on_one_line_with_its_reason() -> None:
    protocol = _ready()
    command = "/bin/bash -lc 'cd src &&\n  make   test'"
    item = _ask(protocol, COMMAND, _command_params(command, reason="Run the\ntests"))
    assert item.tool_input == {"command": "cd src &&\n  make   test"}  # as the tool call
    assert item.text == "cd src && make test (Run the tests)"


def test_a_network_request_names_the_host() -> None:
    protocol = _ready()
    network = {"host": "pypi.org", "protocol": "https"}
    item = _ask(protocol, COMMAND, _command_params("pip install x", networkApprovalContext=network))
    assert item.text == "pip install x [network access to pypi.org]"


def test_a_human_checkpoint_offers_no_session_wide_accept() -> None:
    protocol = _ready()
    item = _ask(protocol, COMMAND, _command_params(kind="humanCommand"))
    assert item.raw is not None and "suggestions" not in item.raw
    assert _answer(protocol, item, REMEMBER)["result"] == {"decision": "accept"}


def _file_item(changes: list[dict[str, Any]], item_id: str = "fc") -> bytes:
    item = {"type": "fileChange", "id": item_id, "changes": changes, "status": "inProgress"}
    params = {"threadId": "th-1", "turnId": "tu-1", "item": item}
    return orjson.dumps({"method": "item/started", "params": params})


def test_a_file_change_with_several_changes_lists_them_all() -> None:
    protocol = _ready()
    protocol.feed(
        _file_item(
            [
                {"path": "/w/a.txt", "kind": {"type": "add"}, "diff": "a\n"},
                {"path": "/w/b.txt", "kind": {"type": "update", "move_path": None}, "diff": "@@"},
                {"path": "/w/c.txt", "kind": {"type": "delete"}, "diff": ""},
            ]
        )
    )
    params = {"threadId": "th-1", "turnId": "tu-1", "itemId": "fc", "grantRoot": "/w"}
    item = _ask(protocol, FILE_CHANGE, dict(params, reason="Needs write access"))
    assert item.tool_name == "Edit" and item.tool_id == "fc"
    assert item.tool_input == {
        "file_path": "/w/a.txt",
        "changes": [
            {"tool": "Write", "file_path": "/w/a.txt", "content": "a\n"},
            {"tool": "Edit", "file_path": "/w/b.txt", "diff": "@@"},
            {"tool": "Delete", "file_path": "/w/c.txt"},
        ],
        "grant_root": "/w",
    }
    assert item.text == (
        "Write /w/a.txt, Edit /w/b.txt, Delete /w/c.txt [writes under /w] (Needs write access)"
    )


def test_a_file_change_for_an_unknown_item_still_asks() -> None:
    protocol = _ready()
    item = _ask(protocol, FILE_CHANGE, {"threadId": "th-1", "turnId": "tu-1", "itemId": "nope"})
    assert (item.tool_name, item.tool_input, item.text) == ("Edit", {}, "Edit files")
    assert _answer(protocol, item, ALLOW)["result"] == {"decision": "accept"}


# ------------------------------------------------------------------ permissions


def test_a_permissions_request_is_a_permissions_approval() -> None:
    protocol = _ready()
    item = _ask(protocol, PERMISSIONS, PERMISSIONS_PARAMS)
    assert item.tool_name == "Permissions" and item.tool_id == "call_perm"
    assert item.tool_input == {
        "permissions": PERMISSIONS_PARAMS["permissions"],
        "cwd": "/w",
    }
    assert item.text == "grant write /srv/reports (Need to write the report)"
    assert item.raw is not None and item.raw["suggestions"] == SESSION_PERMISSIONS


@pytest.mark.parametrize(
    ("decision", "scope"), [(ALLOW, "turn"), (REMEMBER, "session"), (DENY, "turn")]
)
def test_permissions_are_granted_for_the_turn_or_the_session(
    decision: ApprovalDecision, scope: str
) -> None:
    protocol = _ready()
    item = _ask(protocol, PERMISSIONS, PERMISSIONS_PARAMS, rid=3)
    granted = {"fileSystem": PERMISSIONS_PARAMS["permissions"]["fileSystem"]}
    assert _answer(protocol, item, decision) == {
        "id": 3,
        "result": {"permissions": granted if decision.allow else {}, "scope": scope},
    }


def test_an_allow_may_grant_fewer_permissions() -> None:
    protocol = _ready()
    item = _ask(protocol, PERMISSIONS, PERMISSIONS_PARAMS)
    fewer = {"permissions": {"fileSystem": {"read": ["/srv/reports"]}, "junk": 1}}
    answer = _answer(protocol, item, ApprovalDecision(allow=True, updated_input=fewer))
    assert answer["result"] == {
        "permissions": {"fileSystem": {"read": ["/srv/reports"]}},
        "scope": "turn",
    }


# ------------------------------------------------------------------ interrupts and withdrawals


def test_interrupt_cancels_pending_approvals_before_turn_interrupt() -> None:
    protocol = _ready()
    command = _ask(protocol, COMMAND, _command_params(), rid=0)
    _ask(protocol, PERMISSIONS, PERMISSIONS_PARAMS, rid=1)
    lines = [orjson.loads(line) for line in protocol.interrupt()]
    assert lines[:2] == [
        {"id": 0, "result": {"decision": "cancel"}},
        {"id": 1, "result": {"permissions": {}, "scope": "turn"}},
    ]
    assert not errors(_response_definition(COMMAND), lines[0]["result"])
    assert not errors(_response_definition(PERMISSIONS), lines[1]["result"])
    interrupt = [m["method"] for m in lines[2:]]
    assert interrupt == ["turn/interrupt", "thread/backgroundTerminals/clean"]
    assert protocol.pending_approvals == []
    assert command.raw is not None and protocol.answer(command.raw["request"], ALLOW) == []


def test_interrupt_with_nothing_pending_is_as_before() -> None:
    protocol = _ready()
    methods = [orjson.loads(line)["method"] for line in protocol.interrupt()]
    assert methods == ["turn/interrupt", "thread/backgroundTerminals/clean"]


def test_codex_withdrawing_a_request_forgets_it() -> None:
    protocol = _ready()
    item = _ask(protocol, COMMAND, _command_params(), rid=5)
    resolved = {"method": "serverRequest/resolved", "params": {"threadId": "th-1", "requestId": 5}}
    assert protocol.feed(orjson.dumps(resolved)) == ([], [])
    assert item.raw is not None and protocol.answer(item.raw["request"], ALLOW) == []


def test_the_end_of_the_turn_forgets_its_requests() -> None:
    protocol = _ready()
    item = _ask(protocol, COMMAND, _command_params(), rid=5)
    done = {"threadId": "th-1", "turn": {"id": "tu-1", "status": "interrupted"}}
    protocol.feed(orjson.dumps({"method": "turn/completed", "params": done}))
    assert protocol.pending_approvals == []
    assert item.raw is not None and protocol.answer(item.raw["request"], ALLOW) == []


def test_the_end_of_the_process_forgets_every_request() -> None:
    protocol = _ready()
    _ask(protocol, COMMAND, _command_params(), rid=5)
    protocol.close_open()
    assert protocol.pending_approvals == []

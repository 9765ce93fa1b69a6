"""A session's approvals: requested, answered once (client, timeout, stop), recorded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from corral.actors import db
from corral.actors.control import Control
from corral.actors.messages import Approved, Begin, Notify, Stop
from corral.actors.normalized import Normalized
from corral.actors.ports import ApprovalDecision
from corral.actors.scheduler import Scheduler
from corral.actors.session import SessionDeps, new_session_row
from corral.actors.settings import DEFAULTS, Settings
from corral.actors.store import StoreActor
from tests.unit.test_session_actor import (
    BarrierSession,
    FakeHandle,
    FakeLauncher,
    Inbox,
    Outbox,
    Rig,
)


class ApprovalRig(Rig):
    control: Control


@pytest.fixture
def arig(tmp_path: Path) -> Iterator[ApprovalRig]:
    import queue

    path = tmp_path / "corral.db"
    db.connect(path).close()
    outbox = Outbox()
    store = StoreActor.start(path, outbox)
    told: queue.Queue[Any] = queue.Queue()
    registry = Inbox.start(told)
    scheduler = Scheduler()
    scheduler.start()
    launcher = FakeLauncher()
    settings = Settings(dict(DEFAULTS))
    deps = SessionDeps(store, registry, scheduler, outbox, launcher)
    control = Control()
    ref = BarrierSession.start(
        new_session_row("s1", "p", "mock", None), {"cwd": "/"}, settings, deps, control
    )
    rig = ApprovalRig(ref, launcher, outbox, told, store, path, settings)
    rig.control = control
    yield rig
    for actor in (ref, registry, store):
        try:
            actor.stop(block=True, timeout=5)
        except pykka.ActorDeadError:
            pass
    scheduler.stop()


def ask(rig: ApprovalRig, command: str = "rm -rf build/") -> tuple[FakeHandle, dict[str, Any]]:
    rig.ref.tell(Begin("do it", 0))
    rig.sync()
    handle = rig.launcher.handles[-1]
    handle.emit(
        Normalized(
            "approval",
            tool_name="Bash",
            tool_input={"command": command},
            tool_id="t1",
            text=command,
            raw={"request": {"request_id": "r1"}, "suggestions": [{"rule": "Bash(rm:*)"}]},
        )
    )
    rig.sync()
    (approval,) = rig.control.pending()
    return handle, approval


def events(rig: ApprovalRig, name: str) -> list[dict[str, Any]]:
    return [data for event, data, _p in rig.outbox.events if event == name]


def test_an_approval_is_offered_stored_published_and_noticed(arig: ApprovalRig) -> None:
    _handle, approval = ask(arig)
    assert approval["summary"] == "rm -rf build/" and approval["toolName"] == "Bash"
    assert approval["input"] == {"command": "rm -rf build/"}
    assert approval["suggestions"] == [{"rule": "Bash(rm:*)"}]
    assert events(arig, "approval.requested") == [approval]
    assert arig.messages()[-1]["content"] == "approval requested: rm -rf build/"
    notes = [n for n in arig.told_of(Notify) if n.kind == "approval_needed"]
    assert len(notes) == 1 and "rm -rf build/" in notes[0].message
    conn = db.connect(arig.path, readonly=True)
    try:
        assert [a["approvalId"] for a in db.pending_approvals(conn, "s1")] == [
            approval["approvalId"]
        ]
    finally:
        conn.close()


def test_a_client_answer_goes_to_the_provider_once_and_is_recorded(arig: ApprovalRig) -> None:
    handle, approval = ask(arig)
    decision = ApprovalDecision(True, remember=True)
    assert arig.control.answer(approval["approvalId"], decision) is not None
    assert arig.control.answer(approval["approvalId"], decision) is None  # once
    # remember grants what the provider offered with the request
    offered = ApprovalDecision(True, remember=True, suggestions=[{"rule": "Bash(rm:*)"}])
    assert handle.answers == [({"request_id": "r1"}, offered)]
    arig.ref.tell(Approved(approval["approvalId"], True, None, "reply-1"))
    arig.sync()
    assert arig.outbox.replies.get(timeout=2) == (
        "reply-1",
        {"approvalId": approval["approvalId"], "decision": "allow"},
        None,
    )
    assert events(arig, "approval.resolved") == [
        {
            "approvalId": approval["approvalId"],
            "sessionId": "s1",
            "decision": "allow",
            "by": "client",
        }
    ]
    assert arig.messages()[-1]["content"] == "allowed by a client: rm -rf build/"
    assert arig.control.pending() == []


def test_an_unanswered_approval_is_denied_by_the_timeout(arig: ApprovalRig) -> None:
    arig.settings.values = {**arig.settings.values, "approval_timeout_ms": "300"}
    handle, _approval = ask(arig)
    deadline = time.monotonic() + 5
    while not events(arig, "approval.resolved") and time.monotonic() < deadline:
        time.sleep(0.05)
    arig.sync()
    (resolved,) = events(arig, "approval.resolved")
    assert resolved["by"] == "timeout" and resolved["decision"] == "deny"
    ((_request, decision),) = handle.answers
    assert decision.allow is False and decision.message == "no answer within 0.3 s"
    assert arig.messages()[-1]["content"] == "denied (timeout): no answer within 0.3 s"


def test_a_stop_denies_the_pending_approvals_first(arig: ApprovalRig) -> None:
    handle, _approval = ask(arig)
    arig.control.stop_turn()  # the registry's urgent path
    arig.ref.tell(Stop("stop-reply"))
    arig.sync()
    ((_request, decision),) = handle.answers
    assert decision.allow is False
    assert handle.stopped
    (resolved,) = events(arig, "approval.resolved")
    assert resolved["by"] == "stop"
    handle.emit(Normalized("turn_end", is_error=True, text="interrupted"))
    arig.sync()
    assert arig.row()["status"] == "done"


def test_the_stall_clock_waits_while_an_approval_is_pending(arig: ApprovalRig) -> None:
    arig.settings.values = {**arig.settings.values, "stall_timeout_ms": "200"}
    _handle, approval = ask(arig)
    time.sleep(0.6)
    arig.sync()
    assert not [n for n in arig.told_of(Notify) if n.kind == "agent_stalled"]
    assert arig.control.answer(approval["approvalId"], ApprovalDecision(True)) is not None
    arig.ref.tell(Approved(approval["approvalId"], True, None, "r"))
    arig.sync()
    time.sleep(0.6)
    arig.sync()
    assert [n for n in arig.told_of(Notify) if n.kind == "agent_stalled"]

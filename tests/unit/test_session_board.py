"""The session board (actors/board.py): what the router answers ``session.get``
from. Its own rules first, then the registry and store keeping it exactly as
the registry would answer, on a real store and database with fake providers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from corral.actors.board import SessionBoard
from corral.actors.messages import SessionDied, Shutdown
from corral.actors.normalized import Normalized
from corral.protocol.errors import ProviderUnavailable
from tests.support.actor_fakes import RegistryRig, wait_until

P = {"projectId": "p"}


class Idle(pykka.ThreadingActor):
    pass


@pytest.fixture
def ref() -> Iterator[pykka.ActorRef[Any]]:
    actor = Idle.start()
    yield actor
    actor.stop()


def row(session_id: str, **fields: Any) -> dict[str, Any]:
    return {"sessionId": session_id, "status": "running", "lastSeqId": 1, **fields}


# ---------------------------------------------------------------- the board alone


def test_a_project_without_a_current_session_answers_none(ref: pykka.ActorRef[Any]) -> None:
    board = SessionBoard()
    assert board.session_get(P) == {"session": None}
    board.open("p", "s1", ref)
    board.committed("p", "s1", row("s1"))
    # Starting, not yet current: the registry would answer None as well.
    assert board.session_get(P) == {"session": None}


def test_a_current_session_answers_its_last_committed_row(ref: pykka.ActorRef[Any]) -> None:
    board = SessionBoard()
    board.open("p", "s1", ref)
    board.make_current("p", "s1")
    assert board.session_get(P) is None  # nothing committed yet: the registry answers
    board.committed("p", "s1", row("s1"))
    board.committed("p", "s1", row("s1", status="done", lastSeqId=7))
    assert board.session_get(P) == {"session": row("s1", status="done", lastSeqId=7)}
    assert board.session_get({"projectId": "other"}) == {"session": None}


def test_a_replaced_session_changes_nothing(ref: pykka.ActorRef[Any]) -> None:
    board = SessionBoard()
    board.open("p", "old", ref)
    board.make_current("p", "old")
    board.committed("p", "old", row("old"))
    board.open("p", "new", ref, row("new", status="done"))  # a restore replaced it
    board.make_current("p", "new")
    board.committed("p", "old", row("old", status="done"))  # the old one's last step
    board.make_current("p", "old")
    board.close("p", "old")
    assert board.session_get(P) == {"session": row("new", status="done")}
    board.close("p", "new")
    assert board.session_get(P) == {"session": None} and len(board) == 0


def test_a_row_of_another_session_is_not_answered(ref: pykka.ActorRef[Any]) -> None:
    board = SessionBoard()
    board.open("p", "s1", ref, row("someone-else"))
    board.make_current("p", "s1")
    assert board.session_get(P) is None


def test_a_dead_session_actor_goes_to_the_registry() -> None:
    board = SessionBoard()
    dead = Idle.start()
    board.open("p", "s1", dead, row("s1"))
    board.make_current("p", "s1")
    assert board.session_get(P) == {"session": row("s1")}
    dead.stop()
    assert board.session_get(P) is None


# ---------------------------------------------------------------- kept by the registry


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[RegistryRig]:
    with RegistryRig(tmp_path) as r:
        yield r


def board_get(rig: RegistryRig, project: str = "p") -> Any:
    return rig.board.session_get({"projectId": project})


def test_a_start_answered_is_on_the_board_as_stored(rig: RegistryRig) -> None:
    sid = rig.start("p")["sessionId"]
    # No wait: the start's reply goes out after the board learned both.
    session = board_get(rig)["session"]
    assert (session["sessionId"], session["status"]) == (sid, "running")
    assert session == rig.row(sid) == rig.ok("session.get", **P)["session"]


def test_every_step_is_on_the_board_before_its_reply(rig: RegistryRig) -> None:
    sid = rig.start("p")["sessionId"]
    handle = rig.launcher.handles[-1]
    handle.emit(Normalized("text", text="hello"))
    rig.finish_turn("p")
    wait_until(lambda: board_get(rig)["session"]["status"] == "done", what="done on the board")
    assert board_get(rig)["session"] == rig.row(sid)
    reply = rig.ok("agent.prompt", projectId="p", prompt="more")
    session = board_get(rig)["session"]
    assert session["status"] == "running" and session["lastSeqId"] == reply["seqId"]
    stop = rig.send("agent.stop", projectId="p")
    wait_until(lambda: handle.stopped, what="the stop signalled")
    handle.emit(Normalized("turn_end", is_error=True, text="interrupted"))
    stopped = rig.outbox.wait_reply(stop).result
    assert stopped["status"] == board_get(rig)["session"]["status"] == "done"
    assert board_get(rig)["session"] == rig.row(sid)


def test_a_failed_start_leaves_nothing_on_the_board(rig: RegistryRig) -> None:
    rig.launcher.fail = ProviderUnavailable("mock binary missing")
    rig.start_error("p")
    assert board_get(rig) == {"session": None} and len(rig.board) == 0


def test_clear_restore_and_purge_keep_the_board_as_the_registry(rig: RegistryRig) -> None:
    sid = rig.start("p")["sessionId"]
    rig.finish_turn("p")
    assert rig.ok("session.clear", **P) == {"cleared": True}
    assert board_get(rig) == {"session": None}
    restored = rig.ok("session.restore", **P)["session"]
    assert restored["sessionId"] == sid
    assert board_get(rig) == {"session": restored} == rig.ok("session.get", **P)
    assert rig.ok("project.purge", **P)["purgedSessions"] == 1
    assert board_get(rig) == {"session": None} and len(rig.board) == 0


def test_replacing_a_session_keeps_one_slot_per_project(rig: RegistryRig) -> None:
    for _ in range(5):
        sid = rig.start("p")["sessionId"]
        rig.finish_turn("p")
    rig.start("q")
    assert len(rig.board) == 2
    assert board_get(rig)["session"]["sessionId"] == sid


def test_sessions_retired_by_their_cleanup_leave_the_board(rig: RegistryRig) -> None:
    rig.ok("settings.set", key="cleanup_grace_ms", value="0")
    for project in ("a", "b", "c"):
        rig.start(project)
        rig.launcher.handles[-1].emit(Normalized("turn_end"))
    for project in ("a", "b", "c"):
        wait_until(lambda p=project: rig.current(p) is None, what=f"{project} retired")
        assert board_get(rig, project) == {"session": None}
    assert len(rig.board) == 0


def test_a_session_the_registry_forgets_leaves_the_board(rig: RegistryRig) -> None:
    sid = rig.start("p")["sessionId"]
    rig.registry.tell(SessionDied(sid, "p", "boom"))
    wait_until(lambda: rig.current("p") is None, what="the dead session forgotten")
    assert board_get(rig) == {"session": None} and len(rig.board) == 0


def test_a_dead_session_actor_is_noticed_through_the_registry(rig: RegistryRig) -> None:
    sid = rig.start("p")["sessionId"]
    rig.on_registry(lambda r: r.projects["p"].ref).stop(block=True, timeout=5)
    assert board_get(rig) is None  # the router hands the call to the registry
    assert rig.ok("session.get", **P) == {"session": None}
    assert rig.row(sid)["status"] == "error"
    assert board_get(rig) == {"session": None}


def test_shutdown_empties_the_board(rig: RegistryRig) -> None:
    rig.start("p")
    rig.launcher.hold()
    rig.send_start("q")
    assert rig.launcher.entered.wait(5)
    done = threading.Event()
    rig.registry.tell(Shutdown(done))
    rig.launcher.release()
    assert done.wait(20)
    assert len(rig.board) == 0

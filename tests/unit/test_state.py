"""Tests of the session status state machine (actors/state.py)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.actors import state
from corral.actors.state import (
    STATUSES,
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    Lifecycle,
    SessionEvent,
    Status,
    can_transition,
    describe_table,
    is_terminal,
    legal_events,
    transition,
)

E = SessionEvent

# The specification, written out independently of the module's table.
EXPECTED: dict[tuple[str, SessionEvent], str] = {
    ("idle", E.START): "running",
    ("idle", E.PROCESS_CRASHED): "error",
    ("idle", E.STOPPED): "done",
    ("running", E.PROMPT): "running",
    ("running", E.TURN_DONE): "done",
    ("running", E.TURN_FAILED): "error",
    ("running", E.STOPPED): "done",
    ("running", E.PROCESS_CRASHED): "error",
    ("running", E.INTERRUPTED): "error",
    ("idle", E.STORAGE_FAILED): "error",
    ("running", E.STORAGE_FAILED): "error",
    ("done", E.STORAGE_FAILED): "error",
    ("error", E.STORAGE_FAILED): "error",
    ("running", E.TURN_STARTED): "running",
    ("done", E.TURN_STARTED): "running",
    ("error", E.TURN_STARTED): "running",
    ("running", E.PROCESS_EXITED): "error",
    ("done", E.PROMPT): "running",
    ("done", E.START): "running",
    ("done", E.TURN_DONE): "done",
    ("done", E.TURN_FAILED): "done",
    ("done", E.STOPPED): "done",
    ("done", E.PROCESS_EXITED): "done",
    ("done", E.PROCESS_CRASHED): "done",
    ("done", E.RESTORED): "done",
    ("error", E.PROMPT): "running",
    ("error", E.START): "running",
    ("error", E.TURN_FAILED): "error",
    ("error", E.STOPPED): "error",
    ("error", E.PROCESS_EXITED): "error",
    ("error", E.PROCESS_CRASHED): "error",
    ("error", E.RESTORED): "error",
}

ALL_PAIRS = list(itertools.product(STATUSES, SessionEvent))


def test_statuses_are_the_contract_ones() -> None:
    assert STATUSES == ("idle", "running", "done", "error")
    assert set(TERMINAL) == {"done", "error"}


def test_events() -> None:
    assert {e.name for e in SessionEvent} == {
        "START",
        "PROMPT",
        "TURN_DONE",
        "TURN_FAILED",
        "STOPPED",
        "PROCESS_EXITED",
        "PROCESS_CRASHED",
        "RESTORED",
        "INTERRUPTED",
        "STORAGE_FAILED",
        "TURN_STARTED",
    }


def test_table_matches_the_specification() -> None:
    assert dict(TRANSITIONS) == EXPECTED


def test_table_only_mentions_known_statuses() -> None:
    for (status, event), new in TRANSITIONS.items():
        assert status in STATUSES
        assert isinstance(event, SessionEvent)
        assert new in STATUSES


@pytest.mark.parametrize(("status", "event"), ALL_PAIRS, ids=lambda v: str(v))
def test_every_pair(status: Status, event: SessionEvent) -> None:
    if (status, event) in EXPECTED:
        assert transition(status, event) == EXPECTED[(status, event)]
        assert can_transition(status, event)
        assert event in legal_events(status)
    else:
        with pytest.raises(IllegalTransition) as info:
            transition(status, event)
        assert info.value.status == status
        assert info.value.event is event
        assert event.name in str(info.value) and status in str(info.value)
        assert not can_transition(status, event)
        assert event not in legal_events(status)


def test_illegal_transition_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        transition("running", E.START)


@pytest.mark.parametrize(
    ("status", "event"),
    [
        ("running", E.START),  # already running
        ("idle", E.PROMPT),  # the first prompt comes with START
        ("idle", E.TURN_DONE),
        ("idle", E.TURN_FAILED),
        ("error", E.TURN_DONE),  # an error is not healed by a stray success
        ("running", E.RESTORED),
        ("idle", E.RESTORED),
        ("done", E.INTERRUPTED),
        ("error", E.INTERRUPTED),
        ("idle", E.INTERRUPTED),
        ("idle", E.PROCESS_EXITED),
    ],
)
def test_notable_illegal_pairs(status: Status, event: SessionEvent) -> None:
    with pytest.raises(IllegalTransition):
        transition(status, event)


def test_decisions() -> None:
    # a dead idle process does not fail a finished session
    assert transition("done", E.PROCESS_CRASHED) == "done"
    # late turn endings: the first ending of a turn wins
    assert transition("done", E.TURN_DONE) == "done"
    assert transition("done", E.TURN_FAILED) == "done"
    assert transition("error", E.TURN_FAILED) == "error"
    # exiting in the middle of a turn is a failure
    assert transition("running", E.PROCESS_EXITED) == "error"


def test_typical_lifecycles() -> None:
    s: Status = "idle"
    for event, expected in [
        (E.START, "running"),
        (E.PROMPT, "running"),
        (E.TURN_DONE, "done"),
        (E.PROCESS_EXITED, "done"),
        (E.PROMPT, "running"),
        (E.STOPPED, "done"),
        (E.TURN_FAILED, "done"),
        (E.START, "running"),
        (E.PROCESS_CRASHED, "error"),
        (E.RESTORED, "error"),
        (E.PROMPT, "running"),
        (E.INTERRUPTED, "error"),
    ]:
        s = transition(s, event)
        assert s == expected, event


def test_is_terminal() -> None:
    assert is_terminal("done")
    assert is_terminal("error")
    assert not is_terminal("idle")
    assert not is_terminal("running")
    assert not is_terminal("bogus")


def test_terminal_statuses_leave_only_by_a_new_turn() -> None:
    for (status, event), new in TRANSITIONS.items():
        if status in TERMINAL and new not in TERMINAL:
            assert event in (E.PROMPT, E.START, E.TURN_STARTED)
            assert new == "running"


def test_describe_table_covers_every_pair() -> None:
    table = describe_table()
    lines = table.splitlines()
    assert lines[0] == "| event | idle | running | done | error |"
    assert len(lines) == 2 + len(SessionEvent)
    for line, event in zip(lines[2:], SessionEvent, strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == event.name
        for status, cell in zip(STATUSES, cells[1:], strict=True):
            assert cell == EXPECTED.get((status, event), "-")


def test_module_doc_shows_the_current_table() -> None:
    assert state.__doc__ is not None
    assert describe_table() in state.__doc__


@given(st.lists(st.sampled_from(list(SessionEvent)), max_size=60))
def test_random_event_sequences(events: list[SessionEvent]) -> None:
    s: Status = "idle"
    for event in events:
        try:
            new = transition(s, event)
        except IllegalTransition:
            assert (s, event) not in EXPECTED
            continue
        assert new in STATUSES
        if new == "running" and s != "running":
            assert event in (E.START, E.PROMPT, E.TURN_STARTED)
        if s == "running" and new == "running":
            assert event in (E.PROMPT, E.TURN_STARTED)
        if new == "idle":
            assert s == "idle"  # nothing leads back to idle
        s = new
    assert s in STATUSES


def test_a_turn_the_provider_starts_itself_runs_until_its_end() -> None:
    life = Lifecycle("done", strict=True)
    assert life.provider_turn_started() is True
    assert life.status == "running" and life.pending_turns == 1
    assert life.provider_turn_started() is False  # already running: nothing changes
    assert life.turn_ended(ok=False) is True and life.status == "error"
    assert life.provider_turn_started() is True and life.turn_ended(ok=True)
    assert life.status == "done"  # the last result decides

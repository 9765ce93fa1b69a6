"""Lifecycle (status + turns waiting + stop asked for), SessionRecord and StallClock."""

from __future__ import annotations

import time

import pytest

from corral.actors.record import SessionRecord
from corral.actors.stall import StallClock
from corral.actors.state import IllegalTransition, Lifecycle


def running(turns: int = 1) -> Lifecycle:
    life = Lifecycle("idle", strict=True)
    life.prompted(first=True)
    for _ in range(turns - 1):
        life.prompted(first=False)
    return life


def test_a_turn_ends_the_session_only_when_no_prompt_waits() -> None:
    life = running(turns=2)
    assert life.pending_turns == 2
    assert life.turn_ended(ok=True) is False and life.status == "running"
    assert life.turn_ended(ok=True) is True and life.status == "done"
    assert life.pending_turns == 0


def test_a_failed_turn_ends_the_session_at_once() -> None:
    life = running(turns=3)
    assert life.turn_ended(ok=False) is True
    assert life.status == "error" and life.pending_turns == 0


def test_a_stop_turns_the_next_turn_end_into_done() -> None:
    life = running(turns=2)
    assert life.stop_requested() is True and life.stopping
    assert life.turn_ended(ok=False) is True
    assert life.status == "done" and life.pending_turns == 0
    life.prompted(first=False)
    assert life.status == "running" and not life.stopping


def test_no_stop_without_a_running_turn_and_late_turn_ends_change_nothing() -> None:
    life = running()
    life.turn_ended(ok=True)
    assert life.stop_requested() is False
    assert life.turn_ended(ok=False) is False and life.status == "done"


def test_process_end_while_running() -> None:
    crashed = running()
    crashed.process_ended(crashed=True)
    assert crashed.status == "error"
    exited = running()
    exited.process_ended(crashed=False)
    assert exited.status == "error" and exited.pending_turns == 0


def test_an_illegal_transition_raises_when_strict_and_is_ignored_otherwise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(IllegalTransition):
        Lifecycle("idle", strict=True).interrupted()
    lenient = Lifecycle("idle", strict=False)
    lenient.interrupted()
    assert lenient.status == "idle"
    assert "bug: ignored INTERRUPTED in status idle" in caplog.text


def test_strict_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_STRICT_TRANSITIONS", "1")
    assert Lifecycle("idle").strict is True
    monkeypatch.setenv("CORRAL_STRICT_TRANSITIONS", "0")
    assert Lifecycle("idle").strict is False


def test_record_round_trips_through_the_wire_shape() -> None:
    record = SessionRecord.new("s", "p", "mock", "m1")
    record.cost_usd, record.input_tokens, record.cache_read_tokens = 1.5, 10, 3
    wire = record.to_wire()
    assert "error" not in wire and "providerSessionId" not in wire
    record.error, record.provider_session_id = "boom", "abc"
    again = SessionRecord.from_row(record.to_wire())
    assert again == record
    assert again.to_wire()["error"] == "boom" and again.to_wire()["providerSessionId"] == "abc"
    assert again.cost_event() == {
        "sessionId": "s",
        "costUsd": 1.5,
        "inputTokens": 10,
        "outputTokens": 0,
        "cacheReadTokens": 3,
        "cacheCreationTokens": 0,
    }


def test_stall_clock_stalls_once_and_activity_ends_it() -> None:
    clock = StallClock()
    gen = clock.arm()
    assert clock.is_current(gen)
    became, delay, _ = clock.check(10.0)
    assert became is False and 9.0 < delay <= 10.0
    time.sleep(0.06)
    became, delay, idle = clock.check(0.05)
    assert became is True and clock.stalled and delay == 0.05 and idle == 0
    assert clock.check(0.05)[0] is False  # notified once
    assert clock.activity() is True and not clock.stalled
    clock.stop()
    assert not clock.is_current(gen)

"""Tests of the Health derivation in actors/health.py: activity, burn rates, context
pressure, attention, ordering and aggregates."""

from __future__ import annotations

from typing import Any

import pytest

from corral.actors.health import (
    ATTENTION_SCORES,
    BURN_WINDOW_MS,
    MAX_IN_FLIGHT,
    MAX_SNAPSHOTS,
    MIN_BURN_SPAN_MS,
    HealthState,
    aggregates,
    attention,
    burn_rates,
    context_pressure,
    health_record,
    sort_projects,
    visible_change,
)
from corral.actors.normalized import Normalized

T0 = 1_800_000_000_000
HEALTH_KEYS = {
    "projectId",
    "sessionId",
    "status",
    "live",
    "activity",
    "activeTool",
    "toolSince",
    "lastActivity",
    "idleMs",
    "toolCalls",
    "costUsd",
    "inputTokens",
    "outputTokens",
    "cacheReadTokens",
    "cacheCreationTokens",
    "burnRateUsdPerHour",
    "tokensPerMinute",
    "contextTokens",
    "contextLimit",
    "contextPressure",
    "openConflicts",
    "attention",
    "stalled",
}


def row(status: str = "running", **extra: Any) -> dict[str, Any]:
    base = {
        "sessionId": "s1",
        "status": status,
        "costUsd": 0.25,
        "inputTokens": 1000,
        "outputTokens": 200,
        "cacheReadTokens": 5,
        "cacheCreationTokens": 6,
        "messageCount": 7,
        "updatedAt": T0 - 5000,
    }
    base.update(extra)
    return base


def wire(
    state: HealthState, status: str = "running", live: bool = True, **kw: Any
) -> dict[str, Any]:
    kw.setdefault("now_ms", T0)
    kw.setdefault("context_limit", 200_000)
    return state.to_wire("proj", session=row(status), live=live, **kw)


# -- burn rate and tokens per minute ---------------------------------------


def test_burn_rate_from_known_cost_and_time() -> None:
    snapshots = [(T0 - 60_000, 1.0, 10_000), (T0, 1.5, 16_000)]
    usd, tpm = burn_rates(snapshots, T0)
    assert usd == pytest.approx(30.0)  # $0.50 in one minute
    assert tpm == pytest.approx(6000.0)
    snapshots = [(T0 - 120_000, 0.0, 0), (T0 - 90_000, 0.2, 100), (T0 - 30_000, 0.1, 500)]
    # oldest to newest of the window: $0.10 and 500 tokens in 90 s
    assert burn_rates(snapshots, T0) == pytest.approx((4.0, 333.333))


def test_burn_rate_needs_two_snapshots_far_enough_apart() -> None:
    assert burn_rates([], T0) == (0.0, 0.0)
    assert burn_rates([(T0, 5.0, 100)], T0) == (0.0, 0.0)
    assert MIN_BURN_SPAN_MS == 3600
    assert burn_rates([(T0 - 3599, 0.0, 0), (T0, 1.0, 60)], T0) == (0.0, 0.0)
    usd, tpm = burn_rates([(T0 - 3600, 0.0, 0), (T0, 1.0, 60)], T0)
    assert usd == pytest.approx(1000.0) and tpm == pytest.approx(1000.0)


def test_burn_rate_only_from_the_last_five_minutes() -> None:
    assert BURN_WINDOW_MS == 300_000
    old = (T0 - 300_001, 0.0, 0)
    assert burn_rates([old, (T0 - 10_000, 9.0, 900)], T0) == (0.0, 0.0)
    usd, _ = burn_rates([old, (T0 - 300_000, 1.0, 0), (T0, 2.0, 0)], T0)
    assert usd == pytest.approx(12.0)


def test_burn_rate_never_negative() -> None:
    assert burn_rates([(T0 - 60_000, 2.0, 500), (T0, 1.0, 100)], T0) == (0.0, 0.0)


def test_state_snapshots_reach_the_wire_and_are_bounded() -> None:
    state = HealthState()
    state.cost_snapshot(0.10, 1000, T0 - 120_000)
    state.cost_snapshot(0.30, 4000, T0 - 60_000)
    health = wire(state)
    assert health["burnRateUsdPerHour"] == pytest.approx(12.0)
    assert health["tokensPerMinute"] == pytest.approx(3000.0)
    for i in range(MAX_SNAPSHOTS + 10):
        state.cost_snapshot(float(i), i, T0 + i)
    assert len(state.snapshots) == MAX_SNAPSHOTS


# -- context ------------------------------------------------------------------


def test_context_pressure_counts_cache_tokens() -> None:
    state = HealthState()
    state.usage(input_tokens=1000, cache_read=150_000, cache_creation=34_000)
    health = wire(state)
    assert health["contextTokens"] == 185_000
    assert health["contextLimit"] == 200_000
    assert health["contextPressure"] == pytest.approx(0.925)
    assert health["attention"]["score"] == 80
    # a report with no tokens keeps the last turn's context
    state.usage(0, 0, 0)
    assert state.context_tokens == 185_000
    assert context_pressure(50, 0) == 0.0


def test_observe_takes_usage_and_the_reported_window() -> None:
    state = HealthState()
    state.observe(
        [
            Normalized(
                kind="cost",
                input_tokens=10,
                cache_read_tokens=20,
                cache_creation_tokens=30,
                output_tokens=999,
                context_window=272_000,
            )
        ],
        T0,
    )
    assert state.context_tokens == 60 and state.context_window == 272_000
    assert state.last_activity == T0


# -- activity ----------------------------------------------------------------


def test_activity_inactive_when_not_running_or_not_live() -> None:
    state = HealthState()
    state.tool_started("t1", "Bash", T0)
    assert wire(state, status="idle")["activity"] == "inactive"
    assert wire(state, status="done")["activity"] == "inactive"
    assert wire(state, live=False)["activity"] == "inactive"
    stored = health_record("proj", session=None, live=True, now_ms=T0, context_limit=200_000)
    assert stored["activity"] == "inactive" and stored["live"] is False
    assert stored["sessionId"] is None and stored["lastActivity"] is None and stored["idleMs"] == 0


def test_activity_running_idle_stalled_waiting() -> None:
    state = HealthState()
    state.activity(T0 - 1000)
    health = wire(state)
    assert health["activity"] == "idle" and health["activeTool"] is None
    assert health["lastActivity"] == T0 - 1000 and health["idleMs"] == 1000

    state.tool_started("t1", "Bash", T0 - 500)
    state.tool_started("t2", "Read", T0 - 400)
    health = wire(state)
    assert health["activity"] == "running"
    assert health["activeTool"] == "Bash" and health["toolSince"] == T0 - 500
    assert health["toolCalls"] == {"started": 2, "finished": 0}

    state.tool_finished("t1", T0 - 300)
    state.tool_finished("unknown", T0 - 200)
    health = wire(state)
    assert health["activeTool"] == "Read"
    assert health["toolCalls"] == {"started": 2, "finished": 1}

    # a hung tool: stalled, and the tool is named
    state.set_stalled(True)
    health = wire(state)
    assert health["activity"] == "stalled" and health["stalled"] is True
    assert health["activeTool"] == "Read"
    assert health["attention"]["score"] == 100
    assert "Read" in health["attention"]["reason"]

    state.set_stalled(False)
    state.approval_waiting("a1", "rm -rf build/")
    health = wire(state)
    assert health["activity"] == "waiting" and health["stalled"] is False
    assert health["attention"] == {
        "score": 95,
        "reason": "waiting for your approval: rm -rf build/",
    }
    state.approval_resolved("a1")
    assert wire(state)["activity"] == "running"

    state.turn_ended(T0)
    health = wire(state)
    assert health["activity"] == "idle" and health["activeTool"] is None
    assert health["toolCalls"] == {"started": 2, "finished": 1}


def test_observe_pairs_tool_calls_and_results() -> None:
    state = HealthState()
    state.observe(
        [
            Normalized(kind="text", text="hi"),
            Normalized(kind="tool_call", tool_name="Edit", tool_id="a"),
            Normalized(kind="tool_call", tool_name="Bash", tool_id="b"),
            Normalized(kind="tool_call", tool_name="Bash", tool_id="b"),  # repeated: counted once
            Normalized(kind="tool_result", tool_id="a"),
        ],
        T0,
    )
    assert (state.tools_started, state.tools_finished) == (2, 1)
    assert state.active_tool() == ("Bash", T0)
    state.observe([Normalized(kind="turn_end")], T0 + 5)
    assert state.active_tool() is None and state.last_activity == T0 + 5


def test_in_flight_is_bounded() -> None:
    state = HealthState()
    for i in range(MAX_IN_FLIGHT + 5):
        state.tool_started(f"t{i}", f"Tool{i}", T0 + i)
    assert len(state.in_flight) == MAX_IN_FLIGHT
    assert state.active_tool() == ("Tool5", T0 + 5)
    assert state.tools_started == MAX_IN_FLIGHT + 5


def test_wire_shape() -> None:
    state = HealthState()
    state.activity(T0)
    health = wire(state, open_conflicts=2)
    assert set(health) >= HEALTH_KEYS
    assert health["projectId"] == "proj" and health["sessionId"] == "s1"
    assert health["costUsd"] == 0.25 and health["cacheCreationTokens"] == 6
    assert health["messageCount"] == 7 and health["openConflicts"] == 2
    assert health["activity"] in ("inactive", "running", "idle", "waiting", "stalled")
    assert health["attention"]["score"] == 70
    # without output yet, the session row's update time is the last activity
    fresh = wire(HealthState())
    assert fresh["lastActivity"] == T0 - 5000 and fresh["idleMs"] == 5000


# -- attention ---------------------------------------------------------------


def test_attention_rules_in_order() -> None:
    assert ATTENTION_SCORES == {
        "stalled": 100,
        "waiting": 95,
        "error": 90,
        "context_full": 80,
        "conflicts": 70,
        "context_high": 40,
    }
    everything: dict[str, Any] = {
        "activity": "stalled",
        "status": "error",
        "error": "boom",
        "waiting_for": "x",
        "pressure": 0.95,
        "context_tokens": 190_000,
        "context_limit": 200_000,
        "open_conflicts": 3,
        "now_ms": T0,
        "last_activity": T0 - 120_000,
    }
    assert attention(**everything)["score"] == 100
    assert attention(**{**everything, "activity": "waiting"})["score"] == 95
    assert attention(**{**everything, "activity": "inactive"})["score"] == 90
    rest = {**everything, "activity": "inactive", "status": "done"}
    assert attention(**rest)["score"] == 80
    assert attention(**{**rest, "pressure": 0.9})["score"] == 70
    assert attention(**{**rest, "pressure": 0.9, "open_conflicts": 0})["score"] == 40
    assert attention(**{**rest, "pressure": 0.75, "open_conflicts": 0}) == {
        "score": 0,
        "reason": "",
    }


def test_attention_reasons_are_one_actionable_line() -> None:
    hung = attention(
        activity="stalled",
        status="running",
        active_tool="Bash",
        tool_since=T0 - 16 * 60_000,
        now_ms=T0,
    )
    assert hung["reason"] == "stalled: tool Bash has run for 16 min with no output"
    silent = attention(activity="stalled", status="running", last_activity=T0 - 45_000, now_ms=T0)
    assert silent["reason"] == "stalled: no output for 45 s"
    error = attention(
        activity="inactive", status="error", error="API Error: 529\nOverloaded " + "x" * 500
    )
    assert error["reason"].startswith("error: API Error: 529 Overloaded")
    assert "\n" not in error["reason"] and len(error["reason"]) <= 200
    full = attention(
        activity="idle",
        status="running",
        pressure=0.925,
        context_tokens=185_000,
        context_limit=200_000,
    )
    assert full["reason"].startswith("context 92% full (185000/200000 tokens)")
    one = attention(activity="idle", status="running", open_conflicts=1)
    assert one["reason"].startswith("1 file also written by another session")


# -- events, ordering, aggregates ------------------------------------------


def test_visible_change_ignores_idle_time() -> None:
    state = HealthState()
    state.activity(T0 - 1000)
    first = wire(state, now_ms=T0)
    later = wire(state, now_ms=T0 + 700)
    assert later["idleMs"] != first["idleMs"]
    assert not visible_change(first, later)
    state.tool_started("t", "Bash", T0 + 800)
    assert visible_change(first, wire(state, now_ms=T0 + 900))
    assert visible_change(None, first)
    assert visible_change({**first, "extra": 1}, first)


def health(project: str, score: int, last: int | None, **extra: Any) -> dict[str, Any]:
    return {
        "projectId": project,
        "attention": {"score": score, "reason": f"r-{project}" if score else ""},
        "lastActivity": last,
        **extra,
    }


def test_sort_by_attention_then_last_activity() -> None:
    rows = [
        health("quiet", 0, T0),
        health("none-yet", 0, None),
        health("older-alarm", 100, T0 - 50),
        health("alarm", 100, T0),
        health("conflict", 70, T0 + 10),
        health("b-tie", 0, T0),
    ]
    assert [r["projectId"] for r in sort_projects(rows)] == [
        "alarm",
        "older-alarm",
        "conflict",
        "b-tie",
        "quiet",
        "none-yet",
    ]


def test_aggregates() -> None:
    rows = [
        health("a", 0, T0, live=True, status="running", stalled=False, burnRateUsdPerHour=1.5),
        health(
            "b", 100, T0 - 9, live=True, status="running", stalled=True, burnRateUsdPerHour=0.25
        ),
        health("c", 90, T0, live=True, status="error", stalled=False, burnRateUsdPerHour=0.0),
        health("d", 100, T0, live=False, status="done", stalled=False, burnRateUsdPerHour=2.0),
    ]
    assert aggregates(rows) == {
        "running": 2,
        "idle": 1,
        "stalled": 1,
        "burnRateUsdPerHour": 3.75,
        "attention": {"projectId": "d", "score": 100, "reason": "r-d"},
    }
    calm = aggregates([health("a", 0, T0, live=True, status="idle", burnRateUsdPerHour=0.0)])
    assert calm["attention"] is None and calm["idle"] == 1 and calm["running"] == 0
    assert aggregates([])["attention"] is None

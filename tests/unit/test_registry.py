"""RegistryActor without a daemon: start guards, idempotency, prompt epochs, stop
routing, restore/clear/purge, settings, notifications, health, retention, dead
session actors and shutdown (real store, reader and scheduler on a temp
database; fake providers; requests sent as the router sends them)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from corral.actors import db, starts
from corral.actors.health import INTERVAL_S, HealthThrottle
from corral.actors.messages import Notify, Request, RequestRetire, SessionDied, Shutdown
from corral.actors.normalized import Normalized
from corral.actors.notifications import RING
from corral.actors.registry import RegistryActor
from corral.actors.session import SHUTDOWN_REASON
from corral.actors.starts import IDEMPOTENCY_TTL_S, IdempotencyBook
from corral.protocol.errors import ProviderUnavailable
from tests.support.actor_fakes import RegistryRig, insert_rows, stored_row, wait_until


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[RegistryRig]:
    with RegistryRig(tmp_path) as r:
        yield r


# ---------------------------------------------------------------- start guards


def test_a_start_launches_the_provider_and_answers_running(rig: RegistryRig) -> None:
    env = {"CLAUDE_X": "1", "FOO": "2"}
    result = rig.start("p", "do it", extraEnv=env, providerConfig={"textBytes": 9})
    sid = result["sessionId"]
    expected = {"status": "running", "model": None, "droppedEnv": ["CLAUDE_X"]}
    assert result == {"sessionId": sid, **expected}
    request = rig.launcher.requests[0]
    assert (request.prompt, request.provider, request.resume_id) == ("do it", "mock", None)
    assert request.options["extraEnv"] == {"FOO": "2"}
    assert request.options["providerConfig"] == {"textBytes": 9, "checkedBy": "mock"}
    assert request.options["permissionMode"] == "default"
    assert rig.current("p") == (sid, "running") and rig.row(sid)["status"] == "running"
    health = rig.outbox.wait_published("health", lambda e: e.project_id == "p")
    assert health.data["sessionId"] == sid and health.data["live"] is True


def test_a_start_in_flight_answers_start_in_progress(rig: RegistryRig) -> None:
    rig.launcher.hold()
    first = rig.send_start("p")
    assert rig.launcher.entered.wait(5)
    for method, params in [
        ("agent.start", {"provider": "mock", "prompt": "again"}),
        ("agent.prompt", {"prompt": "more"}),
        ("agent.stop", {}),
        ("session.restore", {}),
    ]:
        assert rig.refused(method, projectId="p", **params).reason == "start_in_progress"
    assert rig.refused("project.purge", projectId="p").reason == "session_running"
    assert rig.outbox.replies_to(first) == []
    rig.launcher.release()
    assert rig.outbox.wait_reply(first).result["status"] == "running"
    assert len(rig.launcher.requests) == 1


def test_a_running_session_refuses_a_start_a_done_one_is_replaced(rig: RegistryRig) -> None:
    old = rig.start("p")["sessionId"]
    error = rig.start_error("p", "x")
    assert error.reason == "session_running" and error.data["sessionId"] == old
    assert len(rig.launcher.requests) == 1 and rig.current("p") == (old, "running")
    rig.finish_turn("p")
    new = rig.start("p", "next")["sessionId"]
    assert new != old and rig.current("p") == (new, "running")
    wait_until(lambda: rig.launcher.handles[0].closed, what="the old process closed")
    assert rig.row(old)["status"] == "done"
    assert rig.stored_ids("p") == {old, new}


def test_the_live_session_cap_answers_overloaded(rig: RegistryRig) -> None:
    rig.ok("settings.set", key="max_live_sessions", value="1")
    rig.start("p")
    before = rig.snapshot()
    error = rig.start_error("q", "go")
    assert error.reason == "overloaded"
    assert rig.snapshot() == before and rig.current("q") is None
    # an ended current session of the same project does not count: the start replaces it
    rig.finish_turn("p")
    assert rig.start("p", "again")["status"] == "running"


@pytest.mark.parametrize("why", ["disabled", "unavailable"])
def test_an_unusable_provider_answers_provider_unavailable_and_changes_nothing(
    rig: RegistryRig, why: str
) -> None:
    rig.start("p", provider="claude")
    rig.finish_turn("p")
    if why == "disabled":
        rig.ok("settings.set", key="provider_settings", value='{"mock": {"enabled": false}}')
        detail = "disabled in provider_settings"
    else:
        rig.catalog.unavailable["mock"] = detail = "mock not found on PATH"
    before = rig.snapshot()
    error = rig.start_error("p", "go")
    assert (error.reason, error.data["detail"]) == ("provider_unavailable", detail)
    assert rig.snapshot() == before and rig.current("p")[1] == "done"  # type: ignore[index]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"cwd": "relative/dir"}, "cwd"), ({"providerConfig": {"nope": 1}}, "providerConfig.nope")],
)
def test_bad_start_options_change_nothing(
    rig: RegistryRig, params: dict[str, Any], field: str
) -> None:
    before = rig.snapshot()
    error = rig.start_error("p", "go", **params)
    assert (error.reason, error.data["field"]) == ("invalid_params", field)
    assert rig.snapshot() == before


def test_a_failed_launch_is_stored_as_error_and_not_current(rig: RegistryRig) -> None:
    rig.launcher.fail = ProviderUnavailable("mock binary missing", detail="searched PATH")
    error = rig.start_error("p", "go")
    assert error.reason == "provider_unavailable"
    assert rig.current("p") is None and rig.on_registry(lambda r: dict(r.starting)) == {}
    (sid,) = rig.stored_ids("p")
    assert rig.row(sid)["error"] == "mock binary missing"
    notes = rig.ok("notifications.list")["notifications"]
    assert notes[0]["kind"] == "agent_error" and notes[0]["sessionId"] == sid


# ---------------------------------------------------------------- idempotency keys


def test_the_same_key_gets_the_first_answer(rig: RegistryRig) -> None:
    first = rig.start("p", idempotencyKey="k1")
    assert rig.start("p", "other prompt", idempotencyKey="k1") == first
    # keys are per project; another key is checked again
    assert rig.start_error("p", "x").reason == "session_running"
    assert rig.start("q", idempotencyKey="k1")["sessionId"] != first["sessionId"]
    assert len(rig.launcher.requests) == 2


def test_a_retry_in_flight_waits_for_the_same_answer(rig: RegistryRig) -> None:
    rig.launcher.hold()
    first, retry = rig.send_start(idempotencyKey="k"), rig.send_start(idempotencyKey="k")
    assert rig.start_error(idempotencyKey="k2").reason == "start_in_progress"
    assert rig.launcher.entered.wait(5) and rig.outbox.replies_to(retry) == []
    rig.launcher.release()
    assert rig.outbox.wait_reply(first) == rig.outbox.wait_reply(retry)
    assert rig.outbox.wait_reply(first).result["status"] == "running"
    assert len(rig.launcher.requests) == 1


def test_a_failed_start_is_remembered_a_refused_one_is_not(rig: RegistryRig) -> None:
    rig.launcher.fail = ProviderUnavailable("gone", detail="x")
    assert rig.start_error(idempotencyKey="f").reason == "provider_unavailable"
    rig.launcher.fail = None
    again = rig.start_error(idempotencyKey="f")
    assert again.reason == "provider_unavailable" and len(rig.launcher.requests) == 1
    # refused by a check: not remembered, the retry is checked again
    rig.start("q")
    refused = rig.start_error("q", "go", idempotencyKey="r")
    assert refused.reason == "session_running"
    rig.finish_turn("q")
    assert rig.start("q", idempotencyKey="r")["status"] == "running"


def test_idempotency_book_forgets_after_its_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(starts, "time", SimpleNamespace(monotonic=lambda: now[0]))
    book = IdempotencyBook()
    book.begin(("p", "k"))
    book.answered(("p", "k"), result={"sessionId": "s"})
    now[0] += IDEMPOTENCY_TTL_S - 1
    seen = book.seen(("p", "k"))
    assert seen is not None and seen.result == {"sessionId": "s"}
    assert book.seen(("q", "k")) is None
    now[0] += 2
    assert book.seen(("p", "k")) is None


def test_an_expired_key_is_checked_again(rig: RegistryRig, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [5000.0]
    monkeypatch.setattr(starts, "time", SimpleNamespace(monotonic=lambda: now[0]))
    first = rig.start("p", idempotencyKey="k")
    now[0] += IDEMPOTENCY_TTL_S - 1
    assert rig.start("p", idempotencyKey="k") == first
    now[0] += 2
    error = rig.start_error("p", "g", idempotencyKey="k")
    assert error.reason == "session_running"


def test_a_start_whose_session_died_remembers_its_error(rig: RegistryRig) -> None:
    rig.launcher.hold()
    first = rig.send_start(idempotencyKey="k")
    assert rig.launcher.entered.wait(5)
    rig.registry.tell(SessionDied(rig.pending_id(), "p", "internal error: boom"))
    assert rig.outbox.wait_reply(first).error.reason == "internal_error"  # type: ignore[union-attr]
    rig.launcher.release()
    assert rig.start_error(idempotencyKey="k").reason == "internal_error"


# ---------------------------------------------------------------- prompt epochs, stop routing


def test_a_prompt_racing_the_cleanup_request_is_not_lost(rig: RegistryRig) -> None:
    sid = rig.start("p")["sessionId"]
    handle = rig.launcher.handles[0]
    rig.finish_turn("p")
    prompt = rig.send("agent.prompt", projectId="p", prompt="more")
    rig.registry.tell(RequestRetire(sid, "p", 0))  # quotes the epoch before the prompt
    answer = rig.outbox.wait_reply(prompt).result
    assert answer == {"sessionId": sid, "status": "running", "seqId": 2}
    assert rig.current("p") == (sid, "running") and handle.prompts == ["go", "more"]
    rig.finish_turn("p")
    rig.registry.tell(RequestRetire(sid, "p", 1))  # the epoch it saw: honoured
    wait_until(lambda: rig.current("p") is None, what="retired")
    wait_until(lambda: handle.closed, what="process closed")
    assert rig.refused("agent.prompt", projectId="p", prompt="x").reason == "no_session"
    assert rig.row(sid)["status"] == "done"


def test_a_cleanup_request_retires_even_while_the_cached_status_lags(rig: RegistryRig) -> None:
    sid = rig.start("p")["sessionId"]
    rig.launcher.handles[0].emit(Normalized("turn_end"))
    rig.registry.tell(RequestRetire(sid, "p", 0))
    wait_until(lambda: rig.current("p") is None, what="retired")
    assert rig.ok("session.get", projectId="p") == {"session": None}
    wait_until(lambda: rig.row(sid)["status"] == "done")


def test_with_no_grace_an_ended_session_leaves_memory_by_itself(rig: RegistryRig) -> None:
    rig.ok("settings.set", key="cleanup_grace_ms", value="0")
    sid = rig.start("p")["sessionId"]
    rig.launcher.handles[0].emit(Normalized("turn_end"))
    wait_until(lambda: rig.current("p") is None, what="retired by its cleanup request")
    assert rig.row(sid)["status"] == "done"


def test_stop_signals_the_process_even_while_the_session_is_busy(rig: RegistryRig) -> None:
    sid = rig.start("p")["sessionId"]
    handle = rig.launcher.handles[0]
    rig.finish_turn("p")
    handle.prompt_gate = threading.Event()
    prompt = rig.send("agent.prompt", projectId="p", prompt="slow")
    assert handle.in_prompt.wait(5)  # the session actor is stuck handing the prompt over
    stop = rig.send("agent.stop", projectId="p")
    wait_until(lambda: handle.stopped, what="the urgent stop")
    assert handle.stop_threads[0].startswith("RegistryActor")
    assert rig.outbox.replies_to(prompt) == [] and rig.outbox.replies_to(stop) == []
    handle.prompt_gate.set()
    assert rig.outbox.wait_reply(prompt).result["status"] == "running"
    handle.emit(Normalized("turn_end", is_error=True, text="interrupted"))
    assert rig.outbox.wait_reply(stop).result == {"sessionId": sid, "status": "done"}


def test_stop_of_an_ended_session_answers_its_status(rig: RegistryRig) -> None:
    sid = rig.start("p")["sessionId"]
    rig.finish_turn("p")
    assert rig.ok("agent.stop", projectId="p") == {"sessionId": sid, "status": "done"}
    assert not rig.launcher.handles[0].stopped
    assert rig.refused("agent.stop", projectId="q").reason == "no_session"
    assert rig.refused("agent.prompt", projectId="q", prompt="x").reason == "no_session"


# -------------------------------------------------- restore, clear, purge, settings, notices


def test_restore_makes_the_newest_ended_session_current(rig: RegistryRig) -> None:
    options = {"cwd": str(rig.workdir), "permissionMode": "plan"}
    insert_rows(
        rig.path,
        stored_row("old", age_ms=3000, provider_session_id="prov-old"),
        stored_row("newer", status="error", age_ms=2000, last_seq=3, provider_session_id="prov-b"),
        stored_row("other", "q", age_ms=1000),
        options=options,
    )
    result = rig.ok("session.restore", projectId="p")
    assert result["restored"] is True and result["session"]["sessionId"] == "newer"
    assert rig.current("p") == ("newer", "error")
    ref = rig.on_registry(lambda r: r.projects["p"].ref)
    again = rig.ok("session.restore", projectId="p")
    assert again["restored"] is True and rig.on_registry(lambda r: r.projects["p"].ref) is ref
    reply = rig.ok("agent.prompt", projectId="p", prompt="continue")
    assert reply == {"sessionId": "newer", "status": "running", "seqId": 4}
    request = rig.launcher.requests[-1]
    assert (request.resume_id, request.prompt, request.options) == ("prov-b", "continue", options)
    assert rig.ok("session.restore", projectId="z") == {"restored": False, "session": None}


def test_restore_never_replaces_a_running_session(rig: RegistryRig) -> None:
    insert_rows(rig.path, stored_row("ended", age_ms=5000))
    sid = rig.start("p")["sessionId"]
    result = rig.ok("session.restore", projectId="p")
    assert result["restored"] is False and result["session"]["sessionId"] == sid
    assert rig.current("p") == (sid, "running")


def test_restore_after_shutdown_answers_shutting_down(rig: RegistryRig) -> None:
    insert_rows(rig.path, stored_row("ended"))
    done = threading.Event()
    rig.registry.tell(Shutdown(done))
    assert done.wait(5)
    assert rig.refused("session.restore", projectId="p").reason == "shutting_down"


def test_clear_forgets_only_an_ended_current_session(rig: RegistryRig) -> None:
    assert rig.ok("session.clear", projectId="p") == {"cleared": False}
    sid = rig.start("p")["sessionId"]
    assert rig.ok("session.clear", projectId="p") == {"cleared": False}
    rig.finish_turn("p")
    assert rig.ok("session.clear", projectId="p") == {"cleared": True}
    assert rig.current("p") is None and rig.stored(sid) is not None
    wait_until(lambda: rig.launcher.handles[0].closed, what="process closed")


def test_session_purge_refuses_live_work_and_deletes_an_ended_session(rig: RegistryRig) -> None:
    sid = rig.start("p")["sessionId"]
    assert rig.refused("session.purge", sessionId=sid).reason == "session_running"
    rig.launcher.hold()
    rig.send_start("q")
    assert rig.launcher.entered.wait(5)
    pending = rig.pending_id("q")
    assert rig.refused("session.purge", sessionId=pending).reason == "session_running"
    rig.launcher.release()
    rig.finish_turn("p")
    assert rig.ok("session.purge", sessionId=sid) == {"purged": True}
    assert rig.current("p") is None and rig.stored(sid) is None
    assert rig.ok("session.purge", sessionId="unknown") == {"purged": False}


def test_project_purge_deletes_every_session_of_an_idle_project(rig: RegistryRig) -> None:
    insert_rows(rig.path, stored_row("a", age_ms=2000), stored_row("b", age_ms=1000))
    rig.start("p")
    assert rig.refused("project.purge", projectId="p").reason == "session_running"
    rig.finish_turn("p")
    assert rig.ok("project.purge", projectId="p") == {"purgedSessions": 3}
    assert rig.stored_ids("p") == set() and rig.current("p") is None


def test_settings_set_stores_publishes_and_answers_one_value(rig: RegistryRig) -> None:
    result = rig.ok("settings.set", key="max_live_sessions", value=" 7 ")
    value = result["settings"]["max_live_sessions"]
    assert value.strip() == "7"
    event = rig.outbox.wait_published("settings.changed")
    assert event.data == {
        "key": "max_live_sessions",
        "value": value,
        "settings": result["settings"],
    }
    assert rig.stored_settings() == {"max_live_sessions": value}
    assert rig.ok("settings.getAll") == result


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("no_such_key", "1", "key"),
        ("max_live_sessions", "0", "value"),
        ("default_cwd", "relative", "value"),
        ("provider_settings", '{"nope": {}}', "value"),
    ],
)
def test_a_bad_setting_is_refused_and_changes_nothing(
    rig: RegistryRig, key: str, value: str, field: str
) -> None:
    before = rig.ok("settings.getAll")
    reply = rig.outbox.wait_reply(rig.send("settings.set", unchecked=True, key=key, value=value))
    assert reply.error is not None
    assert (reply.error.reason, reply.error.data["field"]) == ("invalid_params", field)
    assert rig.ok("settings.getAll") == before and rig.stored_settings() == {}
    assert rig.outbox.published("settings.changed") == []


def test_settings_survive_a_restart_and_bad_stored_values_are_ignored(rig: RegistryRig) -> None:
    rig.ok("settings.set", key="permission_mode", value="plan")
    conn = db.connect(rig.path)
    with conn:
        db.save_setting(conn, "stall_timeout_ms", "5")  # below its minimum
    conn.close()
    rig.restart_registry()
    settings = rig.ok("settings.getAll")["settings"]
    assert settings["permission_mode"] == "plan" and settings["stall_timeout_ms"] == "900000"


def test_the_notification_ring_keeps_the_newest_hundred(rig: RegistryRig) -> None:
    for i in range(RING + 30):
        rig.registry.tell(Notify("info", "system", f"n{i}", None, "p" if i % 2 else None))
    newest = rig.ok("notifications.list", limit=100)["notifications"]
    assert [n["message"] for n in newest] == [f"n{i}" for i in range(RING + 29, 29, -1)]
    assert [n["message"] for n in rig.ok("notifications.list")["notifications"]] == [
        f"n{i}" for i in range(RING + 29, RING - 21, -1)
    ]
    wait_until(lambda: len(rig.outbox.published("notification")) == RING + 30)
    published = rig.outbox.published("notification")
    assert [e.data["message"] for e in published] == [f"n{i}" for i in range(RING + 30)]
    assert [e.project_id for e in published[:2]] == [None, "p"]
    rig.restart_registry()
    assert rig.ok("notifications.list", limit=100)["notifications"] == newest


# ---------------------------------------------------------------- health, retention


def test_health_throttle_with_an_injected_clock() -> None:
    throttle = HealthThrottle(interval_s=1.0)
    assert throttle.request("p", 10.0) == 0.0
    assert throttle.request("q", 10.1) == 0.0  # per project
    assert throttle.request("p", 10.25) == pytest.approx(0.75)
    assert throttle.request("p", 10.5) is None  # one trailing event is already due
    assert throttle.due("p", 11.0) is True
    assert throttle.due("p", 11.01) is False
    assert throttle.request("p", 11.5) == pytest.approx(0.5)
    assert throttle.request("p", 12.2) == 0.0  # past the interval: now, and nothing trails
    assert throttle.due("p", 12.3) is False
    throttle.forget("p")
    assert throttle.request("p", 12.4) == 0.0


def test_a_stale_trailing_tick_does_not_break_the_interval() -> None:
    throttle = HealthThrottle(interval_s=1.0)
    assert throttle.request("p", 0.0) == 0.0
    assert throttle.request("p", 0.5) == pytest.approx(0.5)  # tick due at 1.0
    assert throttle.request("p", 1.0) == 0.0  # processed before that tick
    assert throttle.request("p", 1.05) == pytest.approx(0.95)  # a new tick due at 2.0
    assert throttle.due("p", 1.1) is False  # the first tick arrives: too early


def test_health_events_are_throttled_with_a_trailing_final_state(rig: RegistryRig) -> None:
    rig.start("p")
    handle = rig.launcher.handles[0]
    for i in range(1, 6):  # five changes within the interval
        handle.emit(Normalized("cost", cost_usd=0.1 * i))
    rig.start("q")  # another project is not held back by p
    wait_until(lambda: len(rig.outbox.published("health", "p")) == 2, timeout=3)
    time.sleep(INTERVAL_S * 0.5)
    first, trailing = rig.outbox.published("health", "p")
    assert trailing.at - first.at >= INTERVAL_S - 0.05
    assert (first.data["costUsd"], trailing.data["costUsd"]) == (0.0, 0.5)
    assert len(rig.outbox.published("health", "q")) == 1


def test_health_get_aggregates_live_sessions(rig: RegistryRig) -> None:
    rig.start("p")
    rig.start("q")
    rig.finish_turn("q")
    result = rig.ok("health.get")
    # by attention (both 0), then the newest activity first: q finished last
    assert [h["projectId"] for h in result["projects"]] == ["q", "p"]
    assert result["aggregates"]["running"] == 1 and result["aggregates"]["idle"] == 1
    unknown = rig.ok("health.get", projectId="zz")["projects"][0]
    assert (unknown["sessionId"], unknown["status"], unknown["live"]) == (None, None, False)


def test_retention_never_touches_a_live_session(rig: RegistryRig) -> None:
    three_days = 3 * 86_400_000
    insert_rows(rig.path, stored_row("live-old", age_ms=three_days))
    assert rig.ok("session.restore", projectId="p")["session"]["sessionId"] == "live-old"
    insert_rows(
        rig.path,
        stored_row("mid", age_ms=2000),
        stored_row("new", age_ms=1000),
        stored_row("q-old", "q", age_ms=three_days),
        stored_row("q-new", "q", age_ms=10),
    )
    rig.ok("settings.set", key="session_retention_days", value="1")
    assert rig.stored_ids() == {"live-old", "mid", "new", "q-new"}
    rig.ok("settings.set", key="session_retention_count", value="1")
    assert rig.stored_ids() == {"live-old", "new", "q-new"}


def test_retention_runs_when_the_registry_starts(rig: RegistryRig) -> None:
    rig.ok("settings.set", key="session_retention_count", value="2")
    insert_rows(rig.path, *[stored_row(f"s{i}", age_ms=5000 - i) for i in range(4)])
    rig.restart_registry()
    wait_until(lambda: rig.stored_ids() == {"s2", "s3"}, what="retention at start")


# ---------------------------------------------------------------- dead sessions, info, shutdown


def test_a_dead_session_actor_is_noticed_when_touched(rig: RegistryRig) -> None:
    sid = rig.start("p")["sessionId"]
    handle = rig.launcher.handles[0]
    rig.on_registry(lambda r: r.projects["p"].ref).stop(block=True, timeout=5)
    assert rig.refused("agent.prompt", projectId="p", prompt="x").reason == "no_session"
    assert handle.stopped and handle.closed
    row = rig.row(sid)
    assert row["status"] == "error" and "stopped unexpectedly" in row["error"]
    status = rig.outbox.wait_published("agent.status", lambda e: e.data["status"] == "error")
    assert status.data["sessionId"] == sid
    assert rig.ok("notifications.list")["notifications"][0]["kind"] == "agent_error"


def test_a_crashing_session_is_marked_error_and_forgotten(
    rig: RegistryRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = rig.start("p")["sessionId"]

    def broken(*_args: Any, **_kw: Any) -> dict[str, Any]:
        raise RuntimeError("conversion bug")

    monkeypatch.setattr("corral.actors.convert.to_agent_message", broken)
    rig.launcher.handles[0].emit(Normalized("text", text="boom"))
    wait_until(lambda: rig.current("p") is None, what="SessionDied handled")
    row = rig.row(sid)
    assert row["status"] == "error" and "conversion bug" in row["error"]
    assert rig.start("p", "fresh")["sessionId"] != sid


def test_a_session_dying_during_its_start_answers_internal_error(rig: RegistryRig) -> None:
    rig.launcher.hold()
    token = rig.send_start("p")
    assert rig.launcher.entered.wait(5)
    rig.registry.tell(SessionDied(sid := rig.pending_id("p"), "p", "internal error: boom"))
    assert rig.outbox.wait_reply(token).error.reason == "internal_error"  # type: ignore[union-attr]
    assert rig.on_registry(lambda r: dict(r.starting)) == {}
    rig.launcher.release()
    assert rig.start("p", "again")["sessionId"] != sid


def test_a_failing_handler_answers_internal_error_and_the_registry_lives_on(
    rig: RegistryRig,
) -> None:
    def broken(_registry: RegistryActor, _params: dict[str, Any], _reply: Any) -> None:
        raise RuntimeError("handler bug")

    rig.registry.tell(Request(broken, {}, "bad", "test.broken"))
    reply = rig.outbox.wait_reply("bad")
    assert reply.error is not None and reply.error.reason == "internal_error"
    assert "handler bug" in reply.error.message
    assert rig.ok("conflicts.list") == {"conflicts": []}


def test_daemon_info_reports_providers_and_counts(rig: RegistryRig) -> None:
    rig.ok("settings.set", key="provider_settings", value='{"claude": {"enabled": false}}')
    insert_rows(rig.path, stored_row("old"))
    rig.start("p")
    info = rig.ok("daemon.info")
    assert info["boot"] == "b00t" and info["sessions"] == {"live": 1, "stored": 2}
    assert info["providers"] == {
        "claude": {"available": False, "detail": "disabled in provider_settings"},
        "mock": {"available": True, "detail": "mock 1.0 (probed)"},
    }
    assert ("mock", True) in rig.catalog.asked


def test_session_get_answers_the_committed_row_from_memory(rig: RegistryRig) -> None:
    assert rig.ok("session.get", projectId="p") == {"session": None}
    sid = rig.start("p")["sessionId"]
    session = rig.ok("session.get", projectId="p")["session"]
    assert (session["sessionId"], session["status"], session["lastSeqId"]) == (sid, "running", 1)
    assert session == rig.row(sid)  # what is stored, in the stored shape
    rig.finish_turn("p")
    done = rig.ok("session.get", projectId="p")["session"]
    assert done["status"] == "done" and done == rig.row(sid)
    # Once the session has reported, the registry answers itself: no reader is asked.
    for ref in rig.reader_refs:
        ref.stop()
    assert rig.ok("session.get", projectId="p")["session"] == done


def test_shutdown_answers_pending_starts_and_interrupts_running_sessions(
    rig: RegistryRig,
) -> None:
    running = rig.start("b")["sessionId"]
    rig.launcher.hold()
    pending = rig.send_start("a")
    assert rig.launcher.entered.wait(5)
    done = threading.Event()
    rig.registry.tell(Shutdown(done))
    reply = rig.outbox.wait_reply(pending)
    assert reply.error is not None and reply.error.reason == "shutting_down"
    rig.launcher.release()
    assert done.wait(10)
    row = rig.row(running)
    assert row["error"] == f"interrupted: {SHUTDOWN_REASON}"
    assert all(h.closed for h in rig.launcher.handles)
    assert rig.start_error("c", "x").reason == "shutting_down"
    assert rig.refused("agent.prompt", projectId="b", prompt="x").reason == "shutting_down"
    assert rig.on_registry(lambda r: (len(r.projects), len(r.starting))) == (0, 0)

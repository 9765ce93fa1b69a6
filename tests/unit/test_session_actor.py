"""SessionActor with a fake provider launcher and a real store: seqIds, display
rules, cost, queued prompts, stop, raw storage, retry notices, launch failure."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pykka
import pytest

from corral.actors import db
from corral.actors.messages import (
    Begin,
    Notify,
    Prompt,
    Retire,
    SessionChanged,
    SessionDied,
    Started,
    StartFailed,
    Stop,
)
from corral.actors.normalized import Normalized
from corral.actors.ports import ApprovalDecision, Capabilities, ExitReport, LaunchRequest
from corral.actors.scheduler import Scheduler
from corral.actors.session import Control, SessionActor, SessionDeps, new_session_row
from corral.actors.settings import DEFAULTS, Settings
from corral.actors.store import Drain, StoreActor
from corral.protocol.errors import ProviderUnavailable


class Outbox:
    def __init__(self) -> None:
        self.replies: queue.Queue[tuple[Any, Any, Any]] = queue.Queue()
        self.events: list[tuple[str, dict[str, Any], str | None]] = []

    def reply(self, to: Any, result: Any = None, error: Any = None) -> None:
        self.replies.put((to, result, error))

    def publish(self, event: str, data: dict[str, Any], project_id: str | None = None) -> None:
        self.events.append((event, data, project_id))


class Inbox(pykka.ThreadingActor):
    """Stands in for the registry: records what sessions tell it."""

    def __init__(self, sink: queue.Queue[Any]) -> None:
        super().__init__()
        self.sink = sink

    def on_receive(self, message: Any) -> None:
        self.sink.put(message)


@dataclass
class FakeHandle:
    request: LaunchRequest
    prompts: list[str] = field(default_factory=list)
    stopped: bool = False
    closed: bool = False
    running: bool = True
    handed: int = 0
    acked: int = 0
    mid_turn: bool = True
    answers: list[tuple[dict[str, Any], ApprovalDecision]] = field(default_factory=list)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(mid_turn_prompts=self.mid_turn)

    @property
    def pid(self) -> int | None:
        return 4242

    @property
    def alive(self) -> bool:
        return self.running

    def send_prompt(self, text: str) -> bool:
        if self.stopped or not self.running:
            return False
        self.prompts.append(text)
        return True

    def stop_turn(self) -> None:
        self.stopped = True

    def answer(self, request: dict[str, Any], decision: ApprovalDecision) -> bool:
        self.answers.append((request, decision))
        return True

    def close(self) -> None:
        self.closed = True

    def wait_exit(self, timeout: float) -> bool:
        return True

    # test drivers (run on the test thread, like the reader thread would)
    def emit(self, *items: Normalized) -> None:
        self.handed += 1
        self.request.on_messages(list(items), self.ack)

    def ack(self) -> None:
        self.acked += 1

    def exit(self, code: int = 0, stderr: str = "") -> None:
        self.running = False
        self.request.on_exit(ExitReport(code, None, stderr, self.stopped))


class FakeLauncher:
    def __init__(self) -> None:
        self.handles: list[FakeHandle] = []
        self.fail: Exception | None = None

    def launch(self, request: LaunchRequest) -> FakeHandle:
        if self.fail is not None:
            raise self.fail
        handle = FakeHandle(request)
        handle.prompts.append(request.prompt)
        self.handles.append(handle)
        return handle


@dataclass
class Rig:
    ref: pykka.ActorRef[Any]
    launcher: FakeLauncher
    outbox: Outbox
    told: queue.Queue[Any]
    store: pykka.ActorRef[Any]
    path: Path
    settings: Settings

    def sync(self) -> None:
        """Wait until the session handled everything so far and the store committed it."""
        marker = threading.Event()
        # a Retire-free barrier: an unknown message is logged and ignored
        self.ref.tell(("barrier", marker))
        deadline = time.monotonic() + 5
        while not marker.is_set() and time.monotonic() < deadline:
            time.sleep(0.005)
        done = threading.Event()
        self.store.tell(Drain(then=done.set))
        assert done.wait(5)

    def messages(self) -> list[dict[str, Any]]:
        conn = db.connect(self.path, readonly=True)
        try:
            return db.load_messages(conn, "s1", 0, 1000)[0]
        finally:
            conn.close()

    def row(self) -> dict[str, Any]:
        conn = db.connect(self.path, readonly=True)
        try:
            found = db.get_session(conn, "s1")
            assert found is not None
            return found
        finally:
            conn.close()

    def told_of(self, kind: type) -> list[Any]:
        out = []
        while True:
            try:
                item = self.told.get_nowait()
            except queue.Empty:
                return out
            if isinstance(item, kind):
                out.append(item)


class BarrierSession(SessionActor):
    def on_receive(self, message: Any) -> Any:
        if isinstance(message, tuple) and message and message[0] == "barrier":
            message[1].set()
            return None
        return super().on_receive(message)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    path = tmp_path / "corral.db"
    db.connect(path).close()
    outbox = Outbox()
    store = StoreActor.start(path, outbox)
    told: queue.Queue[Any] = queue.Queue()
    registry = Inbox.start(told)
    scheduler = Scheduler()
    scheduler.start()
    launcher = FakeLauncher()
    settings = Settings(DEFAULTS)
    deps = SessionDeps(store, registry, scheduler, outbox, launcher)
    row = new_session_row("s1", "p", "mock", None)
    ref = BarrierSession.start(row, {"cwd": "/"}, settings, deps, Control())
    yield Rig(ref, launcher, outbox, told, store, path, settings)
    for actor in (ref, registry, store):
        try:
            actor.stop(block=True, timeout=5)
        except pykka.ActorDeadError:
            pass
    scheduler.stop()


def begin(rig: Rig) -> FakeHandle:
    rig.ref.tell(Begin("do it", 0))
    rig.sync()
    assert rig.launcher.handles
    return rig.launcher.handles[-1]


def test_begin_records_prompt_and_reports_started(rig: Rig) -> None:
    handle = begin(rig)
    assert handle.prompts == ["do it"] and handle.request.resume_id is None
    assert [(m["seqId"], m["role"], m["content"]) for m in rig.messages()] == [(1, "user", "do it")]
    assert rig.row()["status"] == "running"
    assert rig.told_of(Started)[0].session_id == "s1"


def test_output_becomes_messages_state_and_events(rig: Rig) -> None:
    handle = begin(rig)
    handle.emit(
        Normalized("init", model="m-1", provider_session_id="prov-1"),
        Normalized("thinking", text="hmm"),
        Normalized("tool_call", tool_name="Bash", tool_input={"command": "ls"}, tool_id="t1"),
        Normalized("tool_result", text="a\nb", tool_id="t1"),
        Normalized("status", status="retrying", text="retrying: overloaded, attempt 1/3"),
        Normalized("unknown", raw={"type": "weird", "x": 1}),
        Normalized("cost", cost_usd=0.5, input_tokens=10, output_tokens=5, cache_read_tokens=7),
        Normalized("turn_end"),
    )
    rig.sync()
    messages = rig.messages()
    assert [m["role"] for m in messages] == [
        "user",
        "system",
        "thinking",
        "tool-call",
        "tool-result",
    ]
    assert [m["seqId"] for m in messages] == [1, 2, 3, 4, 5]
    assert messages[4]["toolName"] == "Bash"
    row = rig.row()
    assert row["status"] == "done" and row["model"] == "m-1"
    assert row["providerSessionId"] == "prov-1"
    assert (row["costUsd"], row["inputTokens"], row["outputTokens"]) == (0.5, 10, 5)
    assert row["cacheReadTokens"] == 7 and row["lastSeqId"] == 5 and row["messageCount"] == 5
    events = [e for e, _d, _p in rig.outbox.events]
    # the turn's messages, then its cost, then the status: a client seeing done has the cost
    assert events[-3:] == ["agent.message", "agent.cost", "agent.status"]
    conn = db.connect(rig.path, readonly=True)
    raw = conn.execute("SELECT type, line FROM provider_raw").fetchall()
    assert raw == [("weird", '{"type":"weird","x":1}')]
    notices = rig.told_of(Notify)
    assert [n.message for n in notices] == ["retrying: overloaded, attempt 1/3"]


def test_cumulative_cost_never_drops(rig: Rig) -> None:
    handle = begin(rig)
    handle.emit(Normalized("cost", cost_usd=0.3), Normalized("turn_end"))
    rig.ref.tell(Prompt("again", "r", 1))
    handle.emit(Normalized("cost", cost_usd=0.0), Normalized("turn_end", is_error=True, text="x"))
    rig.sync()
    assert rig.row()["costUsd"] == 0.3


def test_prompt_while_running_waits_for_both_turns(rig: Rig) -> None:
    handle = begin(rig)
    rig.ref.tell(Prompt("second", "r2", 1))
    rig.sync()
    assert handle.prompts == ["do it", "second"]
    handle.emit(Normalized("text", text="one"), Normalized("turn_end"))
    rig.sync()
    assert rig.row()["status"] == "running"
    handle.emit(Normalized("text", text="two"), Normalized("turn_end"))
    rig.sync()
    assert rig.row()["status"] == "done"
    assert rig.outbox.replies.get(timeout=2)[1] == {
        "sessionId": "s1",
        "status": "running",
        "seqId": 2,
    }


def test_a_provider_without_mid_turn_prompts_gets_the_prompt_at_the_turn_end(
    rig: Rig,
) -> None:
    handle = begin(rig)
    handle.mid_turn = False
    rig.ref.tell(Prompt("second", "r2", 1))
    rig.ref.tell(Prompt("third", "r3", 2))
    rig.sync()
    # recorded at once (seqIds 2 and 3), but the running turn is left alone
    assert handle.prompts == ["do it"]
    assert [m["content"] for m in rig.messages() if m["role"] == "user"] == [
        "do it",
        "second",
        "third",
    ]
    assert not handle.stopped and not handle.closed and len(rig.launcher.handles) == 1
    handle.emit(Normalized("text", text="one"), Normalized("turn_end"))
    rig.sync()
    assert handle.prompts == ["do it", "second"]
    assert rig.row()["status"] == "running"
    handle.emit(Normalized("text", text="two"), Normalized("turn_end"))
    rig.sync()
    assert handle.prompts == ["do it", "second", "third"]
    assert rig.row()["status"] == "running"
    handle.emit(Normalized("text", text="three"), Normalized("turn_end"))
    rig.sync()
    assert rig.row()["status"] == "done"


def test_a_stop_cancels_the_prompts_waiting_for_the_turn_end(rig: Rig) -> None:
    handle = begin(rig)
    handle.mid_turn = False
    rig.ref.tell(Prompt("second", "r2", 1))
    rig.ref.tell(Stop("stop-reply"))
    rig.sync()
    assert handle.stopped
    handle.emit(Normalized("turn_end", is_error=True, text="interrupted"))
    rig.sync()
    assert rig.row()["status"] == "done"
    assert handle.prompts == ["do it"]  # the queued prompt never reached the provider
    assert len(rig.launcher.handles) == 1


def test_a_stop_closes_a_provider_that_holds_queued_prompts(rig: Rig) -> None:
    handle = begin(rig)  # a provider that takes prompts mid-turn (Claude Code)
    rig.ref.tell(Prompt("second", "r2", 1))
    rig.sync()
    assert handle.prompts == ["do it", "second"]  # queued inside the provider
    rig.ref.tell(Stop("stop-reply"))
    rig.sync()
    handle.emit(Normalized("turn_end", is_error=True, text="interrupted"))
    rig.sync()
    assert rig.row()["status"] == "done"
    assert [m["content"] for m in rig.messages()[-2:]] == [
        "stopped",
        "1 queued prompt(s) cancelled by the stop",
    ]
    assert handle.closed  # nothing it queued can run after the stop
    # What the closed process still prints changes nothing.
    count = len(rig.messages())
    handle.emit(Normalized("init", model="m"), Normalized("text", text="phantom"))
    rig.sync()
    assert rig.row()["status"] == "done" and len(rig.messages()) == count


def test_a_stop_without_queued_prompts_keeps_the_provider(rig: Rig) -> None:
    handle = begin(rig)
    rig.ref.tell(Stop("stop-reply"))
    rig.sync()
    handle.emit(Normalized("turn_end", is_error=True, text="interrupted"))
    rig.sync()
    assert rig.row()["status"] == "done" and rig.messages()[-1]["content"] == "stopped"
    assert not handle.closed


def test_a_turn_the_provider_starts_itself_makes_the_session_run(rig: Rig) -> None:
    handle = begin(rig)
    handle.emit(Normalized("text", text="one"), Normalized("turn_end"))
    rig.sync()
    assert rig.row()["status"] == "done"
    handle.emit(Normalized("init", model="m"), Normalized("text", text="more"))
    rig.sync()
    assert rig.row()["status"] == "running"  # the stream is the truth
    handle.emit(Normalized("turn_end", is_error=True, text="HTTP 500"))
    rig.sync()
    assert rig.row()["status"] == "error" and rig.row()["error"] == "HTTP 500"


def test_a_failed_turn_drops_the_waiting_prompts_with_a_note(rig: Rig) -> None:
    handle = begin(rig)
    handle.mid_turn = False
    rig.ref.tell(Prompt("second", "r2", 1))
    rig.sync()
    handle.emit(Normalized("turn_end", is_error=True, text="HTTP 500"))
    rig.sync()
    assert rig.row()["status"] == "error" and rig.row()["error"] == "HTTP 500"
    assert rig.messages()[-1]["content"] == "1 queued prompt(s) not sent: the turn failed"
    assert handle.prompts == ["do it"]


def test_turn_error_and_unexpected_exit(rig: Rig) -> None:
    handle = begin(rig)
    handle.emit(Normalized("turn_end", is_error=True, text="API Error: 529 overloaded"))
    rig.sync()
    assert rig.row()["status"] == "error"
    assert rig.row()["error"] == "API Error: 529 overloaded"
    rig.ref.tell(Prompt("retry", "r", 1))
    rig.sync()
    assert rig.row()["status"] == "running" and "error" not in rig.row()
    handle.exit(1, "boom line\nlast words\n")
    rig.sync()
    row = rig.row()
    assert row["status"] == "error"
    assert row["error"] == "provider exited with code 1: last words"
    assert rig.messages()[-1]["content"] == "provider exited with code 1: last words"


def test_stop_waits_for_the_turn_end_and_reports_done(rig: Rig) -> None:
    handle = begin(rig)
    rig.ref.tell(Stop("stop-reply"))
    rig.sync()
    assert handle.stopped
    assert rig.outbox.replies.empty()
    handle.emit(
        Normalized("system", text="[Request interrupted by user]"),
        Normalized("error", text="[ede_diagnostic] interrupted"),
        Normalized("turn_end", is_error=True, text="[ede_diagnostic] interrupted"),
    )
    rig.sync()
    assert rig.outbox.replies.get(timeout=2) == (
        "stop-reply",
        {"sessionId": "s1", "status": "done"},
        None,
    )
    contents = [m["content"] for m in rig.messages()]
    assert contents[-2:] == ["[Request interrupted by user]", "stopped"]
    assert rig.row()["status"] == "done" and "error" not in rig.row()


def test_prompt_after_stop_relaunches_with_resume(rig: Rig) -> None:
    handle = begin(rig)
    handle.emit(Normalized("init", provider_session_id="prov-9"), Normalized("turn_end"))
    rig.ref.tell(Stop("s"))
    handle.exit(0)
    handle.stopped = True
    rig.ref.tell(Prompt("more", "r", 1))
    rig.sync()
    assert len(rig.launcher.handles) == 2
    assert rig.launcher.handles[1].request.resume_id == "prov-9"
    assert rig.launcher.handles[1].prompts == ["more"]


def test_launch_failure_is_stored_and_reported(rig: Rig) -> None:
    rig.launcher.fail = ProviderUnavailable("claude not found", detail="searched: x")
    rig.ref.tell(Begin("go", 0))
    rig.sync()
    failed = rig.told_of(StartFailed)
    assert failed and failed[0].error.reason == "provider_unavailable"
    row = rig.row()
    assert row["status"] == "error" and row["error"] == "claude not found"


def test_cleanup_requests_retirement_then_retire_stops_actor(rig: Rig) -> None:
    rig.settings.values = {**rig.settings.values, "cleanup_grace_ms": "0"}
    handle = begin(rig)
    handle.emit(Normalized("turn_end"))
    rig.sync()
    deadline = time.monotonic() + 5
    changed: list[Any] = []
    while time.monotonic() < deadline:
        item = rig.told.get(timeout=5)
        changed.append(item)
        if type(item).__name__ == "RequestRetire":
            break
    assert type(changed[-1]).__name__ == "RequestRetire" and changed[-1].epoch == 0
    rig.sync()
    changed += rig.told_of(SessionChanged)
    assert any(isinstance(c, SessionChanged) and c.status == "done" for c in changed)
    rig.ref.tell(Retire())
    deadline = time.monotonic() + 5
    while rig.ref.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not rig.ref.is_alive()
    assert handle.closed


def test_every_handed_batch_is_acknowledged_after_its_commit(rig: Rig) -> None:
    handle = begin(rig)
    handle.emit(Normalized("text", text="one"))
    handle.emit(Normalized("status", status="rate_limit"))  # nothing to store
    handle.emit(Normalized("text", text="two"), Normalized("turn_end"))
    rig.sync()
    assert handle.acked == handle.handed == 3
    assert [m["content"] for m in rig.messages()][-2:] == ["one", "two"]
    # output of a replaced process is dropped but still acknowledged
    rig.ref.tell(Retire())
    deadline = time.monotonic() + 5
    while rig.ref.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    handle.emit(Normalized("text", text="late"))
    assert handle.acked == handle.handed == 4


def test_a_crashing_session_stops_its_process_and_tells_the_registry(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = begin(rig)

    def broken(*_args: Any, **_kw: Any) -> dict[str, Any]:
        raise RuntimeError("conversion bug")

    monkeypatch.setattr("corral.actors.convert.to_agent_message", broken)
    handle.emit(Normalized("text", text="boom"))
    deadline = time.monotonic() + 5
    while rig.ref.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not rig.ref.is_alive()
    died = []
    deadline = time.monotonic() + 5
    while not died and time.monotonic() < deadline:
        died = rig.told_of(SessionDied)
        time.sleep(0.01)
    assert died and died[0].session_id == "s1" and "conversion bug" in died[0].error
    assert handle.stopped and handle.closed

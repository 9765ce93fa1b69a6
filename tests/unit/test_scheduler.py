"""Tests of the daemon's timer thread (actors/scheduler.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from corral.actors.scheduler import (
    Generation,
    Scheduler,
    Tick,
    TimerHandle,
    next_fixed_rate_deadline,
)

pytestmark = pytest.mark.timeout(30)


class Recorder:
    """A target that records (monotonic time, message) of every tell."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: list[tuple[float, object]] = []
        self.threads: set[str] = set()
        self.changed = threading.Condition(self.lock)

    def tell(self, message: object) -> None:
        with self.changed:
            self.got.append((time.monotonic(), message))
            self.threads.add(threading.current_thread().name)
            self.changed.notify_all()

    @property
    def messages(self) -> list[object]:
        with self.lock:
            return [m for _, m in self.got]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[object]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.got) >= count, timeout)
            return [m for _, m in self.got]


class Collector(pykka.ThreadingActor):
    """A real actor that keeps the messages it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "get":
            return list(self.received)
        self.received.append(message)
        return None


def received(ref: pykka.ActorRef[Collector]) -> list[Any]:
    """What a Collector actor has received so far."""
    got = ref.ask("get")
    assert isinstance(got, list)
    return got


@pytest.fixture
def sched() -> Iterator[Scheduler]:
    s = Scheduler()
    s.start()
    yield s
    s.stop()


@pytest.fixture
def actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


# -- one-shot timers ------------------------------------------------------------------


def test_call_later_delivers_on_the_scheduler_thread(sched: Scheduler) -> None:
    rec = Recorder()
    t0 = time.monotonic()
    handle = sched.call_later(0.05, rec, "hello")
    assert isinstance(handle, TimerHandle)
    assert rec.wait_for(1) == ["hello"]
    fired_at = rec.got[0][0]
    assert fired_at - t0 >= 0.05 - 0.005  # never early (monotonic clock)
    assert rec.threads == {"corral-scheduler"}
    assert not handle.active and not handle.cancelled
    assert sched.pending == 0


def test_thread_name() -> None:
    s = Scheduler(name="timer-x")
    s.start()
    try:
        rec = Recorder()
        s.call_later(0, rec, 1)
        rec.wait_for(1)
        assert rec.threads == {"timer-x"}
    finally:
        s.stop()


def test_ordering_by_deadline(sched: Scheduler) -> None:
    rec = Recorder()
    for delay, msg in [(0.4, "d"), (0.1, "a"), (0.3, "c"), (0.2, "b")]:
        sched.call_later(delay, rec, msg)
    assert rec.wait_for(4) == ["a", "b", "c", "d"]


def test_equal_deadlines_fire_in_scheduling_order() -> None:
    s = Scheduler()  # not started: everything is due at once when it starts
    rec = Recorder()
    for i in range(50):
        s.call_later(-1, rec, i)
    assert s.pending == 50
    s.start()
    try:
        assert rec.wait_for(50) == list(range(50))
    finally:
        s.stop()


def test_timers_scheduled_before_start_fire_after_start() -> None:
    s = Scheduler()
    rec = Recorder()
    s.call_later(0.01, rec, "x")
    time.sleep(0.1)
    assert rec.messages == []
    s.start()
    try:
        assert rec.wait_for(1) == ["x"]
    finally:
        s.stop()


def test_nan_delay_rejected(sched: Scheduler) -> None:
    with pytest.raises(ValueError):
        sched.call_later(float("nan"), Recorder(), "x")


# -- cancel ---------------------------------------------------------------------------


def test_cancel(sched: Scheduler) -> None:
    rec = Recorder()
    doomed = sched.call_later(0.1, rec, "cancelled")
    sched.call_later(0.2, rec, "kept")
    assert sched.pending == 2
    doomed.cancel()
    assert doomed.cancelled and not doomed.active
    assert sched.pending == 1
    assert rec.wait_for(1) == ["kept"]
    time.sleep(0.1)
    assert rec.messages == ["kept"]
    assert sched.pending == 0


def test_cancel_is_idempotent(sched: Scheduler) -> None:
    rec = Recorder()
    h = sched.call_later(10, rec, "x")
    sched.call_later(10, rec, "y")
    for _ in range(3):
        h.cancel()
    assert sched.pending == 1


def test_cancel_after_firing_is_harmless(sched: Scheduler) -> None:
    rec = Recorder()
    h = sched.call_later(0, rec, "x")
    rec.wait_for(1)
    assert wait_until(lambda: not h.active)
    h.cancel()
    h.cancel()
    assert h.cancelled
    assert sched.pending == 0


def test_cancel_from_other_threads(sched: Scheduler) -> None:
    rec = Recorder()
    handles = [sched.call_later(0.3, rec, i) for i in range(200)]
    keep = set(range(0, 200, 2))
    threads = [
        threading.Thread(target=lambda hs=handles[k::4]: [h.cancel() for h in hs]) for k in (1, 3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sched.pending == 100
    got = rec.wait_for(100)
    assert sorted(m for m in got if isinstance(m, int)) == sorted(keep)
    assert len(got) == 100
    time.sleep(0.1)
    assert len(rec.messages) == 100


def test_lazy_deletion_heap_is_compacted(sched: Scheduler) -> None:
    rec = Recorder()
    handles = [sched.call_later(100, rec, i) for i in range(1000)]
    for h in handles:
        h.cancel()
    assert sched.pending == 0
    assert len(sched._heap) <= 200  # cancelled entries do not pile up forever


def test_concurrent_scheduling(sched: Scheduler) -> None:
    rec = Recorder()

    def worker(base: int) -> None:
        for i in range(100):
            sched.call_later(0.001 * (i % 7), rec, base + i)

    threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = [m for m in rec.wait_for(800) if isinstance(m, int)]
    assert sorted(got) == sorted(k * 1000 + i for k in range(8) for i in range(100))
    assert wait_until(lambda: sched.pending == 0)


# -- early wake -----------------------------------------------------------------------


def test_earlier_deadline_wakes_the_thread(sched: Scheduler) -> None:
    rec = Recorder()
    sched.call_later(30, rec, "late")
    time.sleep(0.1)  # the thread now sleeps until the 30 s deadline
    t0 = time.monotonic()
    sched.call_later(0.05, rec, "early")
    assert rec.wait_for(1, timeout=5) == ["early"]
    assert rec.got[0][0] - t0 < 1.0  # it did not wait for the late deadline
    assert sched.pending == 1


def test_new_timer_on_an_idle_scheduler_wakes_it(sched: Scheduler) -> None:
    rec = Recorder()
    time.sleep(0.1)  # empty heap: the thread waits without a timeout
    t0 = time.monotonic()
    sched.call_later(0, rec, "now")
    rec.wait_for(1)
    assert rec.got[0][0] - t0 < 1.0


# -- call_every -----------------------------------------------------------------------


def test_call_every_cadence(sched: Scheduler) -> None:
    rec = Recorder()
    counter = iter(range(1_000_000))
    t0 = time.monotonic()
    h = sched.call_every(0.05, rec, lambda: next(counter))
    time.sleep(1.0)
    h.cancel()
    n = len(rec.messages)
    # ~20 ticks in 1 s; generous bounds for a loaded machine, but no burst
    assert 8 <= n <= 21
    assert rec.messages == list(range(n))
    assert rec.got[0][0] - t0 >= 0.05 - 0.005  # first tick one interval later
    time.sleep(0.2)
    assert len(rec.messages) == n  # cancelled: no more ticks
    assert sched.pending == 0


def test_call_every_stays_pending_until_cancelled(sched: Scheduler) -> None:
    rec = Recorder()
    h = sched.call_every(0.02, rec, lambda: "tick")
    rec.wait_for(3)
    assert sched.pending == 1 and h.active and h.repeating
    h.cancel()
    assert sched.pending == 0 and not h.active


def test_call_every_cancel_from_its_own_tick(sched: Scheduler) -> None:
    holder: list[TimerHandle] = []
    rec = Recorder()

    class CancelOnThird:
        def __init__(self) -> None:
            self.n = 0

        def tell(self, message: object) -> None:
            self.n += 1
            rec.tell(message)
            if self.n == 3:
                holder[0].cancel()

    holder.append(sched.call_every(0.02, CancelOnThird(), lambda: "t"))
    rec.wait_for(3)
    time.sleep(0.2)
    assert rec.messages == ["t", "t", "t"]


def test_call_every_skips_missed_ticks_instead_of_bursting(sched: Scheduler) -> None:
    interval = 0.2
    released = threading.Event()
    block_end: list[float] = []
    rec = Recorder()

    class SlowFirst:
        def tell(self, message: object) -> None:
            if not released.is_set():
                time.sleep(0.95)  # blocks the scheduler thread over ~4 deadlines
                released.set()
                block_end.append(time.monotonic())
            rec.tell(message)

    h = sched.call_every(interval, SlowFirst(), lambda: "tick")
    assert released.wait(5)
    time.sleep(0.6)
    h.cancel()
    after = [t for t, _ in rec.got if t > block_end[0] + 0.001]
    # bursting would deliver ~4 ticks right after the block; skipping delivers
    # the next grid point only
    burst = [t for t in after if t - block_end[0] < 0.15]
    assert len(burst) <= 2
    assert 1 <= len(after) <= 5


def test_call_every_bad_interval(sched: Scheduler) -> None:
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            sched.call_every(bad, Recorder(), lambda: None)


@pytest.mark.parametrize(
    ("previous", "interval", "now", "expected"),
    [
        (10.0, 1.0, 10.2, 11.0),  # on time
        (10.0, 1.0, 10.999, 11.0),
        (10.0, 1.0, 11.0, 12.0),  # exactly at the next deadline: skip it
        (10.0, 1.0, 11.5, 12.0),  # one missed tick skipped
        (10.0, 1.0, 14.7, 15.0),  # four missed ticks skipped, still on the grid
        (0.0, 0.1, 0.35, 0.4),
    ],
)
def test_next_fixed_rate_deadline(
    previous: float, interval: float, now: float, expected: float
) -> None:
    got = next_fixed_rate_deadline(previous, interval, now)
    assert got == pytest.approx(expected)
    assert got > now


def test_next_fixed_rate_deadline_stays_on_grid() -> None:
    prev = 100.0
    for now in (100.05, 103.33, 250.0001, 1000.0):
        nxt = next_fixed_rate_deadline(prev, 0.25, now)
        assert now < nxt <= now + 0.25 + 1e-9
        steps = (nxt - prev) / 0.25
        assert steps == pytest.approx(round(steps))


# -- failing targets ------------------------------------------------------------------


def test_dead_actor_target_is_ignored(sched: Scheduler, actors: None) -> None:
    dead = Collector.start()
    dead.stop()
    alive = Collector.start()
    sched.call_later(0.01, dead, "lost")
    sched.call_later(0.05, alive, "delivered")
    assert wait_until(lambda: received(alive) == ["delivered"])
    assert sched.running


def test_repeating_timer_to_dead_actor_is_cancelled(sched: Scheduler, actors: None) -> None:
    ref = Collector.start()
    h = sched.call_every(0.02, ref, lambda: "tick")
    assert wait_until(lambda: len(received(ref)) >= 2)
    ref.stop()
    assert wait_until(lambda: h.cancelled)
    assert sched.pending == 0
    assert sched.running


def test_raising_target_does_not_kill_the_thread(
    sched: Scheduler, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def tell(self, message: object) -> None:
            raise RuntimeError("boom")

    rec = Recorder()
    sched.call_later(0, Broken(), "x")
    sched.call_later(0.05, rec, "after")
    assert rec.wait_for(1) == ["after"]
    assert sched.running
    assert "tell failed" in caplog.text


def test_raising_factory_skips_one_tick(sched: Scheduler) -> None:
    calls = iter(range(100))

    def factory() -> object:
        n = next(calls)
        if n == 0:
            raise RuntimeError("first tick fails")
        return n

    rec = Recorder()
    h = sched.call_every(0.02, rec, factory)
    got = rec.wait_for(2)
    h.cancel()
    assert got[:2] == [1, 2]


# -- stop -----------------------------------------------------------------------------


def test_stop_drops_pending_timers() -> None:
    s = Scheduler()
    s.start()
    rec = Recorder()
    one = s.call_later(0.2, rec, "one-shot")
    every = s.call_every(0.2, rec, lambda: "tick")
    assert s.pending == 2
    s.stop()
    assert not s.running
    assert s.pending == 0
    assert one.cancelled and every.cancelled
    time.sleep(0.5)
    assert rec.messages == []


def test_stop_is_idempotent_and_final() -> None:
    s = Scheduler()
    s.stop()  # never started
    with pytest.raises(RuntimeError):
        s.start()
    s2 = Scheduler()
    s2.start()
    s2.start()  # idempotent too
    s2.stop()
    s2.stop(timeout=0.1)
    assert not s2.running


def test_scheduling_after_stop_returns_a_cancelled_handle() -> None:
    s = Scheduler()
    s.start()
    s.stop()
    rec = Recorder()
    h = s.call_later(0, rec, "x")
    assert h.cancelled and not h.active
    assert s.pending == 0
    time.sleep(0.1)
    assert rec.messages == []


def test_stop_from_a_tick_does_not_deadlock() -> None:
    s = Scheduler()
    s.start()
    done = threading.Event()

    class Stopper:
        def tell(self, message: object) -> None:
            s.stop()
            done.set()

    s.call_later(0, Stopper(), "stop")
    assert done.wait(5)
    assert wait_until(lambda: not s.running)


# -- with real actors: the generation pattern -----------------------------------------


class StallWatcher(pykka.ThreadingActor):
    """An actor that re-arms a stall timer and ignores stale ticks."""

    def __init__(self, scheduler: Scheduler) -> None:
        super().__init__()
        self.scheduler = scheduler
        self.gen = Generation()
        self.timer: TimerHandle | None = None
        self.stalls: list[int] = []
        self.stale = 0

    def arm(self, delay_s: float) -> int:
        if self.timer is not None:
            self.timer.cancel()
        tick = Tick("stall", self.gen.next())
        self.timer = self.scheduler.call_later(delay_s, self.actor_ref, tick)
        return tick.generation

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.gen.next()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Tick) and message.kind == "stall":
            if not self.gen.is_current(message.generation):
                self.stale += 1
                return None
            self.stalls.append(message.generation)
        return None

    def report(self) -> tuple[list[int], int]:
        return list(self.stalls), self.stale


def test_actor_rearming_a_timer(sched: Scheduler, actors: None) -> None:
    ref = StallWatcher.start(sched)
    proxy = ref.proxy()
    for _ in range(5):
        proxy.arm(0.3).get()
        time.sleep(0.02)
    last = proxy.arm(0.1).get()
    assert last == 6
    assert wait_until(lambda: proxy.report().get()[0] == [6])
    time.sleep(0.4)
    stalls, _stale = proxy.report().get()
    assert stalls == [6]  # only the current generation counted


def test_actor_ignores_a_tick_already_in_its_inbox(actors: None) -> None:
    s = Scheduler()
    s.start()
    try:
        ref = StallWatcher.start(s)
        proxy = ref.proxy()
        gen = proxy.arm(10).get()
        # The race: the actor is busy with a call that cancels the timer while
        # the scheduler tells the tick, so the tick waits in the inbox behind it.
        disarmed = proxy.disarm()
        ref.tell(Tick("stall", gen))
        disarmed.get()
        stalls, stale = proxy.report().get()
        assert stalls == []
        assert stale == 1
        assert s.pending == 0
    finally:
        s.stop()


def test_ticks_reach_a_real_actor_in_order(sched: Scheduler, actors: None) -> None:
    ref = Collector.start()
    for i in reversed(range(5)):
        sched.call_later(0.05 + 0.05 * i, ref, Tick("t", i))
    assert wait_until(lambda: len(received(ref)) == 5)
    assert [t.generation for t in received(ref)] == [0, 1, 2, 3, 4]


# -- Tick and Generation --------------------------------------------------------------


def test_tick() -> None:
    t = Tick("stall", 3)
    assert t.payload is None
    assert t == Tick("stall", 3)
    assert Tick("cleanup", 1, {"sessionId": "s"}).payload == {"sessionId": "s"}
    with pytest.raises(AttributeError):
        t.generation = 4  # type: ignore[misc]
    assert hash(t) == hash(Tick("stall", 3))


def test_generation() -> None:
    g = Generation()
    assert g.current == 0
    assert not g.is_current(1)
    first = g.next()
    assert first == 1 and g.current == 1 and g.is_current(1)
    second = g.next()
    assert second == 2
    assert not g.is_current(first)
    assert g.is_current(second)

"""The daemon's single timer thread: deadlines that turn into actor messages.

pykka has no timers, so one :class:`Scheduler` thread owns every deadline of the
daemon (stall checks, cleanup grace periods, heartbeats, retries). It keeps a
heap of ``time.monotonic()`` deadlines and, when one passes, does exactly one
thing: ``target.tell(message)``. No thread per timer, and no user code runs on
the scheduler thread apart from ``tell`` (and, for repeating timers, the cheap
``message_factory`` that builds each tick's message).

* :meth:`Scheduler.call_later` / :meth:`Scheduler.call_every` may be called from
  any thread; adding a deadline earlier than the current earliest wakes the
  thread at once.
* :meth:`TimerHandle.cancel` is O(1): the entry is only marked and is skipped
  when it reaches the top of the heap (lazy deletion; the heap is compacted
  when cancelled entries outnumber live ones).
* A target whose ``tell`` raises :class:`pykka.ActorDeadError` is ignored; a
  repeating timer aimed at a dead actor is cancelled, since it can never be
  delivered again. Any other exception from ``tell`` is logged and the thread
  carries on.

The generation-token pattern
----------------------------
Cancelling a timer cannot take back a message that was already told: the tick
may be sitting in the actor's inbox when the actor cancels the timer. Actors
therefore tag timer messages with a generation and drop stale ones::

    class SessionActor(pykka.ThreadingActor):
        def __init__(self, scheduler: Scheduler) -> None:
            super().__init__()
            self._scheduler = scheduler
            self._stall_gen = Generation()
            self._stall_timer: TimerHandle | None = None

        def _arm_stall_timer(self, delay_s: float) -> None:
            if self._stall_timer is not None:
                self._stall_timer.cancel()
            tick = Tick("stall", self._stall_gen.next())
            self._stall_timer = self._scheduler.call_later(delay_s, self.actor_ref, tick)

        def on_receive(self, message: object) -> object:
            if isinstance(message, Tick) and message.kind == "stall":
                if not self._stall_gen.is_current(message.generation):
                    return None  # a tick of a timer that was re-armed or cancelled
                ...

Bumping the generation (``next()``) whenever a timer is re-armed or cancelled
makes every earlier tick stale, whatever the races.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pykka import ActorDeadError

__all__ = [
    "Generation",
    "Scheduler",
    "Teller",
    "Tick",
    "TimerHandle",
    "next_fixed_rate_deadline",
]

logger = logging.getLogger(__name__)

# Compact the heap when it holds more than this many entries and most are cancelled.
_COMPACT_MIN = 64


class Teller(Protocol):
    """Anything a timer can deliver to: a pykka ``ActorRef`` or a test double."""

    def tell(self, message: Any, /) -> None: ...


@dataclass(frozen=True)
class Tick:
    """The conventional timer message: what fired, and for which generation."""

    kind: str
    generation: int
    payload: object = None


class Generation:
    """A per-actor counter that tells current timer messages from stale ones.

    Used from one actor's thread only (it is not locked).
    """

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def next(self) -> int:
        """Start a new generation (invalidating all earlier ones) and return it."""
        self._value += 1
        return self._value

    @property
    def current(self) -> int:
        """The newest generation handed out (0 before the first ``next()``)."""
        return self._value

    def is_current(self, generation: int) -> bool:
        """Whether ``generation`` is the newest one, i.e. the message is not stale."""
        return generation == self._value


def next_fixed_rate_deadline(previous: float, interval: float, now: float) -> float:
    """The next deadline of a fixed-rate timer whose deadline ``previous`` just fired.

    Normally ``previous + interval``; when the scheduler ran late and that is
    already past, missed ticks are skipped (not burst) and the result is the
    first point of the ``previous + k * interval`` grid that lies after ``now``.
    """
    nxt = previous + interval
    if nxt > now:
        return nxt
    missed = math.floor((now - previous) / interval)
    nxt = previous + (missed + 1) * interval
    while nxt <= now:  # guard against floating point rounding
        nxt += interval
    return nxt


class TimerHandle:
    """A scheduled timer. ``cancel()`` it to stop it from firing (again)."""

    __slots__ = (
        "_active",
        "_cancelled",
        "_deadline",
        "_factory",
        "_interval",
        "_message",
        "_scheduler",
        "_target",
    )

    def __init__(
        self,
        scheduler: Scheduler,
        deadline: float,
        target: Teller,
        message: object = None,
        factory: Callable[[], object] | None = None,
        interval: float | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._deadline = deadline
        self._target = target
        self._message = message
        self._factory = factory
        self._interval = interval
        self._active = True  # in the heap, will fire (again) unless cancelled
        self._cancelled = False

    def cancel(self) -> None:
        """Stop the timer; O(1) and idempotent, safe from any thread.

        A message already told cannot be recalled; see the generation pattern
        in the module documentation.
        """
        self._scheduler._cancel(self)

    @property
    def cancelled(self) -> bool:
        """Whether ``cancel()`` was called (or the scheduler stopped and dropped it)."""
        return self._cancelled

    @property
    def active(self) -> bool:
        """Whether the timer may still fire: not cancelled and not a fired one-shot."""
        return self._active

    @property
    def repeating(self) -> bool:
        """Whether this is a ``call_every`` timer."""
        return self._interval is not None

    @property
    def deadline(self) -> float:
        """The (next) ``time.monotonic()`` deadline of the timer."""
        return self._deadline

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else ("active" if self._active else "fired")
        kind = f"every {self._interval}s" if self._interval is not None else "once"
        return f"<TimerHandle {kind} at {self._deadline:.3f} {state}>"


class Scheduler:
    """One thread that delivers timer messages to actors (see the module doc)."""

    def __init__(self, name: str = "corral-scheduler") -> None:
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._live = 0  # entries in the heap that are still active
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Start the timer thread. Idempotent; a stopped scheduler cannot restart."""
        with self._cond:
            if self._stopped:
                raise RuntimeError(f"scheduler {self._name!r} was stopped")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and drop every pending timer. Idempotent.

        Timers scheduled after ``stop()`` are returned already cancelled.
        """
        with self._cond:
            self._stopped = True
            for _, _, handle in self._heap:
                handle._active = False
                handle._cancelled = True
            self._heap.clear()
            self._live = 0
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        """Whether the timer thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def pending(self) -> int:
        """How many timers are scheduled and not cancelled."""
        with self._cond:
            return self._live

    # -- scheduling --------------------------------------------------------

    def call_later(self, delay_s: float, target: Teller, message: object) -> TimerHandle:
        """Tell ``message`` to ``target`` once, ``delay_s`` seconds from now.

        A negative delay means "as soon as possible". Timers with equal
        deadlines fire in the order they were scheduled.
        """
        if math.isnan(delay_s):
            raise ValueError("delay_s is NaN")
        deadline = time.monotonic() + max(0.0, delay_s)
        handle = TimerHandle(self, deadline, target, message=message)
        self._push(handle)
        return handle

    def call_every(
        self, interval_s: float, target: Teller, message_factory: Callable[[], object]
    ) -> TimerHandle:
        """Tell ``message_factory()`` to ``target`` every ``interval_s`` seconds.

        Fixed rate: the first tick is one interval from now, each next deadline
        is the previous deadline plus the interval, and ticks missed because the
        thread ran late are skipped rather than burst. ``message_factory`` runs
        on the scheduler thread and must be cheap and non-blocking.
        """
        if not interval_s > 0 or math.isinf(interval_s):
            raise ValueError(f"interval_s must be a positive finite number, got {interval_s!r}")
        deadline = time.monotonic() + interval_s
        handle = TimerHandle(self, deadline, target, factory=message_factory, interval=interval_s)
        self._push(handle)
        return handle

    # -- internals ---------------------------------------------------------

    def _push(self, handle: TimerHandle) -> None:
        with self._cond:
            if self._stopped:
                handle._active = False
                handle._cancelled = True
                return
            self._push_locked(handle)

    def _push_locked(self, handle: TimerHandle) -> None:
        entry = (handle._deadline, next(self._seq), handle)
        heapq.heappush(self._heap, entry)
        self._live += 1
        if self._heap[0] is entry:  # new earliest deadline: wake the thread early
            self._cond.notify()

    def _cancel(self, handle: TimerHandle) -> None:
        with self._cond:
            handle._cancelled = True
            if not handle._active:
                return
            handle._active = False
            self._live -= 1
            if len(self._heap) > _COMPACT_MIN and self._live * 2 < len(self._heap):
                self._heap = [e for e in self._heap if e[2]._active]
                heapq.heapify(self._heap)
            # No notify: the thread waking for a dead entry just skips it.

    def _next_due(self) -> list[TimerHandle] | None:
        """Block until timers are due; pop them. ``None`` once stopped."""
        with self._cond:
            while not self._stopped:
                heap = self._heap
                while heap and not heap[0][2]._active:
                    heapq.heappop(heap)  # lazily deleted
                if not heap:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                wait = heap[0][0] - now
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                due: list[TimerHandle] = []
                while heap and heap[0][0] <= now:
                    deadline, _, handle = heapq.heappop(heap)
                    if not handle._active:
                        continue
                    due.append(handle)
                    if handle._interval is None:
                        handle._active = False
                        self._live -= 1
                    else:
                        handle._deadline = next_fixed_rate_deadline(deadline, handle._interval, now)
                        self._live -= 1  # re-counted by the push
                        self._push_locked(handle)
                return due
            return None

    def _run(self) -> None:
        while True:
            due = self._next_due()
            if due is None:
                return
            for handle in due:
                if self._stopped:
                    return  # stop() drops what is pending, even if already popped
                self._fire(handle)

    def _fire(self, handle: TimerHandle) -> None:
        if handle._cancelled:
            return  # cancelled between popping and delivery
        try:
            message = handle._factory() if handle._factory is not None else handle._message
        except Exception:
            logger.exception("timer message factory failed; tick skipped (%r)", handle)
            return
        try:
            handle._target.tell(message)
        except ActorDeadError:
            if handle._interval is not None:
                handle.cancel()  # a dead actor never comes back
        except Exception:
            logger.exception("timer target's tell failed (%r)", handle)

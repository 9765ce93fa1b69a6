"""systemd notify: READY, STATUS, WATCHDOG and STOPPING datagrams to ``$NOTIFY_SOCKET``.

A no-op when corral does not run under systemd (``Type=notify`` units only).

The watchdog pings only while the daemon makes progress, not merely while a
thread is alive: :class:`ProbedOutbox` (the router outbox the daemon uses)
notes two heartbeats as a side effect of the work itself. The router thread
drains the outbox on every turn of its loop (at least four times a second, idle
or not), and the store publishes ``daemon.heartbeat`` each time it handles the
scheduler's once-a-second ``Heartbeat``, so a wedged router, store or scheduler
stops its probe. :class:`Watchdog` sends ``WATCHDOG=1`` every half
``WATCHDOG_USEC`` only while every probe moved within ``stale_after`` seconds,
and ``STATUS=`` whenever the live or running session counts change (read from the
same heartbeats and the ``agent.status`` events).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from corral.supervisor.outbox import PublishItem, ReplyItem, RouterOutbox

log = logging.getLogger("corral.notify")

STALE_MIN_S = 3.0
"""A probe is never considered stuck sooner (the store beats once a second)."""
STALE_MAX_S = 10.0
"""... nor later than this, whatever ``WATCHDOG_USEC`` is."""


def sd_notify(state: str, env: Mapping[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1") to systemd; False when there is no socket."""
    address = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError:
        return False


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings (half ``WATCHDOG_USEC``), None when the watchdog is off
    or meant for another process (``WATCHDOG_PID``)."""
    env = os.environ if env is None else env
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2_000_000


class Progress:
    """A timestamp that one thread moves each time it gets work done."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self.at = clock()
        self.beats = 0

    def beat(self) -> None:
        self.at = self._clock()
        self.beats += 1

    def age(self, now: float) -> float:
        return now - self.at


class ProbedOutbox(RouterOutbox):
    """The router outbox, noting progress (router, store) and the session counts."""

    def __init__(self) -> None:
        super().__init__()
        self.router = Progress("router")
        self.store = Progress("store")
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._live = 0

    def drain(self, limit: int = 1000) -> list[ReplyItem | PublishItem]:
        self.router.beat()
        return super().drain(limit)

    def publish(self, event: str, data: dict[str, Any], project_id: str | None = None) -> None:
        if event == "daemon.heartbeat":
            self.store.beat()
            live = data.get("live")
            if isinstance(live, int):
                self._live = live
        elif event == "agent.status":
            session_id, status = data.get("sessionId"), data.get("status")
            if isinstance(session_id, str):
                with self._lock:
                    if status == "running":
                        self._running.add(session_id)
                    else:
                        self._running.discard(session_id)
        super().publish(event, data, project_id)

    def counts(self) -> tuple[int, int]:
        """(live sessions, running sessions)."""
        with self._lock:
            running = len(self._running)
        return max(self._live, running), running


def status_line(live: int, running: int) -> str:
    return f"STATUS={live} live session{'s' if live != 1 else ''}, {running} running"


class Watchdog:
    """A thread sending ``STATUS=`` on change and ``WATCHDOG=1`` while ``probes`` move.

    :meth:`step` does one round and returns what it sent (the thread calls it every
    ``tick`` seconds); it is public so that tests can drive it with their clock.
    """

    def __init__(
        self,
        probes: Sequence[Progress],
        counts: Callable[[], tuple[int, int]],
        env: Mapping[str, str] | None = None,
        *,
        stale_after: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.env = dict(os.environ if env is None else env)
        self.interval = watchdog_interval(self.env)
        if stale_after is None:
            base = self.interval if self.interval is not None else STALE_MAX_S
            stale_after = min(max(base, STALE_MIN_S), STALE_MAX_S)
        self.stale_after = stale_after
        self.tick = min(0.5, self.interval / 4) if self.interval else 0.5
        self._probes = list(probes)
        self._counts = counts
        self._clock = clock
        self._last_counts = (0, 0)
        self._next_ping = clock()
        self._wedged: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        """Running under systemd (a notify socket is set)."""
        return bool(self.env.get("NOTIFY_SOCKET"))

    def stuck(self, now: float) -> list[str]:
        """Names of the probes that did not move within ``stale_after``."""
        return [p.name for p in self._probes if p.age(now) > self.stale_after]

    def step(self, now: float | None = None) -> list[str]:
        now = self._clock() if now is None else now
        sent: list[str] = []
        counts = self._counts()
        if counts != self._last_counts:
            self._last_counts = counts
            sent.append(status_line(*counts))
        if self.interval is not None and now >= self._next_ping:
            stuck = self.stuck(now)
            if stuck:
                if self._wedged is None:
                    log.error(
                        "watchdog: no progress from the %s for %.1fs: not pinging systemd",
                        " and ".join(stuck),
                        self.stale_after,
                    )
                self._wedged = ",".join(stuck)
            else:
                if self._wedged is not None:
                    log.warning("watchdog: progress again, pinging systemd")
                    self._wedged = None
                self._next_ping = now + self.interval
                sent.append("WATCHDOG=1")
        for state in sent:
            sd_notify(state, self.env)
        return sent

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.step()
            except Exception:
                log.exception("watchdog step failed")

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="corral-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

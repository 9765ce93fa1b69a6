"""`corral watch`: a live dashboard of every project, driven by the daemon's events.

:class:`Watcher` does the I/O, one :meth:`Watcher.step` at a time: it subscribes
to everything, applies each event to the :class:`WatchState`, refreshes with
``health.get`` every ``--interval`` seconds (and at once after missed events or
a daemon restart), and follows PROJECT's transcript with a session follower.
When the daemon goes away (no heartbeat for a few seconds and no answer to a
ping) the screen says "daemon down, retrying" and it reconnects when the daemon
is back. :func:`~corral.supervisor.cli.dashboard.render` draws the state.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from corral.protocol.transport import DaemonUnreachable
from corral.supervisor.cli.common import Ctx, client_command

if TYPE_CHECKING:
    from corral.protocol.client import Subscriber
    from corral.protocol.follow import SessionFollower
    from corral.supervisor.cli.dashboard import WatchState

PANEL = "Live"
SILENCE = 3.0
"""Seconds without any event (heartbeats come every second) before a ping checks the daemon."""
RETRY = 1.0
"""Seconds between reconnection attempts while the daemon is down."""

app = typer.Typer()


class Watcher:
    """The dashboard's I/O loop, one step at a time (so tests can drive it)."""

    def __init__(
        self, cx: Ctx, project: str | None = None, *, interval: float = 2.0, lines: int = 12
    ) -> None:
        from corral.supervisor.cli.dashboard import WatchState

        self.cx = cx
        self.interval = interval
        self.state: WatchState = WatchState(project, lines=lines)
        self.sub: Subscriber | None = None
        self.follower: SessionFollower | None = None
        self._last_event = 0.0
        self._next_refresh = 0.0
        self._next_retry = 0.0
        self._seen_missed = 0
        self._seen_restarts = 0

    def _ping_timeout(self) -> float:
        return max(0.05, min(self.cx.timeout, 2.0))

    def connect(self) -> None:
        """Reach the daemon and load everything; raises DaemonUnreachable."""
        client = self.cx.client
        client.ping(self._ping_timeout())
        if self.sub is None:
            self.sub = self.cx.subscriber()
        info, health, notes = client.pipeline(
            [("daemon.info", None), ("health.get", None), ("notifications.list", {"limit": 20})],
            timeout=self.cx.timeout,
        )
        state = self.state
        state.daemon, state.boot = info, info.get("boot")
        state.endpoint = str((info.get("endpoints") or {}).get("rpc", ""))
        state.set_health(health)
        state.set_notifications(notes.get("notifications", []))
        state.connected = True
        if state.project and self.follower is None:
            from corral.protocol.follow import SessionFollower

            self.follower = SessionFollower(
                client, self.sub, state.project, backlog=state.transcript.maxlen
            )
        self._feed(None)
        now = time.monotonic()
        self._last_event = now
        self._next_refresh = now + self.interval

    def _feed(self, event: tuple[str, dict[str, Any]] | None) -> None:
        if self.follower is None:
            return
        for update in self.follower.feed(event):
            self.state.apply_update(update.kind, update.session_id, update.message, update.status)

    def refresh(self, notifications: bool = False) -> None:
        """Reload every project's health (and the notifications)."""
        calls: list[tuple[str, dict[str, Any] | None]] = [("health.get", None)]
        if notifications:
            calls.append(("notifications.list", {"limit": 20}))
        got = self.cx.client.pipeline(calls, timeout=self.cx.timeout)
        self.state.set_health(got[0])
        if notifications:
            self.state.set_notifications(got[1].get("notifications", []))
        self._next_refresh = time.monotonic() + self.interval

    def _down(self) -> None:
        self.state.connected = False
        self._next_retry = time.monotonic() + RETRY

    def step(self, wait: float = 0.25) -> bool:
        """Wait up to ``wait`` seconds for an event and apply what came.

        Returns whether the state may have changed (so the screen is redrawn).
        """
        now = time.monotonic()
        was_connected = self.state.connected
        try:
            if not self.state.connected:
                if now < self._next_retry:
                    time.sleep(min(wait, self._next_retry - now))
                    return False
                self.connect()
                return True
            assert self.sub is not None
            got = self.sub.recv(wait)
            now = time.monotonic()
            changed = got is not None
            if got is not None:
                self._last_event = now
                self.state.apply_event(*got)
            self._feed(got)
            tracker = self.sub.tracker
            lost = tracker.missed != self._seen_missed or tracker.restarts != self._seen_restarts
            if lost:
                self._seen_missed, self._seen_restarts = tracker.missed, tracker.restarts
                self.state.missed = tracker.missed
                if tracker.restarts:
                    self.state.daemon = self.cx.client.info()
                self.refresh(notifications=True)
                changed = True
            elif now >= self._next_refresh:
                self.refresh()
                changed = True
            elif now - self._last_event > SILENCE:
                self.cx.client.ping(self._ping_timeout())
                self._last_event = now
            return changed
        except DaemonUnreachable:
            self._down()
            return was_connected

    def close(self) -> None:
        """Close the follower (the sockets belong to the command's context)."""
        if self.follower is not None:
            self.follower.close()


@client_command(app, panel=PANEL)
def watch(
    cx: Ctx,
    project: Annotated[
        str | None, typer.Argument(metavar="PROJECT", help="Also stream this project's transcript.")
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", min=0.2, help="Seconds between health refreshes.")
    ] = 2.0,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=1, help="Transcript lines shown.")
    ] = 12,
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit.")] = False,
) -> int | None:
    """A live dashboard: one row per project, notifications, and PROJECT's transcript.

    Driven by events, refreshed every --interval; survives a daemon restart.
    Without a terminal (or with --json) it prints a snapshot every --interval.
    """
    from corral.supervisor.cli.dashboard import render
    from corral.supervisor.cli.render import now_ms

    watcher = Watcher(cx, project, interval=interval, lines=lines)
    try:
        watcher.connect()  # the first time, an unreachable daemon is an error (exit 3)
        state = watcher.state
        if once or cx.json or cx.out.plain:
            while True:
                state.now = now_ms()
                if cx.json:
                    cx.out.json_line(state.to_json())
                else:
                    cx.out.print(render(state))
                    cx.out.flush()
                if once:
                    return None
                deadline = time.monotonic() + interval
                while time.monotonic() < deadline:
                    watcher.step(0.25)
        from rich.live import Live

        with Live(console=cx.out.console, screen=True, auto_refresh=False) as live:
            drawn = 0.0
            changed = True
            while True:
                if changed or time.monotonic() - drawn >= 1.0:  # ages tick every second
                    state.now = now_ms()
                    live.update(render(state), refresh=True)
                    drawn = time.monotonic()
                changed = watcher.step(0.25)
    finally:
        watcher.close()

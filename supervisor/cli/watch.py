"""`corral watch`: a live dashboard of every project, driven by the daemon's events.

:class:`Watcher` does the I/O, one :meth:`Watcher.step` at a time: it subscribes
to everything, applies each event to the :class:`WatchState`, refreshes with
``health.get`` every ``--interval`` seconds (and at once after missed events or
a daemon restart), and follows PROJECT's transcript with a session follower.
Pending approvals come from ``approvals.list`` (at connect and with each refresh)
and the ``approval.requested`` / ``approval.resolved`` events; on a terminal a
:class:`KeyReader` thread reads keys in cbreak mode without blocking the screen's
refresh, and :meth:`Watcher.answer` sends what a key decided (``agent.approve``).
When the daemon goes away (no heartbeat for a few seconds and no answer to a
ping) the screen says "daemon down, retrying" and it reconnects when the daemon
is back. :func:`~corral.supervisor.cli.dashboard.render` draws the state.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from corral.protocol.errors import RpcError
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
KEY_POLL = 0.1
"""Seconds the key reader waits for input before it checks whether to stop."""
ARROWS = {"A": "up", "B": "down", "C": "right", "D": "left"}

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
        info, health, notes, pending = client.pipeline(
            [
                ("daemon.info", None),
                ("health.get", None),
                ("notifications.list", {"limit": 20}),
                ("approvals.list", None),
            ],
            timeout=self.cx.timeout,
        )
        state = self.state
        state.set_approvals(pending.get("approvals", []))
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
        """Reload every project's health and the pending approvals (and the notifications)."""
        calls: list[tuple[str, dict[str, Any] | None]] = [
            ("health.get", None),
            ("approvals.list", None),
        ]
        if notifications:
            calls.append(("notifications.list", {"limit": 20}))
        got = self.cx.client.pipeline(calls, timeout=self.cx.timeout)
        self.state.set_health(got[0])
        self.state.set_approvals(got[1].get("approvals", []))
        if notifications:
            self.state.set_notifications(got[2].get("notifications", []))
        self._next_refresh = time.monotonic() + self.interval

    def answer(self, approval: Mapping[str, Any], decision: str) -> bool:
        """Send ``decision`` (allow or deny) for ``approval``; the outcome is noted on
        screen. Returns whether the daemon took it."""
        from corral.supervisor.cli.render import decision_line, now_ms, short_id

        approval_id = str(approval.get("approvalId"))
        params = {
            "projectId": approval.get("projectId"),
            "approvalId": approval_id,
            "decision": decision,
        }
        try:
            self.cx.client.call("agent.approve", params)
        except RpcError as exc:
            if exc.data.get("reason") in ("not_found", "no_session"):
                self.state.remove_approval(approval_id)  # answered elsewhere, or gone
            self.state.note(f"approval {short_id(approval_id)}: {exc.message}", now_ms(), "red")
            return False
        except DaemonUnreachable:
            self.state.note("the daemon did not answer: nothing was decided", now_ms(), "red")
            self._down()
            return False
        self.state.remove_approval(approval_id)
        self.state.note(decision_line(approval, decision), now_ms(), "green")
        return True

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


def parse_keys(data: bytes) -> list[str]:
    """The keys in what a terminal sent: printable characters as themselves, the
    arrow keys as ``up``/``down``/``left``/``right`` (CSI and SS3 forms); other
    escape sequences and control bytes are dropped."""
    keys: list[str] = []
    i, n = 0, len(data)
    while i < n:
        byte = data[i]
        if byte == 0x1B:  # ESC [ params final, or ESC O final
            if i + 1 < n and data[i + 1] in b"[O":
                j = i + 2
                while j < n and not 0x40 <= data[j] <= 0x7E:
                    j += 1
                if j < n and chr(data[j]) in ARROWS:
                    keys.append(ARROWS[chr(data[j])])
                i = j + 1
            else:
                i += 1
            continue
        if 0x20 <= byte < 0x7F:
            keys.append(chr(byte))
        i += 1
    return keys


class KeyReader:
    """Keys from a terminal: cbreak mode (no echo, no line buffering, Ctrl-C still
    interrupts) and a small thread that hands each key to :meth:`keys`, so reading
    never blocks the screen. :meth:`open` gives None without a terminal."""

    def __init__(self, stream: IO[Any]) -> None:
        self.fd = stream.fileno()
        self._keys: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="corral-watch-keys", daemon=True)
        self._saved: Any = None

    @classmethod
    def open(cls, stream: IO[Any] | None = None) -> KeyReader | None:
        """A reader on ``stream`` (stdin) when it is a terminal, else None."""
        stream = sys.stdin if stream is None else stream
        try:
            return cls(stream) if stream.isatty() else None
        except (AttributeError, ValueError, OSError):
            return None

    def __enter__(self) -> KeyReader:
        import termios
        import tty

        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import termios

        self._stop.set()
        self._thread.join(timeout=2 * KEY_POLL + 1.0)
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.fd], [], [], KEY_POLL)
                data = os.read(self.fd, 64) if ready else b""
            except OSError:
                return
            if ready and not data:
                return  # end of input
            for key in parse_keys(data):
                self._keys.put(key)

    def keys(self) -> list[str]:
        """The keys pressed since the last call."""
        out: list[str] = []
        while True:
            try:
                out.append(self._keys.get_nowait())
            except queue.Empty:
                return out


def handle_keys(watcher: Watcher, keys: list[str]) -> bool | None:
    """Do what each key asks; None when one asks to quit, else whether the state changed."""
    from corral.supervisor.cli.dashboard import key_action

    changed = False
    for key in keys:
        action = key_action(watcher.state, key)
        if action is None:
            continue
        if action.kind == "quit":
            return None
        if action.kind == "select":
            watcher.state.select(action.index)
        elif action.approval is not None:
            watcher.answer(action.approval, action.kind)
        changed = True
    return changed


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
    """A live dashboard: approvals waiting, one row per project, notifications, and
    PROJECT's transcript.

    Keys: a allow / d deny the selected approval, up/down or j/k select, q quits.
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

        reader = KeyReader.open()
        state.keys = reader is not None
        with (
            reader if reader is not None else contextlib.nullcontext(),
            Live(console=cx.out.console, screen=True, auto_refresh=False) as live,
        ):
            drawn = 0.0
            changed: bool | None = True
            while True:
                if changed or time.monotonic() - drawn >= 1.0:  # ages tick every second
                    state.now = now_ms()
                    live.update(render(state), refresh=True)
                    drawn = time.monotonic()
                changed = watcher.step(KEY_POLL if reader is not None else 0.25)
                if reader is not None:
                    pressed = handle_keys(watcher, reader.keys())
                    if pressed is None:
                        return None
                    changed = changed or pressed
    finally:
        watcher.close()

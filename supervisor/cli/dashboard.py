"""What `corral watch` shows: :class:`WatchState` and :func:`render`, a pure function of it.

The state is fed by events, ``health.get`` and ``approvals.list`` refreshes and a
session follower (``corral.supervisor.cli.watch`` does the I/O); :func:`render`
turns it into one rich renderable: a header (daemon, connection, aggregates), the
pending approvals with the keys that answer the selected one, one row per project
(status, activity, active tool, idle time, cost, burn rate, context, attention),
the newest notifications, and the streaming transcript of one project.
:func:`key_action` says what a key press asks for. Nothing here reads a clock, a
key or a socket: ``state.now`` is the time shown.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from corral.supervisor.cli.render import (
    VARIANT_STYLE,
    age,
    duration,
    message_text,
    money,
    one_line,
    short_id,
    simple_table,
    status_style,
)

__all__ = ["KeyAction", "WatchState", "health_table", "key_action", "render"]

FLASH_MS = 10_000
"""How long the outcome of a key press stays on screen (ms)."""
KEYS_UP = ("up", "k")
KEYS_DOWN = ("down", "j")
KEYS_ANSWER: dict[str, Literal["allow", "deny"]] = {"a": "allow", "d": "deny"}

ACTIVITY_STYLE = {
    "running": "bold yellow",
    "idle": "cyan",
    "waiting": "bold magenta",
    "stalled": "bold red",
    "inactive": "dim",
}


def attention_style(score: int) -> str:
    """Red from 80, yellow from 40."""
    return "bold red" if score >= 80 else "yellow" if score >= 40 else "dim"


def _activity(h: Mapping[str, Any]) -> str:
    activity = h.get("activity")
    if isinstance(activity, str):
        return activity
    if h.get("stalled"):
        return "stalled"
    return "running" if h.get("status") == "running" else "inactive"


def _idle_ms(h: Mapping[str, Any], now: int) -> float | None:
    if h.get("status") != "running":
        return None
    idle = h.get("idleMs")
    if isinstance(idle, int | float):
        return float(idle)
    last = h.get("lastActivity")
    if isinstance(last, int | float) and last > 0:
        return float(now - last)
    return None


def _attention(h: Mapping[str, Any]) -> tuple[int, str]:
    att = h.get("attention")
    if isinstance(att, Mapping):
        return int(att.get("score") or 0), str(att.get("reason") or "")
    return 0, ""


def sort_key(h: Mapping[str, Any]) -> tuple[int, str]:
    """Most urgent first, then by project."""
    return (-_attention(h)[0], str(h.get("projectId", "")))


def health_table(projects: Iterable[Mapping[str, Any]], now: int, plain: bool = False) -> Table:
    """One row per project's Health."""
    table = simple_table(
        ("PROJECT", "STATUS", "ACTIVITY", "TOOL", "IDLE", "COST", "BURN", "CTX", "ATTENTION"),
        plain,
    )
    for h in sorted(projects, key=sort_key):
        status = str(h.get("status") or "-")
        activity = _activity(h)
        tool = str(h.get("activeTool") or "")
        since = h.get("toolSince")
        if tool and isinstance(since, int | float):
            tool = f"{tool} {duration(now - since)}"
        idle = _idle_ms(h, now)
        burn = h.get("burnRateUsdPerHour")
        pressure = h.get("contextPressure")
        score, reason = _attention(h)
        table.add_row(
            str(h.get("projectId", "")),
            Text(status, style=status_style(status)),
            Text(activity, style=ACTIVITY_STYLE.get(activity, "")),
            Text(tool or "-", style="yellow" if tool else "dim"),
            duration(idle) if idle is not None else "-",
            money(h.get("costUsd")),
            f"${float(burn):.2f}/h" if isinstance(burn, int | float) else "-",
            f"{float(pressure) * 100:.0f}%" if isinstance(pressure, int | float) else "-",
            Text(f"{score:>3} {reason}".rstrip() if score else "-", style=attention_style(score)),
        )
    return table


class WatchState:
    """Everything the dashboard shows; updated by the watch loop, read by :func:`render`."""

    def __init__(self, project: str | None = None, *, lines: int = 12, notes: int = 5) -> None:
        self.project = project
        self.projects: dict[str, dict[str, Any]] = {}
        self.aggregates: dict[str, Any] = {}
        self.notifications: collections.deque[dict[str, Any]] = collections.deque(maxlen=notes)
        self.transcript: collections.deque[dict[str, Any]] = collections.deque(maxlen=lines)
        self.session_id: str | None = None
        self.session_status: str | None = None
        self.connected = False
        self.endpoint = ""
        self.daemon: dict[str, Any] = {}
        self.boot: str | None = None
        self.now = 0
        """The time shown (ms); the loop sets it before each render."""
        self.missed = 0
        """Events the subscriber missed (eseq jumps); each one triggered a resync."""
        self.approvals: dict[str, dict[str, Any]] = {}
        """Pending approvals by id (of every project)."""
        self.selected_id: str | None = None
        self._cursor = 0
        """Where the selection was when the selected approval went away."""
        self.keys = False
        """Keys answer approvals (a terminal): the approvals panel shows them."""
        self.flash: tuple[str, str, int] | None = None
        """The outcome of the last key press: (text, style, when in ms)."""

    # -- approvals -----------------------------------------------------------------

    def pending(self) -> list[dict[str, Any]]:
        """The pending approvals, oldest first (the order they are shown in)."""
        return sorted(
            self.approvals.values(),
            key=lambda a: (a.get("createdAt") or 0, str(a.get("approvalId", ""))),
        )

    def selected_index(self) -> int:
        """The index of the selected approval in :meth:`pending` (0 when none)."""
        items = self.pending()
        for i, a in enumerate(items):
            if a.get("approvalId") == self.selected_id:
                return i
        return max(0, min(self._cursor, len(items) - 1))

    def selected(self) -> dict[str, Any] | None:
        """The approval the keys answer (None when nothing is pending)."""
        items = self.pending()
        return items[self.selected_index()] if items else None

    def select(self, index: int) -> None:
        """Select the approval at ``index`` of :meth:`pending` (clamped)."""
        items = self.pending()
        if not items:
            return
        self._cursor = max(0, min(index, len(items) - 1))
        self.selected_id = str(items[self._cursor].get("approvalId"))

    def _forget_selection(self, gone: Iterable[str]) -> None:
        if self.selected_id is not None and self.selected_id in set(gone):
            self._cursor = self.selected_index()  # the next one takes its place
            self.selected_id = None

    def set_approvals(self, items: Iterable[Mapping[str, Any]]) -> None:
        """An ``approvals.list`` answer replaces the pending approvals."""
        fresh = {str(a["approvalId"]): dict(a) for a in items if "approvalId" in a}
        self._forget_selection(set(self.approvals) - set(fresh))
        self.approvals = fresh

    def remove_approval(self, approval_id: str) -> None:
        """An approval was answered (here or elsewhere)."""
        self._forget_selection((approval_id,))
        self.approvals.pop(approval_id, None)

    def note(self, text: str, now: int, style: str = "") -> None:
        """Show ``text`` (what a key press did) for :data:`FLASH_MS`."""
        self.flash = (text, style, now)

    # -- updates -----------------------------------------------------------------

    def set_health(self, result: Mapping[str, Any]) -> None:
        """A ``health.get`` answer (of every project) replaces the rows."""
        self.projects = {
            str(h["projectId"]): dict(h) for h in result.get("projects", []) if "projectId" in h
        }
        self.aggregates = dict(result.get("aggregates") or {})

    def set_notifications(self, items: Iterable[Mapping[str, Any]]) -> None:
        """A ``notifications.list`` answer (newest first)."""
        self.notifications.clear()
        for n in items:
            if len(self.notifications) == self.notifications.maxlen:
                break
            self.notifications.append(dict(n))

    def apply_event(self, topic: str, frame: Mapping[str, Any]) -> None:
        """One event from the daemon."""
        boot = frame.get("boot")
        if isinstance(boot, str):
            self.boot = boot
        event, data = frame.get("event"), frame.get("data")
        if not isinstance(data, Mapping):
            return
        project = frame.get("projectId")
        if event == "health" and isinstance(data.get("projectId"), str):
            self.projects[str(data["projectId"])] = dict(data)
        elif event == "notification":
            self.notifications.appendleft(dict(data))
        elif event == "agent.status" and isinstance(project, str):
            row = self.projects.setdefault(project, {"projectId": project})
            row["status"] = data.get("status")
            row["sessionId"] = data.get("sessionId")
        elif event == "agent.cost" and isinstance(project, str) and project in self.projects:
            self.projects[project]["costUsd"] = data.get("costUsd")
        elif event == "approval.requested" and isinstance(data.get("approvalId"), str):
            self.approvals[str(data["approvalId"])] = dict(data)
        elif event == "approval.resolved" and isinstance(data.get("approvalId"), str):
            self.remove_approval(str(data["approvalId"]))

    def apply_update(self, kind: str, session_id: str, message: Any, status: Any) -> None:
        """A step of the followed project's session (see ``SessionFollower``)."""
        if kind == "session" and session_id != self.session_id:
            self.session_id = session_id
            self.transcript.clear()
        elif kind == "message" and isinstance(message, dict):
            self.transcript.append(message)
        elif kind == "status":
            self.session_status = status

    def to_json(self) -> dict[str, Any]:
        """The state as JSON (``corral watch --json``)."""
        return {
            "connected": self.connected,
            "boot": self.boot,
            "projects": sorted(self.projects.values(), key=sort_key),
            "aggregates": self.aggregates,
            "approvals": self.pending(),
            "notifications": list(self.notifications),
            "project": self.project,
            "sessionId": self.session_id,
            "transcript": list(self.transcript),
        }


def _header(state: WatchState) -> Text:
    text = Text()
    text.append("corral watch", style="bold cyan")
    version, pid = state.daemon.get("version"), state.daemon.get("pid")
    if version:
        text.append(f"  daemon {version} pid {pid}", style="dim")
    text.append("  ")
    if state.connected:
        text.append("● connected", style="green")
        if state.endpoint:
            text.append(f" {state.endpoint}", style="dim")
    else:
        text.append("● daemon down, retrying", style="bold red")
    agg = state.aggregates
    if agg:
        text.append(
            f"\nrunning {agg.get('running', 0)} · idle {agg.get('idle', 0)} · "
            f"stalled {agg.get('stalled', 0)} · "
            f"burn ${float(agg.get('burnRateUsdPerHour') or 0):.2f}/h"
        )
    if state.missed:
        text.append(f" · resynced after {state.missed} missed events", style="dim")
    return text


@dataclass(frozen=True)
class KeyAction:
    """What a key press asks the watch loop to do."""

    kind: Literal["select", "allow", "deny", "quit"]
    index: int = 0
    """select: the approval to select (an index of ``state.pending()``)."""
    approval: Mapping[str, Any] | None = None
    """allow, deny: the approval to answer."""


def key_action(state: WatchState, key: str) -> KeyAction | None:
    """What ``key`` asks for in ``state`` (pure): ``a`` allow and ``d`` deny the
    selected approval, up/``k`` and down/``j`` move the selection, ``q`` quits;
    None for a key that does nothing here."""
    if key == "q":
        return KeyAction("quit")
    items = state.pending()
    if not items:
        return None
    index = state.selected_index()
    if key in KEYS_UP and index > 0:
        return KeyAction("select", index - 1)
    if key in KEYS_DOWN and index < len(items) - 1:
        return KeyAction("select", index + 1)
    if key in KEYS_ANSWER:
        return KeyAction(KEYS_ANSWER[key], index, items[index])
    return None


def _approvals(state: WatchState) -> RenderableType:
    items = state.pending()
    chosen = state.selected_index() if state.keys else -1
    table = Table(box=None, show_header=False, pad_edge=False, expand=True)
    table.add_column(no_wrap=True, width=1)
    table.add_column(no_wrap=True, style="bold")
    table.add_column(no_wrap=True, style="yellow")
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column(no_wrap=True, justify="right", style="dim")
    table.add_column(no_wrap=True)
    for i, a in enumerate(items):
        project = str(a.get("projectId", ""))
        if i == chosen:
            hint = Text("a allow · d deny", style="bold magenta")
        elif state.keys:
            hint = Text("")
        else:
            hint = Text(f"corral approve {project} {short_id(a.get('approvalId'))}", style="dim")
        table.add_row(
            Text("▶" if i == chosen else " ", style="bold magenta"),
            Text(project),
            Text(str(a.get("toolName", ""))),
            Text(one_line(a.get("summary"))),
            age(a.get("createdAt"), state.now),
            hint,
        )
    title = f"{len(items)} approval{'s' if len(items) > 1 else ''} waiting"
    if state.keys and len(items) > 1:
        title += " · ↑/↓ or j/k select"
    return Panel(
        table, title=title, title_align="left", box=box.ROUNDED, border_style="bold magenta"
    )


def _flash(state: WatchState) -> Text | None:
    if state.flash is None:
        return None
    text, style, when = state.flash
    return Text(text, style=style) if state.now - when < FLASH_MS else None


def _notes(state: WatchState) -> RenderableType:
    if not state.notifications:
        return Text("no notifications", style="dim")
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(no_wrap=True, style="dim")
    table.add_column(no_wrap=True)
    table.add_column()
    for n in state.notifications:
        table.add_row(
            age(n.get("ts"), state.now),
            Text(str(n.get("kind", "")), style=VARIANT_STYLE.get(str(n.get("variant")), "")),
            str(n.get("message", "")),
        )
    return table


def _transcript(state: WatchState) -> RenderableType:
    title = f"{state.project} · session {short_id(state.session_id)}"
    if state.session_status:
        title += f" · {state.session_status}"
    if state.transcript:
        lines: list[RenderableType] = []
        for message in state.transcript:
            text = message_text(message)
            text.no_wrap, text.overflow = True, "ellipsis"
            lines.append(text)
        body: RenderableType = Group(*lines)
    else:
        body = Text("no messages yet", style="dim")
    return Panel(body, title=title, title_align="left", box=box.ROUNDED, border_style="cyan")


def render(state: WatchState) -> RenderableType:
    """The whole dashboard for ``state`` (pure: same state, same screen)."""
    parts: list[RenderableType] = [_header(state), Text("")]
    if state.approvals:
        parts.append(_approvals(state))
    flash = _flash(state)
    if flash is not None:
        parts.append(flash)
    if state.approvals or flash is not None:
        parts.append(Text(""))
    if state.projects:
        parts.append(health_table(state.projects.values(), state.now))
    else:
        parts.append(Text("no projects with a current session", style="dim"))
    parts += [Text(""), Text("notifications", style="bold"), _notes(state)]
    if state.project:
        parts += [Text(""), _transcript(state)]
    return Group(*parts)

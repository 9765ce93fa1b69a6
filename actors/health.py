"""Health: a project's health record, and the throttle on ``health`` events.

:class:`HealthState` is what a session actor learns as output arrives;
:func:`health_record` makes the contract's Health from it (or from a stored
session). :class:`HealthThrottle` keeps ``health`` events to at most one per
project per :data:`INTERVAL_S`, always ending with a trailing event that
carries the last state. All pure: the registry feeds them and publishes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.actors.normalized import Normalized

INTERVAL_S = 1.0
"""At most one ``health`` event per project per this many seconds."""
_EARLY_S = 0.001


@dataclass
class _State:
    last_published: float = float("-inf")
    pending: bool = False


class HealthThrottle:
    """When may a project's next ``health`` event go out?"""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self._interval = interval_s
        self._states: dict[str, _State] = {}

    def request(self, project_id: str, now: float) -> float | None:
        """A change happened. 0.0: publish now; a delay: schedule one trailing
        publication after it; None: one is already scheduled."""
        state = self._states.setdefault(project_id, _State())
        wait = state.last_published + self._interval - now
        if wait <= 0:
            state.pending = False
            state.last_published = now
            return 0.0
        if state.pending:
            return None
        state.pending = True
        return wait

    def due(self, project_id: str, now: float) -> bool:
        """The scheduled time came: True if the trailing publication must go out."""
        state = self._states.get(project_id)
        if state is None or not state.pending:
            return False
        if now + _EARLY_S < state.last_published + self._interval:
            # A stale tick (a publication went out since it was scheduled): the
            # tick scheduled after that publication carries the trailing state.
            return False
        state.pending = False
        state.last_published = now
        return True

    def forget(self, project_id: str) -> None:
        self._states.pop(project_id, None)


# ---------------------------------------------------------------------------
# The contract's full Health: derived in the session actor (HealthState),
# shaped by to_wire, ordered and summed for health.get (sort_projects,
# aggregates).

BURN_WINDOW_MS = 300_000
"""Burn rates come from the cost snapshots of this last stretch of time."""

MIN_BURN_SPAN_MS = 3_600
"""Burn rates are 0 until two snapshots at least this far apart (0.001 h)."""

MAX_SNAPSHOTS = 512
"""Cost snapshots kept per session (the oldest go first)."""

MAX_IN_FLIGHT = 256
"""Tool calls tracked as in flight per session (past it the oldest is dropped)."""

REASON_CHARS = 200
"""An attention reason is one line of at most this many characters."""

ATTENTION_SCORES: dict[str, int] = {
    "stalled": 100,
    "waiting": 95,
    "error": 90,
    "context_full": 80,
    "conflicts": 70,
    "context_high": 40,
}
"""The attention rules, first that holds wins (contract §3)."""

ACTIVITIES = ("inactive", "running", "idle", "waiting", "stalled")


def burn_rates(snapshots: Iterable[tuple[int, float, int]], now_ms: int) -> tuple[float, float]:
    """``(USD per hour, tokens per minute)`` from ``(ms, cumulative cost, cumulative tokens)``
    snapshots: the change between the oldest and the newest of the last
    :data:`BURN_WINDOW_MS`, over the time between them; (0, 0) until two
    snapshots are at least :data:`MIN_BURN_SPAN_MS` apart. Never negative."""
    recent = [s for s in snapshots if now_ms - BURN_WINDOW_MS <= s[0] <= now_ms]
    if len(recent) < 2:
        return 0.0, 0.0
    first = min(recent, key=lambda s: s[0])
    last = max(recent, key=lambda s: s[0])
    span = last[0] - first[0]
    if span < MIN_BURN_SPAN_MS:
        return 0.0, 0.0
    usd_per_hour = max(0.0, last[1] - first[1]) * 3_600_000 / span
    tokens_per_minute = max(0, last[2] - first[2]) * 60_000 / span
    return round(usd_per_hour, 6), round(tokens_per_minute, 3)


def context_pressure(context_tokens: int, limit: int) -> float:
    """``contextTokens / contextLimit`` (0 for a limit that is not positive)."""
    return round(context_tokens / limit, 6) if limit > 0 else 0.0


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 1] + "…"


def _duration(ms: int) -> str:
    seconds = max(0, ms) // 1000
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def attention(
    *,
    activity: str,
    status: str | None,
    error: str | None = None,
    active_tool: str | None = None,
    tool_since: int | None = None,
    last_activity: int | None = None,
    waiting_for: str | None = None,
    pressure: float = 0.0,
    context_tokens: int = 0,
    context_limit: int = 0,
    open_conflicts: int = 0,
    now_ms: int = 0,
) -> dict[str, Any]:
    """``{"score", "reason"}``: the first attention rule that holds (see ATTENTION_SCORES)."""
    percent = f"{pressure * 100:.0f}%"
    if activity == "stalled":
        if active_tool:
            since = _duration(now_ms - tool_since) if tool_since is not None else "long"
            reason = f"stalled: tool {active_tool} has run for {since} with no output"
        else:
            idle = _duration(now_ms - last_activity) if last_activity is not None else "long"
            reason = f"stalled: no output for {idle}"
        return {"score": ATTENTION_SCORES["stalled"], "reason": _one_line(reason)}
    if activity == "waiting":
        reason = f"waiting for your approval: {waiting_for or 'a tool call'}"
        return {"score": ATTENTION_SCORES["waiting"], "reason": _one_line(reason)}
    if status == "error":
        reason = f"error: {error}" if error else "the session ended with an error"
        return {"score": ATTENTION_SCORES["error"], "reason": _one_line(reason)}
    if pressure > 0.9:
        reason = (
            f"context {percent} full ({context_tokens}/{context_limit} tokens): "
            "start a new session or compact"
        )
        return {"score": ATTENTION_SCORES["context_full"], "reason": reason}
    if open_conflicts > 0:
        files = "file" if open_conflicts == 1 else "files"
        reason = f"{open_conflicts} {files} also written by another session: see conflicts.list"
        return {"score": ATTENTION_SCORES["conflicts"], "reason": reason}
    if pressure > 0.75:
        reason = f"context {percent} full ({context_tokens}/{context_limit} tokens)"
        return {"score": ATTENTION_SCORES["context_high"], "reason": reason}
    return {"score": 0, "reason": ""}


@dataclass
class HealthState:
    """What a session actor knows for its project's Health, updated as things happen.

    Times are wall-clock ms (``db.now_ms()``). The actor calls :meth:`observe`
    with each batch of normalized output, :meth:`cost_snapshot` after applying
    a cost (and once when a turn starts, so that a turn's spend has a span),
    :meth:`set_stalled` from its stall clock and :meth:`approval_waiting` /
    :meth:`approval_resolved` for approvals; :meth:`to_wire` gives the Health.
    """

    tools_started: int = 0
    tools_finished: int = 0
    in_flight: dict[str, tuple[str, int]] = field(default_factory=dict)
    last_activity: int | None = None
    stalled: bool = False
    approvals: dict[str, str] = field(default_factory=dict)
    snapshots: deque[tuple[int, float, int]] = field(
        default_factory=lambda: deque(maxlen=MAX_SNAPSHOTS)
    )
    context_tokens: int = 0
    context_window: int | None = None

    def snapshot(self) -> HealthState:
        """A copy another actor may keep (the containers are copied)."""
        return HealthState(
            tools_started=self.tools_started,
            tools_finished=self.tools_finished,
            in_flight=dict(self.in_flight),
            last_activity=self.last_activity,
            stalled=self.stalled,
            approvals=dict(self.approvals),
            snapshots=deque(self.snapshots, maxlen=MAX_SNAPSHOTS),
            context_tokens=self.context_tokens,
            context_window=self.context_window,
        )

    # -- events -------------------------------------------------------------

    def activity(self, now_ms: int) -> None:
        """Output arrived (any kind)."""
        self.last_activity = now_ms

    def tool_started(self, tool_id: str, name: str, now_ms: int) -> None:
        self.activity(now_ms)
        if tool_id in self.in_flight:
            return
        self.tools_started += 1
        self.in_flight[tool_id] = (name, now_ms)
        while len(self.in_flight) > MAX_IN_FLIGHT:
            del self.in_flight[next(iter(self.in_flight))]

    def tool_finished(self, tool_id: str, now_ms: int) -> None:
        self.activity(now_ms)
        if self.in_flight.pop(tool_id, None) is not None:
            self.tools_finished += 1

    def turn_ended(self, now_ms: int) -> None:
        """The turn is over: no tool is in flight any more, nobody waits for an answer."""
        self.activity(now_ms)
        self.in_flight.clear()
        self.stalled = False

    def usage(self, input_tokens: int, cache_read: int, cache_creation: int) -> None:
        """A turn's token usage: its context is input + cache-read + cache-creation tokens."""
        total = input_tokens + cache_read + cache_creation
        if total > 0:
            self.context_tokens = total

    def cost_snapshot(self, cost_usd: float, tokens: int, now_ms: int) -> None:
        """The session's cumulative cost and tokens (input + output) at ``now_ms``."""
        self.snapshots.append((now_ms, float(cost_usd), int(tokens)))

    def set_stalled(self, stalled: bool) -> None:
        self.stalled = stalled

    def approval_waiting(self, approval_id: str, summary: str) -> None:
        self.approvals[approval_id] = summary

    def approval_resolved(self, approval_id: str) -> None:
        self.approvals.pop(approval_id, None)

    def observe(self, values: Iterable[Normalized], now_ms: int) -> None:
        """Apply a batch of normalized provider output (tool calls, results, usage, turn end)."""
        for n in values:
            if n.kind == "tool_call" and n.tool_id:
                self.tool_started(n.tool_id, n.tool_name or "tool", now_ms)
            elif n.kind == "tool_result" and n.tool_id:
                self.tool_finished(n.tool_id, now_ms)
            elif n.kind == "turn_end":
                self.turn_ended(now_ms)
            else:
                self.activity(now_ms)
                if n.kind == "cost":
                    self.usage(n.input_tokens, n.cache_read_tokens, n.cache_creation_tokens)
                    if n.context_window:
                        self.context_window = n.context_window

    # -- reading ------------------------------------------------------------

    def active_tool(self) -> tuple[str, int] | None:
        """(name, started ms) of the oldest tool call in flight."""
        return next(iter(self.in_flight.values()), None)

    def activity_of(self, status: str | None, live: bool) -> str:
        if not live or status != "running":
            return "inactive"
        if self.stalled:
            return "stalled"
        if self.approvals:
            return "waiting"
        return "running" if self.in_flight else "idle"

    def to_wire(
        self,
        project_id: str,
        *,
        session: Mapping[str, Any] | None,
        live: bool,
        now_ms: int,
        context_limit: int,
        open_conflicts: int = 0,
    ) -> dict[str, Any]:
        """The contract's Health of ``project_id``; ``session`` is its current
        session row (``sessionId``, ``status``, costs, tokens, ``error``,
        ``messageCount``, ``updatedAt``) or None."""
        return health_record(
            project_id,
            session=session,
            live=live,
            now_ms=now_ms,
            context_limit=context_limit,
            open_conflicts=open_conflicts,
            state=self,
        )


def health_record(
    project_id: str,
    *,
    session: Mapping[str, Any] | None,
    live: bool,
    now_ms: int,
    context_limit: int,
    open_conflicts: int = 0,
    state: HealthState | None = None,
) -> dict[str, Any]:
    """The contract's Health; without ``state`` (a stored session, or none) nothing is in flight."""
    state = state or HealthState()
    row = session or {}
    status = row.get("status")
    activity = state.activity_of(status, live and session is not None)
    tool = state.active_tool() if activity in ("running", "stalled", "waiting") else None
    last_activity = state.last_activity if state.last_activity is not None else row.get("updatedAt")
    usd_per_hour, tokens_per_minute = burn_rates(state.snapshots, now_ms)
    pressure = context_pressure(state.context_tokens, context_limit)
    waiting_for = next(iter(state.approvals.values()), None)
    return {
        "projectId": project_id,
        "sessionId": row.get("sessionId"),
        "status": status,
        "live": bool(live and session is not None),
        "activity": activity,
        "activeTool": tool[0] if tool else None,
        "toolSince": tool[1] if tool else None,
        "lastActivity": last_activity,
        "idleMs": max(0, now_ms - last_activity) if last_activity is not None else 0,
        "toolCalls": {"started": state.tools_started, "finished": state.tools_finished},
        "costUsd": row.get("costUsd", 0.0),
        "inputTokens": row.get("inputTokens", 0),
        "outputTokens": row.get("outputTokens", 0),
        "cacheReadTokens": row.get("cacheReadTokens", 0),
        "cacheCreationTokens": row.get("cacheCreationTokens", 0),
        "messageCount": row.get("messageCount", 0),
        "burnRateUsdPerHour": usd_per_hour,
        "tokensPerMinute": tokens_per_minute,
        "contextTokens": state.context_tokens,
        "contextLimit": context_limit,
        "contextPressure": pressure,
        "openConflicts": open_conflicts,
        "attention": attention(
            activity=activity,
            status=status,
            error=row.get("error"),
            active_tool=tool[0] if tool else None,
            tool_since=tool[1] if tool else None,
            last_activity=last_activity,
            waiting_for=waiting_for,
            pressure=pressure,
            context_tokens=state.context_tokens,
            context_limit=context_limit,
            open_conflicts=open_conflicts,
            now_ms=now_ms,
        ),
        "stalled": activity == "stalled",
    }


_NOT_SHOWN = frozenset({"idleMs"})


def visible_change(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Did something a client shows change (``idleMs`` grows by itself and does not count)?"""
    if old is None:
        return True
    return any(old.get(k) != v for k, v in new.items() if k not in _NOT_SHOWN) or any(
        k not in new for k in old if k not in _NOT_SHOWN
    )


def _order(row: Mapping[str, Any]) -> tuple[int, int, int, str]:
    last = row.get("lastActivity")
    return (
        -int(row.get("attention", {}).get("score", 0)),
        0 if last is not None else 1,
        -int(last or 0),
        str(row.get("projectId", "")),
    )


def sort_projects(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Health rows by attention score (highest first), then last activity (newest
    first, none last), then project id."""
    return sorted((dict(r) for r in rows), key=_order)


def aggregates(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``health.get``'s aggregates over Health rows: live sessions running or
    not, stalled ones, the summed burn rate and the top attention (or None)."""
    running = idle = stalled = 0
    burn = 0.0
    top: Mapping[str, Any] | None = None
    for row in rows:
        if row.get("live"):
            if row.get("status") == "running":
                running += 1
            else:
                idle += 1
        if row.get("stalled"):
            stalled += 1
        burn += float(row.get("burnRateUsdPerHour", 0.0))
        if row.get("attention", {}).get("score", 0) > 0 and (
            top is None or _order(row) < _order(top)
        ):
            top = row
    return {
        "running": running,
        "idle": idle,
        "stalled": stalled,
        "burnRateUsdPerHour": round(burn, 6),
        "attention": (
            {
                "projectId": top["projectId"],
                "score": top["attention"]["score"],
                "reason": top["attention"]["reason"],
            }
            if top is not None
            else None
        ),
    }

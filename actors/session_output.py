"""A session's provider output: parsed items become transcript messages, raw rows,
cost, health and turn endings, committed as one store write per read.

A mixin of :class:`~corral.actors.session.SessionActor` (run on the session's
thread). Each read of provider output (a list of
:class:`~corral.actors.normalized.Normalized` items) is folded into one step:
displayed items are numbered and converted, unknown lines are kept raw, cost and
init facts update the record, and a turn's end moves the Lifecycle (handing a
prompt that waited for it to the provider). The step is one ``_commit``; the
provider's flow-control credit (``done``) is given back once it is stored.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pykka

from corral.actors import convert, db
from corral.actors.conflicts import write_paths
from corral.actors.control import Control
from corral.actors.health import HealthState
from corral.actors.messages import FilesWritten
from corral.actors.normalized import Normalized
from corral.actors.ports import ProviderHandle
from corral.actors.record import SessionRecord
from corral.actors.scheduler import Generation
from corral.actors.session_write import delta_event, dump_raw
from corral.actors.stall import StallClock
from corral.actors.state import Lifecycle
from corral.actors.store import AddRaw

MAX_TOOL_NAMES = 4096
"""Tool-call ids remembered per session (to name their results), oldest dropped first."""

Failure = tuple[Any, list[dict[str, Any]]]


class SessionOutput:
    # provided by SessionActor
    deps: Any
    life: Lifecycle
    rec: SessionRecord
    stall: StallClock
    health: HealthState
    control: Control
    options: dict[str, Any]
    approvals: dict[str, dict[str, Any]]
    session_id: str
    project_id: str
    seq: int
    proc: ProviderHandle | None
    queued: deque[str]
    tool_names: dict[str, str]
    cost_base: float
    error_info: str | None
    turn_began: float
    cleanup_gen: Generation

    _tell: Callable[[pykka.ActorRef[Any], Any], None]
    _system_message: Callable[[str], dict[str, Any]]
    _commit: Callable[..., None]
    _report: Callable[..., None]
    _became_terminal: Callable[[], None]
    _stopped: Callable[[list[dict[str, Any]]], None]
    _resolve_all: Callable[[str, str], list[dict[str, Any]]]
    _on_approval_item: Callable[[Normalized], dict[str, Any]]
    _maybe_retry_notice: Callable[[Normalized], None]
    _hand_over_by_launch: Callable[[str], Failure | None]
    _arm_stall: Callable[[], None]

    def _on_output(self, items: list[Normalized], done: Callable[[], None]) -> None:
        now = db.now_ms()
        stall_cleared = self.stall.activity()
        if stall_cleared:
            self.health.set_stalled(False)
        self.health.observe(items, now)
        written: list[str] = []
        messages: list[dict[str, Any]] = []
        raws: list[AddRaw] = []
        status_changed = False
        cost_changed = False
        for n in items:
            kind = n.kind
            if kind == "delta":
                self._publish_delta(n)
            elif kind == "approval":
                messages.append(self._on_approval_item(n))
                continue
            elif kind == "init":
                status_changed = self._on_init(n) or status_changed
            elif kind == "tool_call" and n.tool_id and n.tool_name:
                if len(self.tool_names) >= MAX_TOOL_NAMES:
                    self.tool_names.pop(next(iter(self.tool_names)))
                self.tool_names[n.tool_id] = n.tool_name
                written.extend(write_paths(n.tool_name, n.tool_input, self.options.get("cwd")))
            elif kind == "cost":
                self._apply_cost(n)
                self._snapshot_cost()
                cost_changed = True
            elif kind == "status":
                self._maybe_retry_notice(n)
            elif kind == "unknown":
                raw = n.raw or {}
                raws.append(
                    AddRaw(self.session_id, now, str(raw.get("type", "?"))[:64], dump_raw(raw))
                )
            elif kind == "error" and self.life.stopping:
                # The provider's report of the interrupt we asked for is not an error.
                continue
            elif kind == "turn_end":
                status_changed = self._on_turn_end(n, messages) or status_changed
                continue
            if convert.is_displayed(n):
                self.seq += 1
                messages.append(
                    convert.to_agent_message(n, self.seq, now, tool_names=self.tool_names)
                )
        if written:
            self._tell(
                self.deps.registry, FilesWritten(self.session_id, self.project_id, written, now)
            )
        if messages or raws or status_changed or cost_changed:
            self._commit(
                messages,
                status_changed=status_changed,
                cost_changed=cost_changed,
                raws=raws,
                then=lambda _r: done(),
                on_error=done,
                health=True,
            )
        else:
            done()
            self._report(status_changed=False)

    def _publish_delta(self, n: Normalized) -> None:
        """A preview of a message still streaming: published at once, never stored
        (the whole message follows through the store)."""
        data = delta_event(self.session_id, self.seq, n)
        self.deps.outbox.publish("agent.delta", data, self.project_id)

    def _on_init(self, n: Normalized) -> bool:
        """A turn starts; True if the provider started it itself after the last one
        ended (its stream is the truth: the session runs again until its end)."""
        started = self.life.provider_turn_started()
        if started:
            self.rec.error = None
            self.error_info = None
            self.turn_began = time.monotonic()
            self._arm_stall()
            self.cleanup_gen.next()
        if n.model:
            self.rec.model = n.model
        if n.provider_session_id:
            if self.rec.provider_session_id not in (None, n.provider_session_id):
                # A new provider-side conversation: its cumulative cost restarts.
                self.cost_base = self.rec.cost_usd
            self.rec.provider_session_id = n.provider_session_id
        return started

    def _on_turn_end(self, n: Normalized, messages: list[dict[str, Any]]) -> bool:
        """A turn ended; True if the status changed."""
        if self.approvals:  # nobody answered before the turn ended
            messages.extend(self._resolve_all("stop", "the turn ended"))
        if self.life.stopping and self.life.running:
            self._stopped(messages)
            return True
        if n.is_error and self.queued and self.life.running:
            note = f"{len(self.queued)} queued prompt(s) not sent: the turn failed"
            messages.append(self._system_message(note))
            self.queued.clear()
        if self.life.turn_ended(ok=not n.is_error):
            self.rec.error = (n.text or "the provider reported an error") if n.is_error else None
            self.error_info = n.error_info if n.is_error else None
            self._became_terminal()
            return True
        if self.life.running and self.queued and self._hand_over_queued(messages):
            self._became_terminal()
            return True
        return False

    def _hand_over_queued(self, messages: list[dict[str, Any]]) -> bool:
        """The turn ended and a prompt waits: give it to the provider (its user
        message was recorded when it arrived). True if that failed, which ended
        the session in ``error``."""
        text = self.queued.popleft()
        if self.proc is not None and self.proc.send_prompt(text):
            return False
        failure = self._hand_over_by_launch(text)
        if failure is None:
            return False
        messages.extend(failure[1])
        return True

    def _apply_cost(self, n: Normalized) -> None:
        self.rec.add_usage(n, self.cost_base)

    def _snapshot_cost(self) -> None:
        rec = self.rec
        tokens = rec.input_tokens + rec.output_tokens
        self.health.cost_snapshot(rec.cost_usd, tokens, db.now_ms())

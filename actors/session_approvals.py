"""A session's pending approvals: an agent waiting for a person to allow a tool call.

A mixin of :class:`~corral.actors.session.SessionActor` (run on the session's
thread). A provider's ``approval`` item becomes an Approval: offered on the
session's :class:`~corral.actors.control.Control` (where the registry answers it
on the urgent path, exactly once), stored, written into the transcript
("approval requested: ..."), published as ``approval.requested`` after the
commit, notified (``approval_needed``), shown in Health as ``waiting``; the stall
clock does not run while one is pending. Each approval ends once, as
``approval.resolved`` with who decided: a client, the timeout
(``approval_timeout_ms``), a stop, or a restart (at the next daemon start).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pykka

from corral.actors import db
from corral.actors.control import Control
from corral.actors.health import HealthState
from corral.actors.messages import Approved, Notify
from corral.actors.normalized import Normalized
from corral.actors.ports import ApprovalDecision, ReplyTo
from corral.actors.record import SessionRecord
from corral.actors.scheduler import Tick
from corral.actors.settings import Settings
from corral.actors.stall import StallClock
from corral.actors.state import Lifecycle
from corral.actors.store import Publication, ResolveApproval, SaveApproval

SUMMARY_CHARS = 300
"""An approval's summary is one line of at most this many characters."""


class SessionApprovals:
    # provided by SessionActor
    actor_ref: pykka.ActorRef[Any]
    deps: Any
    settings: Settings
    life: Lifecycle
    rec: SessionRecord
    stall: StallClock
    health: HealthState
    control: Control
    approvals: dict[str, dict[str, Any]]
    session_id: str
    project_id: str
    seq: int
    pending_ops: list[Any]  # store operations and events for the next commit
    pending_pubs: list[Publication]

    _tell: Callable[[pykka.ActorRef[Any], Any], None]
    _system_message: Callable[[str], dict[str, Any]]
    _arm_stall: Callable[[], None]
    _commit: Callable[..., None]

    # ------------------------------------------------------------ requested

    def _on_approval_item(self, n: Normalized) -> dict[str, Any]:
        """A provider asks; returns the transcript line. The registry can answer it
        from now on; its event and notification go out with this step's commit."""
        raw = n.raw or {}
        summary = " ".join((n.text or n.tool_name or "a tool call").split())[:SUMMARY_CHARS]
        approval: dict[str, Any] = {
            "approvalId": uuid.uuid4().hex,
            "sessionId": self.session_id,
            "projectId": self.project_id,
            "provider": self.rec.provider,
            "toolName": n.tool_name or "tool",
            "input": dict(n.tool_input or {}),
            "summary": summary,
            "createdAt": db.now_ms(),
        }
        suggestions = raw.get("suggestions")
        if isinstance(suggestions, list) and suggestions:
            approval["suggestions"] = suggestions
        given = raw.get("request")
        request: dict[str, Any] = given if isinstance(given, dict) else {}
        self.approvals[approval["approvalId"]] = approval
        self.control.offer(approval, request)
        self.health.approval_waiting(approval["approvalId"], summary)
        self.stall.stop()  # waiting for a person is not a stall
        self.pending_ops.append(SaveApproval(approval))
        self.pending_pubs.append(Publication("approval.requested", approval, self.project_id))
        self._tell(
            self.deps.registry,
            Notify(
                "warning",
                "approval_needed",
                f"{self.project_id}: waiting for your approval: {summary}",
                self.session_id,
                self.project_id,
            ),
        )
        timeout_ms = self.settings.int("approval_timeout_ms")
        if timeout_ms > 0:
            tick = Tick("approval", 0, approval["approvalId"])
            self.deps.scheduler.call_later(timeout_ms / 1000.0, self.actor_ref, tick)
        return self._system_message(f"approval requested: {summary}")

    # ------------------------------------------------------------ resolved

    def _on_approved(self, msg: Approved) -> None:
        """A client's answer (the registry gave it to the provider already)."""
        decision = "allow" if msg.allow else "deny"
        self._resolved(msg.approval_id, decision, "client", msg.message, msg.reply_to)

    def _on_approval_tick(self, tick: Tick) -> None:
        approval_id = tick.payload
        if not isinstance(approval_id, str) or approval_id not in self.approvals:
            return
        secs = self.settings.int("approval_timeout_ms") / 1000.0
        text = f"no answer within {secs:g} s"
        if self.control.answer(approval_id, ApprovalDecision(False, text)) is not None:
            self._resolved(approval_id, "deny", "timeout", text)

    def _resolve_all(self, by: str, message: str) -> list[dict[str, Any]]:
        """Deny every pending approval (a stop, or the provider went away): the
        transcript lines, to be committed by the caller's step."""
        lines: list[dict[str, Any]] = []
        self.control.deny_all(message)
        for approval_id in list(self.approvals):
            lines.append(self._close(approval_id, "deny", by, message))
        return lines

    def _resolved(
        self,
        approval_id: str,
        decision: str,
        by: str,
        message: str | None,
        reply_to: ReplyTo | None = None,
    ) -> None:
        if approval_id not in self.approvals:
            return
        line = self._close(approval_id, decision, by, message)
        result = {"approvalId": approval_id, "decision": decision}
        outbox = self.deps.outbox

        def answered(_results: list[Any]) -> None:
            if reply_to is not None:
                outbox.reply(reply_to, result=result)

        self._commit([line], health=True, then=answered)

    def _close(
        self, approval_id: str, decision: str, by: str, message: str | None
    ) -> dict[str, Any]:
        """Forget a pending approval; its transcript line (its store write and event
        ride on the next commit)."""
        approval = self.approvals.pop(approval_id)
        self.health.approval_resolved(approval_id)
        data = {"approvalId": approval_id, "sessionId": self.session_id, "decision": decision}
        self.pending_ops.append(ResolveApproval(self.session_id, approval_id, decision, by))
        self.pending_pubs.append(
            Publication("approval.resolved", {**data, "by": by}, self.project_id)
        )
        if not self.approvals and self.life.running:
            self._arm_stall()
        if decision == "allow":
            text = f"allowed by a client: {approval['summary']}"
        elif by == "client":
            text = f"denied: {message}" if message else f"denied by a client: {approval['summary']}"
        else:
            text = f"denied ({by}): {message or approval['summary']}"
        return self._system_message(text)

"""The registry's supervision of live sessions: Health, file conflicts, approvals.

A mixin of :class:`~corral.actors.registry.RegistryActor` (run on the
registry's thread). Each live session reports its committed Session and a
snapshot of its :class:`~corral.actors.health.HealthState`; the registry adds
what only it knows (open conflicts across sessions, the context limit of the
model with the operator's overrides) to make the contract's Health. ``health``
events go out at most once per project per second and only when something a
client shows changed. Conflicts are live state (never stored): the index is
fed by ``FilesWritten`` tells and forgets a session when it leaves the map.
Approvals are answered here on the urgent path: through the session's Control,
straight to the provider (exactly once), then told to the session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import apsw
import pykka

from corral.actors import db, oplog
from corral.actors.conflicts import ConflictIndex
from corral.actors.context_limits import context_limit, overrides_from
from corral.actors.health import (
    HealthState,
    HealthThrottle,
    aggregates,
    health_record,
    sort_projects,
    visible_change,
)
from corral.actors.messages import Approved, FilesWritten
from corral.actors.notifications import Notifications
from corral.actors.ports import ApprovalDecision, Outbox, ReplyTo
from corral.actors.scheduler import Scheduler, Tick
from corral.actors.settings import Settings
from corral.protocol.errors import NoSession, NotFound


class SupervisionRequests:
    # provided by RegistryActor
    actor_ref: pykka.ActorRef[Any]
    settings: Settings
    projects: dict[str, Any]  # project id -> Entry
    notifications: Notifications
    health: HealthThrottle
    conflicts: ConflictIndex
    published_health: dict[str, dict[str, Any]]
    _outbox: Outbox
    _scheduler: Scheduler

    @property
    def conn(self) -> apsw.Connection:
        raise NotImplementedError

    _current: Callable[[str], Any]  # the live Entry of a project, or None

    # ------------------------------------------------------------ health

    def _context_limit(self, provider: str | None, model: str | None, reported: int | None) -> int:
        config = self.settings.provider_config(provider) if provider else {}
        return context_limit(model, overrides_from(config), reported)

    def _health_of(self, project_id: str) -> dict[str, Any]:
        now = db.now_ms()
        entry = self.projects.get(project_id)
        conflicts = self.conflicts.open_count(project_id)
        if entry is not None:
            state: HealthState = entry.health or HealthState()
            row = dict(entry.summary) if entry.summary else {"sessionId": entry.session_id}
            row["status"] = entry.status
            limit = self._context_limit(row.get("provider"), row.get("model"), state.context_window)
            return health_record(
                project_id,
                session=row,
                live=True,
                now_ms=now,
                context_limit=limit,
                open_conflicts=conflicts,
                state=state,
            )
        stored = db.newest_session(self.conn, project_id)
        limit = self._context_limit(
            stored["provider"] if stored else None, stored["model"] if stored else None, None
        )
        return health_record(
            project_id,
            session=stored,
            live=False,
            now_ms=now,
            context_limit=limit,
            open_conflicts=conflicts,
        )

    def _publish_health(self, project_id: str) -> None:
        delay = self.health.request(project_id, time.monotonic())
        if delay == 0.0:
            self._publish_health_now(project_id)
        elif delay is not None:
            self._scheduler.call_later(delay, self.actor_ref, Tick("health", 0, project_id))

    def _publish_health_now(self, project_id: str) -> None:
        record = self._health_of(project_id)
        if visible_change(self.published_health.get(project_id), record):
            self.published_health[project_id] = record
            self._outbox.publish("health", record, project_id)

    def _on_health_tick(self, tick: Tick) -> None:
        payload = tick.payload
        if isinstance(payload, str) and self.health.due(payload, time.monotonic()):
            self._publish_health_now(payload)

    def rpc_health_get(self, params: dict[str, Any], _r: ReplyTo) -> dict[str, Any]:
        project_id = params.get("projectId")
        ids = [project_id] if project_id is not None else list(self.projects)
        records = [self._health_of(p) for p in ids]
        return {"projects": sort_projects(records), "aggregates": aggregates(records)}

    # ------------------------------------------------------------ conflicts

    def _on_files_written(self, msg: FilesWritten) -> None:
        entry = self.projects.get(msg.project_id)
        if entry is None or entry.session_id != msg.session_id:
            return  # not live any more: its writes no longer count
        touched: set[str] = set()
        for path in msg.paths:
            opened = self.conflicts.record_write(msg.session_id, msg.project_id, path, msg.ts)
            for conflict in opened:
                self._outbox.publish("conflict", conflict, conflict["projectId"])
                touched.add(conflict["projectId"])
            if opened:
                oplog.conflict(path, opened[0]["sessionIds"], opened[0]["projectIds"])
                projects = ", ".join(opened[0]["projectIds"])
                self.notifications.add(
                    "warning",
                    "conflict",
                    f"{path} is written by several sessions ({projects})",
                    msg.session_id,
                    msg.project_id,
                )
        for project_id in touched:
            self._publish_health(project_id)

    def _forget_writes(self, session_id: str) -> None:
        for project_id in self.conflicts.forget_session(session_id):
            self._publish_health(project_id)

    def rpc_conflicts_list(self, params: dict[str, Any], _r: ReplyTo) -> dict[str, Any]:
        return {"conflicts": self.conflicts.list(params.get("projectId"))}

    def rpc_conflicts_ack(self, params: dict[str, Any], _r: ReplyTo) -> dict[str, Any]:
        project_id = params["projectId"]
        count = self.conflicts.ack(project_id)
        if count:
            self._publish_health(project_id)
        return {"acknowledged": count}

    # ------------------------------------------------------------ approvals

    def rpc_approvals_list(self, params: dict[str, Any], _r: ReplyTo) -> dict[str, Any]:
        project_id = params.get("projectId")
        entries = [self.projects[project_id]] if project_id in self.projects else []
        if project_id is None:
            entries = list(self.projects.values())
        approvals = [a for e in entries for a in e.control.pending()]
        approvals.sort(key=lambda a: (a["createdAt"], a["approvalId"]))
        return {"approvals": approvals}

    def rpc_agent_approve(self, params: dict[str, Any], reply_to: ReplyTo) -> None:
        project_id = params["projectId"]
        entry = self._current(project_id)
        if entry is None:
            raise NoSession(f"project {project_id!r} has no current session")
        allow = params["decision"] == "allow"
        approval_id = params["approvalId"]
        decision = ApprovalDecision(
            allow=allow,
            message=params.get("message"),
            updated_input=params.get("updatedInput") if allow else None,
            remember=bool(params.get("remember")) and allow,
        )
        if entry.control.answer(approval_id, decision) is None:
            raise NotFound(f"no pending approval {approval_id!r} in project {project_id!r}")
        # the provider has its answer; the session records it and replies
        entry.ref.tell(Approved(approval_id, allow, params.get("message"), reply_to))

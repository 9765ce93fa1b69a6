"""RegistryActor: the projectId → live session map, start guards and retention.

It is the single authority on which session is *current* for a project:

* start guards: ``start_in_progress`` while a start is in flight,
  ``session_running`` over a running session; a done/error current session is
  retired before a new start; ``overloaded`` past ``max_live_sessions``;
* prompt epochs: every prompt it forwards bumps the entry's epoch, and a
  session's cleanup request is honoured only for the epoch it saw, so a
  prompt racing a cleanup can never be lost;
* retention when a session ends (count per project and age), never touching
  live sessions;
* settings, notifications (a bounded ring) and health.

It never asks another actor: replies go out through the outbox, reads of
stored sessions come from its own read connection or a reader actor.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import pykka

from corral.actors import db, fd_budget, oplog
from corral.actors import options as start_options
from corral.actors import settings as settings_mod
from corral.actors.board import SessionBoard
from corral.actors.conflicts import ConflictIndex
from corral.actors.error_class import classify
from corral.actors.health import HealthState, HealthThrottle
from corral.actors.messages import (
    Begin,
    FilesWritten,
    Notify,
    Prompt,
    Request,
    RequestRetire,
    Retire,
    SessionChanged,
    SessionDied,
    Shutdown,
    Started,
    StartFailed,
    Stop,
)
from corral.actors.notifications import Notifications
from corral.actors.ports import Outbox, ProviderCatalog, ReplyTo, run_and_answer
from corral.actors.reader import ReaderPool
from corral.actors.record import SessionRecord
from corral.actors.registry_health import SupervisionRequests
from corral.actors.registry_info import InfoRequests
from corral.actors.registry_sessions import SessionRequests
from corral.actors.retention import retention_write
from corral.actors.scheduler import Scheduler, Tick
from corral.actors.session import (
    SHUTDOWN_REASON,
    Control,
    SessionActor,
    SessionDeps,
)
from corral.actors.settings import Settings
from corral.actors.starts import IdempotencyBook, PendingStart
from corral.actors.state import TERMINAL
from corral.actors.store import (
    FailSession,
    Publication,
    Write,
)
from corral.protocol.errors import (
    InternalError,
    NoSession,
    Overloaded,
    ProviderUnavailable,
    SessionRunning,
    ShuttingDown,
    StartInProgress,
)

log = logging.getLogger("corral.registry")


@dataclass
class Entry:
    """A live session, as the registry sees it.

    The registry never sets a session's status: ``reported`` is what the session
    last committed and told (``SessionChanged``), with the prompt ``epoch`` it had
    seen. A prompt the registry sent that has not been reported on yet makes the
    session count as running."""

    session_id: str
    project_id: str
    ref: pykka.ActorRef[Any]
    control: Control
    reported: str
    epoch: int = 0
    reported_epoch: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    health: HealthState | None = None

    @property
    def status(self) -> str:
        return "running" if self.epoch > self.reported_epoch else self.reported


class RegistryActor(InfoRequests, SupervisionRequests, SessionRequests, pykka.ThreadingActor):
    def __init__(
        self,
        *,
        db_path: Path,
        store: pykka.ActorRef[Any],
        readers: ReaderPool,
        scheduler: Scheduler,
        outbox: Outbox,
        launcher: Any,
        catalog: ProviderCatalog,
        info: dict[str, Any],
        desktop: Callable[[dict[str, Any]], object] | None = None,
        settings_defaults: dict[str, str] | None = None,
        pinned_settings: frozenset[str] = frozenset(),
        board: SessionBoard | None = None,
    ) -> None:
        super().__init__()
        self.board = board if board is not None else SessionBoard()
        self._db_path = db_path
        self._store = store
        self._readers = readers
        self._scheduler = scheduler
        self._outbox = outbox
        self._launcher = launcher
        self._catalog = catalog
        self._info = info
        self._conn: apsw.Connection | None = None
        self.settings = Settings(settings_mod.DEFAULTS)
        self.projects: dict[str, Entry] = {}
        self.starting: dict[str, PendingStart] = {}
        self.remembered = IdempotencyBook()
        self.notifications = Notifications(store, sink=self._to_desktop)
        self.health = HealthThrottle()
        self.conflicts = ConflictIndex()
        self.published_health: dict[str, dict[str, Any]] = {}
        self._desktop = desktop
        self._settings_defaults = dict(settings_defaults or {})
        self.pinned_settings = pinned_settings
        self.shutting_down = False

    # ------------------------------------------------------------ lifecycle

    def on_start(self) -> None:
        self._conn = db.connect(self._db_path, readonly=True)
        self.settings.values = settings_mod.merged(
            db.load_settings(self._conn), self._settings_defaults, self.pinned_settings
        )
        self.notifications.load(self._conn)
        self._notice_missing_binaries()
        self._enforce_retention()

    def _notice_missing_binaries(self) -> None:
        """A provider whose binary the operator named (provider_settings bin) but
        that cannot run: one ``system`` notification at start."""
        for name in self._catalog.names():
            if not self.settings.provider_config(name).get("bin"):
                continue
            if not self.settings.provider_enabled(name):
                continue
            available, detail = self._catalog.availability(name, self.settings.values)
            if not available:
                self._notify("warning", "system", f"{name} is not available: {detail}", None, None)

    def on_stop(self) -> None:
        if self._conn is not None:
            self._conn.close()

    @property
    def conn(self) -> apsw.Connection:
        assert self._conn is not None
        return self._conn

    def _deps(self) -> SessionDeps:
        return SessionDeps(
            store=self._store,
            registry=self.actor_ref,
            scheduler=self._scheduler,
            outbox=self._outbox,
            launcher=self._launcher,
            board=self.board,
        )

    # ------------------------------------------------------------ dispatch

    def on_receive(self, message: Any) -> Any:
        try:
            if isinstance(message, Request):
                self._on_request(message)
            elif isinstance(message, Started):
                self._on_started(message)
            elif isinstance(message, StartFailed):
                self._on_start_failed(message)
            elif isinstance(message, SessionChanged):
                self._on_session_changed(message)
            elif isinstance(message, RequestRetire):
                self._on_request_retire(message)
            elif isinstance(message, Notify):
                ids = (message.session_id, message.project_id)
                if message.kind == "agent_error":  # with its errorClass and retryable
                    self._notify_error(message.message, *ids)
                else:
                    self._notify(message.variant, message.kind, message.message, *ids)
            elif isinstance(message, SessionDied):
                self._on_session_died(message)
            elif isinstance(message, Tick):
                self._on_health_tick(message)
            elif isinstance(message, FilesWritten):
                self._on_files_written(message)
            elif isinstance(message, Shutdown):
                self._on_shutdown(message)
            else:
                log.error("registry: unexpected message %r", message)
        except Exception:
            # The registry must survive any single bad message.
            log.exception("registry: handling %r failed", type(message).__name__)
        return None

    def _on_request(self, req: Request) -> None:
        # The handler comes from the dispatch table (supervisor/dispatch.py).
        run_and_answer(
            self._outbox,
            req.reply_to,
            req.method,
            lambda: req.handler(self, req.params, req.reply_to),
            log,
        )

    # ------------------------------------------------------------ helpers

    def _current(self, project_id: str) -> Entry | None:
        """The live entry for a project, noticing a session actor that died."""
        entry = self.projects.get(project_id)
        if entry is not None and not entry.ref.is_alive():
            log.error("registry: session actor %s is dead", entry.session_id)
            self._unlist(entry)
            self._forget_dead(
                entry, entry.project_id, "internal error: session actor stopped unexpectedly"
            )
            return None
        return entry

    def _forget_dead(self, entry: Entry | PendingStart, project_id: str, error: str) -> None:
        """A session actor died: stop its provider, store it failed, tell everyone."""
        entry.control.stop_turn()
        entry.control.close()
        data = {"sessionId": entry.session_id, "status": "error", "error": error}
        self._store.tell(
            Write(
                [FailSession(entry.session_id, error)],
                [Publication("agent.status", data, project_id)],
            )
        )
        self._notify_error(f"{project_id}: {error}", entry.session_id, project_id)
        oplog.session_error(project_id, entry.session_id, "internal", error)
        self._forget_writes(entry.session_id)
        self._publish_health(project_id)

    def _list(self, entry: Entry) -> None:
        """The project's current session is now ``entry`` (and so on the board)."""
        self.projects[entry.project_id] = entry
        self.board.make_current(entry.project_id, entry.session_id)

    def _unlist(self, entry: Entry) -> None:
        """The project no longer has ``entry`` as its session."""
        self.projects.pop(entry.project_id, None)
        self.board.close(entry.project_id, entry.session_id)

    def _drop_start(self, project_id: str, pending: PendingStart) -> None:
        """The project's start in flight ended without a session (and so on the board)."""
        del self.starting[project_id]
        self.board.close(project_id, pending.session_id)

    def _retire(self, entry: Entry, reason: str = "cleanup") -> None:
        self._unlist(entry)
        try:
            entry.ref.tell(Retire(reason))
        except pykka.ActorDeadError:
            pass
        self._forget_writes(entry.session_id)
        self._publish_health(entry.project_id)

    def _live_ids(self) -> frozenset[str]:
        ids = {e.session_id for e in self.projects.values()}
        ids.update(p.session_id for p in self.starting.values())
        return frozenset(ids)

    def _enforce_retention(self) -> None:
        self._store.tell(retention_write(self.settings, self._live_ids()))

    def _notify(
        self,
        variant: str,
        kind: str,
        message: str,
        session_id: str | None,
        project_id: str | None,
    ) -> None:
        self.notifications.add(variant, kind, message, session_id, project_id)

    def _notify_error(
        self,
        message: str,
        session_id: str | None,
        project_id: str | None,
        provider_code: str | None = None,
    ) -> None:
        """An ``agent_error`` notification with its errorClass and retryable."""
        error_class, retryable = classify(message, provider_code=provider_code)
        extra = {"errorClass": error_class, "retryable": retryable}
        self.notifications.add("error", "agent_error", message, session_id, project_id, extra)

    def _to_desktop(self, note: dict[str, Any]) -> None:
        if self._desktop is not None and self.settings.desktop_notifications():
            self._desktop(note)

    # ------------------------------------------------------------ agent.*

    def rpc_agent_start(self, params: dict[str, Any], reply_to: ReplyTo) -> dict[str, Any] | None:
        if self.shutting_down:
            raise ShuttingDown()
        project_id: str = params["projectId"]
        provider: str = params["provider"]
        key = None
        if params.get("idempotencyKey"):
            key = (project_id, params["idempotencyKey"])
            seen = self.remembered.seen(key)
            if seen is not None:
                if seen.error is not None:
                    raise seen.error
                if seen.result is not None:
                    return seen.result
                pending = self.starting.get(project_id)
                if pending is not None and pending.key == key:
                    pending.waiters.append(reply_to)
                    return None
        if project_id in self.starting:
            raise StartInProgress(f"a start for project {project_id!r} is already in flight")
        current = self._current(project_id)
        if current is not None and current.status not in TERMINAL:
            raise SessionRunning(
                f"project {project_id!r} has a running session", sessionId=current.session_id
            )
        live = len(self.projects) + len(self.starting) - (1 if current is not None else 0)
        if live >= self.settings.int("max_live_sessions"):
            raise Overloaded("the live-session cap is reached; retry later")
        fd_budget.check_start_room()
        if not self.settings.provider_enabled(provider):
            raise ProviderUnavailable(
                f"provider {provider} is disabled in settings",
                detail="disabled in provider_settings",
            )
        available, detail = self._catalog.availability(provider, self.settings.values)
        if not available:
            raise ProviderUnavailable(
                f"provider {provider} is unavailable: {detail}", detail=detail
            )
        options, dropped = start_options.resolve(params, self.settings)
        options["providerConfig"] = self._catalog.validate_config(
            provider, dict(options.get("providerConfig", {}))
        )
        # Checks passed: from here on the start changes state.
        if current is not None:
            self._retire(current, "replaced by a new session")
        session_id = str(uuid.uuid4())
        row = SessionRecord.new(session_id, project_id, provider, options.get("model"))
        control = Control()
        ref = SessionActor.start(row, options, self.settings, self._deps(), control)
        self.board.open(project_id, session_id, ref)
        self.starting[project_id] = PendingStart(session_id, ref, control, [reply_to], key, dropped)
        if key is not None:
            self.remembered.begin(key)
        ref.tell(Begin(params["prompt"], 0))
        return None

    def _on_started(self, msg: Started) -> None:
        pending = self.starting.get(msg.project_id)
        if pending is None or pending.session_id != msg.session_id:
            return
        del self.starting[msg.project_id]
        entry = Entry(msg.session_id, msg.project_id, pending.ref, pending.control, "running")
        self._list(entry)
        result = {
            "sessionId": msg.session_id,
            "status": "running",
            "model": msg.model,
            "droppedEnv": pending.dropped_env,
        }
        self.remembered.answered(pending.key, result=result)
        for reply_to in pending.waiters:
            self._outbox.reply(reply_to, result=result)
        self._publish_health(msg.project_id)

    def _on_start_failed(self, msg: StartFailed) -> None:
        pending = self.starting.get(msg.project_id)
        if pending is None or pending.session_id != msg.session_id:
            return
        self._drop_start(msg.project_id, pending)
        self.remembered.answered(pending.key, error=msg.error)
        for reply_to in pending.waiters:
            self._outbox.reply(reply_to, error=msg.error)
        try:
            pending.ref.tell(Retire("start failed"))
        except pykka.ActorDeadError:
            pass
        self._notify_error(f"{msg.project_id}: {msg.error.message}", msg.session_id, msg.project_id)

    def rpc_agent_prompt(self, params: dict[str, Any], reply_to: ReplyTo) -> None:
        if self.shutting_down:
            raise ShuttingDown()
        project_id = params["projectId"]
        entry = self._current(project_id)
        if entry is None:
            if project_id in self.starting:
                raise StartInProgress(f"a start for project {project_id!r} is in flight")
            raise NoSession(f"project {project_id!r} has no current session")
        entry.epoch += 1
        entry.ref.tell(Prompt(params["prompt"], reply_to, entry.epoch))
        self._publish_health(project_id)

    def rpc_agent_stop(self, params: dict[str, Any], reply_to: ReplyTo) -> None:
        project_id = params["projectId"]
        entry = self._current(project_id)
        if entry is None:
            if project_id in self.starting:
                raise StartInProgress(f"a start for project {project_id!r} is in flight")
            raise NoSession(f"project {project_id!r} has no current session")
        # Tell first: whatever the interrupted process prints then queues behind
        # the Stop, so the session knows the turn's end was asked for.
        entry.ref.tell(Stop(reply_to))
        if entry.status == "running":
            entry.control.stop_turn()  # urgent path: does not wait behind the inbox

    # ------------------------------------------------------------ session reports

    def _on_session_changed(self, msg: SessionChanged) -> None:
        entry = self.projects.get(msg.project_id)
        if entry is None or entry.session_id != msg.session_id:
            return
        entry.summary = msg.summary
        if msg.health is not None:
            entry.health = msg.health
        if msg.epoch >= entry.reported_epoch:
            entry.reported, entry.reported_epoch = msg.status, msg.epoch
        if msg.status_changed and msg.status in TERMINAL and msg.epoch == entry.epoch:
            ids = (msg.session_id, msg.project_id)
            if msg.status == "done" and msg.stopped:
                self._notify("info", "agent_stopped", f"{msg.project_id}: stopped", *ids)
            elif msg.status == "done":
                self._notify("success", "agent_complete", f"{msg.project_id}: agent finished", *ids)
            else:
                error = msg.error or "agent failed"
                self._notify_error(f"{msg.project_id}: {error}", *ids, provider_code=msg.error_info)
            self._enforce_retention()
        self._publish_health(msg.project_id)

    def _on_request_retire(self, msg: RequestRetire) -> None:
        entry = self.projects.get(msg.project_id)
        if entry is None or entry.session_id != msg.session_id:
            return
        if entry.epoch != msg.epoch:
            return  # a prompt raced the cleanup: the session lives on
        # Same epoch: no prompt was sent since the session ended its turn, so its
        # own (terminal) status is authoritative even if its report still travels.
        self._retire(entry)

    def _on_session_died(self, msg: SessionDied) -> None:
        entry = self.projects.get(msg.project_id)
        if entry is not None and entry.session_id == msg.session_id:
            self._unlist(entry)
            self._forget_dead(entry, msg.project_id, msg.error)
            return
        pending = self.starting.get(msg.project_id)
        if pending is not None and pending.session_id == msg.session_id:
            self._drop_start(msg.project_id, pending)
            error = InternalError(msg.error)
            self.remembered.answered(pending.key, error=error)
            for reply_to in pending.waiters:
                self._outbox.reply(reply_to, error=error)
            self._forget_dead(pending, msg.project_id, msg.error)

    # ------------------------------------------------------------ session.*

    def rpc_session_restore(self, params: dict[str, Any], _reply_to: ReplyTo) -> dict[str, Any]:
        if self.shutting_down:
            raise ShuttingDown()
        project_id = params["projectId"]
        entry = self._current(project_id)
        if project_id in self.starting:
            raise StartInProgress(f"a start for project {project_id!r} is in flight")
        if entry is not None and entry.status not in TERMINAL:
            return {"restored": False, "session": db.get_session(self.conn, entry.session_id)}
        newest = None
        for candidate in db.list_sessions(self.conn, project_id=project_id, limit=50):
            if candidate["status"] in TERMINAL:
                newest = candidate
                break
        if newest is None:
            return {"restored": False, "session": None}
        if entry is not None and entry.session_id == newest["sessionId"]:
            return {"restored": True, "session": newest}
        if entry is not None:
            self._retire(entry, "replaced by a restored session")
        options = db.get_session_options(self.conn, newest["sessionId"]) or {}
        control = Control()
        record = SessionRecord.from_row(newest)
        ref = SessionActor.start(record, options, self.settings, self._deps(), control)
        summary = record.to_wire()
        self.board.open(project_id, newest["sessionId"], ref, summary)
        self._list(
            Entry(newest["sessionId"], project_id, ref, control, newest["status"], summary=summary)
        )
        self._store.tell(Write([], live_seq=(newest["sessionId"], newest["lastSeqId"])))
        self._publish_health(project_id)
        return {"restored": True, "session": newest}

    # ------------------------------------------------------------ shutdown

    def _on_shutdown(self, msg: Shutdown) -> None:
        self.shutting_down = True
        refs = []
        # Retire is told before the process is signalled (as for Stop): whatever the
        # interrupted process prints then queues behind it, so the session records
        # the interruption, not the provider's report of it.
        for project_id, pending in list(self.starting.items()):
            for reply_to in pending.waiters:
                self._outbox.reply(reply_to, error=ShuttingDown())
            try:
                pending.ref.tell(Retire(SHUTDOWN_REASON))
            except pykka.ActorDeadError:
                pass
            pending.control.stop_turn()
            refs.append(pending.ref)
            self._drop_start(project_id, pending)
        for entry in list(self.projects.values()):
            refs.append(entry.ref)
            self._retire(entry, SHUTDOWN_REASON)
            if entry.status == "running":
                entry.control.stop_turn()
        done = msg.done

        def wait_all() -> None:
            deadline = time.monotonic() + 15.0
            for ref in refs:
                while ref.is_alive() and time.monotonic() < deadline:
                    time.sleep(0.02)
            done.set()

        threading.Thread(target=wait_all, name="corral-shutdown-wait", daemon=True).start()

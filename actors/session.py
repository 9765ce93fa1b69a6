"""SessionActor: one per live session; the single owner of that session's state.

It owns the session's SessionRecord, its Lifecycle (status, turns waiting, a
stop asked for), the seqId counter, the provider handle, prompts held for the
turn's end, its Health state, approvals (``session_approvals``) and timers
(``session_timers``). Provider output arrives parsed; each step becomes one
store write whose commit publishes the events. It reports up by ``tell`` only;
urgent control (stop, approvals) reaches the provider through ``Control``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pykka

from corral.actors import convert, db, oplog
from corral.actors.board import SessionBoard
from corral.actors.control import Control, exit_reason
from corral.actors.health import HealthState
from corral.actors.messages import (
    Approved,
    Begin,
    Prompt,
    ProviderExited,
    ProviderOutput,
    Retire,
    SessionChanged,
    SessionDied,
    Started,
    StartFailed,
    Stop,
    StorageFailed,
    StorageRecovered,
)
from corral.actors.normalized import Normalized
from corral.actors.ports import (
    ExitReport,
    LaunchRequest,
    Outbox,
    ProviderHandle,
    ProviderLauncher,
    ReplyTo,
)
from corral.actors.record import SessionRecord
from corral.actors.scheduler import Generation, Scheduler, Tick
from corral.actors.session_approvals import SessionApprovals
from corral.actors.session_output import SessionOutput
from corral.actors.session_timers import SessionTimers
from corral.actors.session_write import step_ops
from corral.actors.settings import Settings
from corral.actors.stall import StallClock
from corral.actors.state import Lifecycle, is_terminal
from corral.actors.store import AddRaw, ForgetLive, Publication, StorageError, Write
from corral.protocol.errors import InternalError, ProviderUnavailable, RpcError

__all__ = ["Control", "SessionActor", "SessionDeps", "new_session_row"]

log = logging.getLogger("corral.session")

SHUTDOWN_REASON = "daemon stopped"
SHUTDOWN_WAIT_S = 12.0

Failure = tuple[RpcError, list[dict[str, Any]]]
"""Why no provider could take a prompt, and the transcript lines saying so."""


@dataclass
class SessionDeps:
    """What every session actor is wired to."""

    store: pykka.ActorRef[Any]
    registry: pykka.ActorRef[Any]
    scheduler: Scheduler
    outbox: Outbox
    launcher: ProviderLauncher
    board: SessionBoard = field(default_factory=SessionBoard)


def new_session_row(
    session_id: str, project_id: str, provider: str, model: str | None
) -> SessionRecord:
    """The record of a session about to start."""
    return SessionRecord.new(session_id, project_id, provider, model)


class SessionActor(SessionOutput, SessionApprovals, SessionTimers, pykka.ThreadingActor):
    def __init__(
        self,
        record: SessionRecord,
        options: dict[str, Any],
        settings: Settings,
        deps: SessionDeps,
        control: Control,
    ) -> None:
        super().__init__()
        self.rec = record
        self.life = Lifecycle(record.status)
        self.options = options
        self.settings = settings
        self.deps = deps
        self.control = control
        self.session_id = record.session_id
        self.project_id = record.project_id
        self.seq = record.last_seq_id
        self.epoch = 0
        self.proc: ProviderHandle | None = None
        self.proc_gen = Generation()
        self.queued: deque[str] = deque()  # prompts held until the turn ends
        self.stop_waiters: list[ReplyTo] = []
        self.tool_names: dict[str, str] = {}
        self.cost_base = 0.0
        self.stall = StallClock()
        self.health = HealthState()
        self.error_info: str | None = None
        self.stopped_by_client = False
        self.turn_began = time.monotonic()
        self.approvals: dict[str, dict[str, Any]] = {}
        self.pending_ops: list[Any] = []
        self.pending_pubs: list[Publication] = []
        self.cleanup_gen = Generation()
        self.last_retry_notice = 0.0
        self.storage_broken = False  # a step failed to store; its repair is not yet in
        self.cancelled_prompts = 0  # by the stop under way

    # ------------------------------------------------------------ lifecycle

    def on_start(self) -> None:
        if is_terminal(self.life.status):
            self._schedule_cleanup()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        log.error("session %s actor failed: %r", self.session_id, exception_value)
        oplog.session_error(self.project_id, self.session_id, "internal", repr(exception_value))
        self.control.stop_turn()
        self.control.close()
        self._tell(
            self.deps.registry,
            SessionDied(self.session_id, self.project_id, f"internal error: {exception_value!r}"),
        )

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ProviderOutput):
            if message.generation == self.proc_gen.current:
                self._on_output(message.items, message.done)
            else:
                message.done()
        elif isinstance(message, ProviderExited):
            if message.generation == self.proc_gen.current:
                self._on_exit(message.report)
        elif isinstance(message, Prompt):
            self._on_prompt(message)
        elif isinstance(message, Begin):
            self._on_begin(message)
        elif isinstance(message, Stop):
            self._on_stop(message.reply_to)
        elif isinstance(message, Approved):
            self._on_approved(message)
        elif isinstance(message, Tick):
            if message.kind == "approval":
                self._on_approval_tick(message)
            else:
                self._on_tick(message)
        elif isinstance(message, Retire):
            self._on_retire(message.reason)
        elif isinstance(message, StorageFailed):
            self._on_storage_failed(message)
        elif isinstance(message, StorageRecovered):
            self.storage_broken = False
        else:
            log.error("session %s: unexpected message %r", self.session_id, message)
        return None

    # ------------------------------------------------------------ requests

    def _on_begin(self, msg: Begin) -> None:
        self.epoch = msg.epoch
        user = self._user_message(msg.prompt)
        failure = self._run_prompt(msg.prompt, first=True)
        if failure is not None:
            self._commit([user, *failure[1]], status_changed=True)
            self._tell(
                self.deps.registry, StartFailed(self.session_id, self.project_id, failure[0])
            )
            return
        model = self.rec.model
        registry = self.deps.registry
        ids = self._ids()
        self._commit(
            [user],
            status_changed=True,
            then=lambda _r: self._tell(registry, Started(*ids, model)),
            on_fail=lambda exc: self._tell(registry, StartFailed(*ids, InternalError(str(exc)))),
        )

    def _on_prompt(self, msg: Prompt) -> None:
        if self.storage_broken:
            # Nothing of it could be kept: refused before anything changes.
            error = InternalError(self.rec.error or "database write failed")
            self.deps.outbox.reply(msg.reply_to, error=error)
            return
        self.epoch = msg.epoch
        self.cleanup_gen.next()
        user = self._user_message(msg.text)
        seq = self.seq
        failure = self._run_prompt(msg.text, first=False)
        if failure is not None:
            rpc_error, extra = failure
            self._commit(
                [user, *extra],
                status_changed=True,
                then=lambda _r: self.deps.outbox.reply(msg.reply_to, error=rpc_error),
            )
            return
        result = {"sessionId": self.session_id, "status": "running", "seqId": seq}
        outbox = self.deps.outbox
        self._commit(
            [user],
            status_changed=True,
            then=lambda _r: outbox.reply(msg.reply_to, result=result),
            on_fail=lambda exc: outbox.reply(msg.reply_to, error=InternalError(str(exc))),
        )

    def _run_prompt(self, text: str, *, first: bool) -> Failure | None:
        """Move to running and hand ``text`` to the provider (now, at the turn's end,
        or through a new launch). Returns a Failure when no provider could take it."""
        was_running = self.life.running
        self.life.prompted(first=first)
        self.rec.error = None
        self.error_info = None
        self.stopped_by_client = False
        self.turn_began = time.monotonic()
        self._snapshot_cost()
        if not was_running:
            self._arm_stall()
        if self.proc is not None:
            if was_running and not self.proc.capabilities.mid_turn_prompts:
                # Never kill a running turn for a follow-up: hand it over at its end.
                self.queued.append(text)
                return None
            if self.proc.send_prompt(text):
                return None
        return self._hand_over_by_launch(text)

    def _hand_over_by_launch(self, text: str) -> Failure | None:
        """Open the provider (again) for ``text``; a Failure if that fails."""
        try:
            self._launch(text)
        except RpcError as exc:
            return self._launch_failed(exc)
        except OSError as exc:
            return self._launch_failed(
                ProviderUnavailable(f"cannot start provider: {exc}", detail=str(exc))
            )
        except Exception as exc:
            log.exception("session %s: launch failed", self.session_id)
            return self._launch_failed(InternalError(f"cannot start provider: {exc}"))
        return None

    def _launch_failed(self, exc: RpcError) -> Failure:
        self.queued.clear()
        self.life.launch_failed()
        self.rec.error = exc.message
        oplog.session_error(self.project_id, self.session_id, exc.reason, exc.message)
        return exc, [self._system_message(exc.message)]

    def _launch(self, prompt: str) -> None:
        gen = self.proc_gen.next()
        me = self.actor_ref
        resume_id = self.rec.provider_session_id if self.seq > 1 else None

        def on_messages(items: list[Normalized], done: Callable[[], None]) -> None:
            try:
                me.tell(ProviderOutput(gen, items, done))
            except pykka.ActorDeadError:
                done()

        def on_exit(report: ExitReport) -> None:
            try:
                me.tell(ProviderExited(gen, report))
            except pykka.ActorDeadError:
                pass

        request = LaunchRequest(
            session_id=self.session_id,
            project_id=self.project_id,
            provider=self.rec.provider,
            options=self.options,
            prompt=prompt,
            resume_id=resume_id,
            settings=dict(self.settings.values),
            on_messages=on_messages,
            on_exit=on_exit,
        )
        if self.proc is not None:
            self.proc.close()
        self.proc = self.deps.launcher.launch(request)
        self.control.set(self.proc)
        pid, cwd = self.proc.pid, self.options["cwd"]
        oplog.session_started(self.project_id, self.session_id, self.rec.provider, pid, cwd)

    def _on_stop(self, reply_to: ReplyTo) -> None:
        if not self.life.stop_requested():
            self.deps.outbox.reply(
                reply_to, result={"sessionId": self.session_id, "status": self.life.status}
            )
            return
        # A stop cancels the prompts waiting for the turn's end: held here, or
        # already handed to a provider that queues them itself (that process is
        # closed once the stop is complete, so nothing runs after it; the next
        # prompt resumes the conversation).
        self.cancelled_prompts = max(0, self.life.pending_turns - 1)
        self.queued.clear()
        self.stop_waiters.append(reply_to)
        # pending approvals are denied before the interrupt (by the registry's
        # urgent path already when it stopped the turn; here for the others)
        denied = self._resolve_all("stop", "stopped by a client")
        if denied:
            self._commit(denied, health=True)
        if self.proc is None:
            messages: list[dict[str, Any]] = []
            self._stopped(messages)
            self._commit(messages, status_changed=True)
        else:
            self.proc.stop_turn()

    def _stopped(self, messages: list[dict[str, Any]]) -> None:
        """The stop asked for is complete: ``done`` with a "stopped" note (and one for
        the prompts it cancelled, whose process is closed if it holds them)."""
        self.life.stopped()
        self.stopped_by_client = True
        self.health.turn_ended(db.now_ms())
        self.rec.error = None
        messages.append(self._system_message("stopped"))
        if self.cancelled_prompts:
            note = f"{self.cancelled_prompts} queued prompt(s) cancelled by the stop"
            messages.append(self._system_message(note))
            self.cancelled_prompts = 0
            if self.proc is not None and self.proc.capabilities.mid_turn_prompts:
                self._drop_provider()
        self._became_terminal()

    def _reply_stop_waiters(self) -> None:
        waiters, self.stop_waiters = self.stop_waiters, []
        result = {"sessionId": self.session_id, "status": self.life.status}
        for reply_to in waiters:
            self.deps.outbox.reply(reply_to, result=result)

    def _on_exit(self, report: ExitReport) -> None:
        self.proc = None
        self.control.set(None)
        if self.life.running:
            messages = self._resolve_all("stop", "the provider ended") if self.approvals else []
            if self.life.stopping:
                self._stopped(messages)
            else:
                reason = exit_reason(report)
                self.life.process_ended(crashed=report.returncode not in (0, None))
                self.rec.error = reason
                messages.append(self._system_message(reason))
                self._became_terminal()
            self._commit(messages, status_changed=True)
        elif self.stop_waiters:
            self._reply_stop_waiters()
        if report.stderr_tail and report.returncode not in (0, None):
            log.info("session %s provider stderr: %s", self.session_id, report.stderr_tail[-500:])

    def _on_storage_failed(self, msg: StorageFailed) -> None:
        """A step could not be stored: stop the provider (its output can no longer
        be kept), forget what was numbered but not stored (seqIds stay gap-free)
        and end in ``error``; the step saying so is retried by the store until
        it is in (writing then resumes by itself)."""
        if self.storage_broken:
            return
        self.storage_broken = True
        self._drop_provider()
        self.queued.clear()
        error = f"database write failed: {msg.reason}"
        waiters, self.stop_waiters = self.stop_waiters, []
        for reply_to in waiters:
            self.deps.outbox.reply(reply_to, error=InternalError(error))
        if msg.committed_seq is None:
            # Nothing was ever stored: the start fails (the registry retires it).
            oplog.session_error(self.project_id, self.session_id, "storage", error)
            return
        lost = self.seq - msg.committed_seq
        self.seq = msg.committed_seq
        self.rec.message_count = max(0, self.rec.message_count - lost)
        self.pending_ops, self.pending_pubs = [], []
        lines = self._resolve_all("stop", error) if self.approvals else []
        self.life.storage_failed()
        self.rec.error = error
        self.error_info = None
        lines.append(self._system_message(error))
        self._became_terminal()
        me = self.actor_ref
        self._commit(
            lines,
            status_changed=True,
            repair=True,
            then=lambda _r: self._tell(me, StorageRecovered()),
        )

    def _drop_provider(self) -> None:
        """Close the provider; anything it still sends is ignored."""
        self.proc_gen.next()
        self.stall.stop()
        if self.proc is not None:
            self.proc.close()
            self.proc = None
        self.control.set(None)

    def _on_retire(self, reason: str) -> None:
        if self.life.running:
            # Daemon shutdown: the turn is cut short; a later prompt can resume it.
            lines = self._resolve_all("stop", f"interrupted: {reason}") if self.approvals else []
            self.life.interrupted()
            self.rec.error = f"interrupted: {reason}"
            lines.append(self._system_message(self.rec.error))
            self._commit(lines, status_changed=True)
        self.stall.stop()
        self.cleanup_gen.next()
        self.proc_gen.next()
        if self.proc is not None:
            self.proc.close()
            # At shutdown the daemon is about to exit and its ladder threads die with
            # it: see the process gone (bounded) rather than leave an orphan.
            if reason == SHUTDOWN_REASON and not self.proc.wait_exit(SHUTDOWN_WAIT_S):
                log.error(
                    "session %s: provider pid %s outlived the stop ladder",
                    self.session_id,
                    self.proc.pid,
                )
            self.proc = None
        self.control.set(None)
        self._reply_stop_waiters()
        self._tell(self.deps.store, ForgetLive(self.session_id))
        self.stop()

    # ------------------------------------------------------------ helpers

    def _became_terminal(self) -> None:
        self.stall.stop()
        self._schedule_cleanup()
        self._log_turn_end()

    def _user_message(self, text: str) -> dict[str, Any]:
        self.seq += 1
        return convert.user_message(text, self.seq, db.now_ms())

    def _system_message(self, text: str) -> dict[str, Any]:
        self.seq += 1
        return convert.system_message(text, self.seq, db.now_ms())

    def _ids(self) -> tuple[str, str]:
        return self.session_id, self.project_id

    def _changed(self, status_changed: bool) -> SessionChanged:
        return SessionChanged(
            self.session_id,
            self.project_id,
            self.life.status,
            self.rec.error,
            self.rec.to_wire(),
            status_changed,
            self.epoch,
            self.health.snapshot(),
            self.error_info,
            self.stopped_by_client and status_changed,
        )

    def _report(self, *, status_changed: bool) -> None:
        self._tell(self.deps.registry, self._changed(status_changed))

    def _commit(
        self,
        messages: list[dict[str, Any]],
        *,
        status_changed: bool = False,
        cost_changed: bool = False,
        raws: list[AddRaw] | None = None,
        then: Callable[[list[Any]], None] | None = None,
        on_error: Callable[[], None] | None = None,
        on_fail: Callable[[StorageError], None] | None = None,
        health: bool = False,
        repair: bool = False,
    ) -> None:
        """Store this step (one write); its events go out after the commit, then the
        registry hears of status and cost changes and finished stops are answered.
        If it cannot be stored, ``on_fail`` answers whoever waits on it and the
        session hears :class:`StorageFailed`."""
        rec = self.rec
        rec.status = self.life.status
        rec.updated_at = db.now_ms()
        rec.message_count += len(messages)
        rec.last_seq_id = self.seq
        ops, publish = step_ops(
            rec,
            self.options,
            messages,
            raws or [],
            status_changed=status_changed,
            cost_changed=cost_changed,
        )
        ops += self.pending_ops  # approvals requested or resolved in this step
        publish += self.pending_pubs
        self.pending_ops, self.pending_pubs = [], []
        report = status_changed or cost_changed or health
        change = self._changed(status_changed)
        waiters: list[ReplyTo] = []
        if status_changed and is_terminal(rec.status) and self.stop_waiters:
            waiters, self.stop_waiters = self.stop_waiters, []
        registry, board = self.deps.registry, self.deps.board
        outbox = self.deps.outbox
        stop_result = {"sessionId": self.session_id, "status": rec.status}

        def tell_registry() -> None:
            board.committed(change.project_id, change.session_id, change.summary)
            if report:
                registry.tell(change)

        def after(results: list[Any]) -> None:
            for reply_to in waiters:
                outbox.reply(reply_to, result=stop_result)
            if then is not None:
                then(results)

        me = self.actor_ref

        def failed(exc: Exception) -> None:
            for reply_to in waiters:
                outbox.reply(reply_to, error=InternalError(str(exc)))
            if on_error is not None:
                on_error()
            if isinstance(exc, StorageError):
                if on_fail is not None:
                    on_fail(exc)
                me.tell(StorageFailed(exc.reason, exc.committed_seq))

        self.deps.store.tell(
            Write(
                ops,
                publish,
                after,
                tell_registry,
                failed,
                (self.session_id, self.seq),
                repair=repair,
            )
        )

    @staticmethod
    def _tell(ref: pykka.ActorRef[Any], message: Any) -> None:
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            pass

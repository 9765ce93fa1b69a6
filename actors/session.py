"""SessionActor: one per live session; the single owner of that session's state.

It owns the status (through the state machine in ``actors/state.py``), model,
cost and tokens, the seqId counter, the provider process handle, the stall
timer and the cleanup timer. Provider output arrives already parsed (the
reader thread runs the stream parser); the actor assigns seqIds, converts to
AgentMessages and hands one :class:`~actors.store.Write` per step to the
StoreActor, whose commit publishes the events. Upward reports go to the
registry by ``tell`` only.

Stopping is urgent and must not wait behind queued provider output, so the
registry calls :class:`Control` directly (interrupt + signal ladder on the
process) and then tells the actor, which finishes the bookkeeping when the
turn or the process ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pykka

from corral.actors import convert, db
from corral.actors.messages import (
    Begin,
    Notify,
    Prompt,
    ProviderExited,
    ProviderOutput,
    RequestRetire,
    Retire,
    SessionChanged,
    SessionDied,
    Started,
    StartFailed,
    Stop,
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
from corral.actors.scheduler import Generation, Scheduler, Tick
from corral.actors.settings import Settings
from corral.actors.state import IllegalTransition, SessionEvent, is_terminal, transition
from corral.actors.store import AddMessages, AddRaw, ForgetLive, Publication, SaveSession, Write
from corral.protocol.errors import InternalError, ProviderUnavailable, RpcError

log = logging.getLogger("corral.session")

MAX_TOOL_NAMES = 4096
SHUTDOWN_REASON = "daemon stopped"
SHUTDOWN_WAIT_S = 12.0
RETRY_NOTICE_INTERVAL_S = 10.0


@dataclass
class SessionDeps:
    """What every session actor is wired to."""

    store: pykka.ActorRef[Any]
    registry: pykka.ActorRef[Any]
    scheduler: Scheduler
    outbox: Outbox
    launcher: ProviderLauncher


class Control:
    """Thread-safe access to the session's current process for urgent control."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handle: ProviderHandle | None = None

    def set(self, handle: ProviderHandle | None) -> None:
        with self._lock:
            self._handle = handle

    def stop_turn(self) -> None:
        with self._lock:
            handle = self._handle
        if handle is not None:
            handle.stop_turn()

    def close(self) -> None:
        with self._lock:
            handle = self._handle
        if handle is not None:
            handle.close()


def new_session_row(
    session_id: str, project_id: str, provider: str, model: str | None
) -> dict[str, Any]:
    now = db.now_ms()
    return {
        "sessionId": session_id,
        "projectId": project_id,
        "provider": provider,
        "status": "idle",
        "model": model,
        "costUsd": 0.0,
        "inputTokens": 0,
        "outputTokens": 0,
        "cacheReadTokens": 0,
        "cacheCreationTokens": 0,
        "createdAt": now,
        "updatedAt": now,
        "messageCount": 0,
        "lastSeqId": 0,
    }


def summary_of(session: dict[str, Any], *, stalled: bool = False) -> dict[str, Any]:
    """What the registry keeps of a live session for health reports."""
    return {
        "sessionId": session["sessionId"],
        "status": session["status"],
        "costUsd": session["costUsd"],
        "inputTokens": session["inputTokens"],
        "outputTokens": session["outputTokens"],
        "messageCount": session["messageCount"],
        "lastActivity": session["updatedAt"],
        "stalled": stalled,
    }


class SessionActor(pykka.ThreadingActor):
    def __init__(
        self,
        session: dict[str, Any],
        options: dict[str, Any],
        settings: Settings,
        deps: SessionDeps,
        control: Control,
    ) -> None:
        super().__init__()
        self.s = dict(session)
        self.options = options
        self.settings = settings
        self.deps = deps
        self.control = control
        self.session_id: str = session["sessionId"]
        self.project_id: str = session["projectId"]
        self.seq: int = int(session.get("lastSeqId", 0))
        self.epoch = 0
        self.proc: ProviderHandle | None = None
        self.proc_gen = Generation()
        self.pending_turns = 0
        self.queued: deque[str] = deque()  # prompts held until the turn ends
        self.stopping = False
        self.stop_waiters: list[ReplyTo] = []
        self.tool_names: dict[str, str] = {}
        self.cost_base = 0.0
        self.last_activity = time.monotonic()
        self.stalled = False
        self.stall_gen = Generation()
        self.cleanup_gen = Generation()
        self.last_retry_notice = 0.0

    # ------------------------------------------------------------ lifecycle

    def on_start(self) -> None:
        if is_terminal(self.s["status"]):
            self._schedule_cleanup()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        log.error("session %s actor failed: %r", self.session_id, exception_value)
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
        elif isinstance(message, Tick):
            self._on_tick(message)
        elif isinstance(message, Retire):
            self._on_retire(message.reason)
        else:
            log.error("session %s: unexpected message %r", self.session_id, message)
        return None

    # ------------------------------------------------------------ requests

    def _on_begin(self, msg: Begin) -> None:
        self.epoch = msg.epoch
        user = self._user_message(msg.prompt)
        error = self._run_prompt(msg.prompt, SessionEvent.START)
        if error is not None:
            self._commit([user, *error[1]], status_changed=True)
            self._tell(self.deps.registry, StartFailed(self.session_id, self.project_id, error[0]))
            return
        model = self.s.get("model")
        self._commit(
            [user],
            status_changed=True,
            then=lambda _r: self._tell(
                self.deps.registry, Started(self.session_id, self.project_id, model)
            ),
        )

    def _on_prompt(self, msg: Prompt) -> None:
        self.epoch = msg.epoch
        self.cleanup_gen.next()
        user = self._user_message(msg.text)
        seq = self.seq
        error = self._run_prompt(msg.text, SessionEvent.PROMPT)
        if error is not None:
            rpc_error, extra = error
            self._commit(
                [user, *extra],
                status_changed=True,
                then=lambda _r: self.deps.outbox.reply(msg.reply_to, error=rpc_error),
            )
            return
        result = {"sessionId": self.session_id, "status": "running", "seqId": seq}
        self._commit(
            [user],
            status_changed=True,
            then=lambda _r: self.deps.outbox.reply(msg.reply_to, result=result),
        )

    def _run_prompt(
        self, text: str, event: SessionEvent
    ) -> tuple[RpcError, list[dict[str, Any]]] | None:
        """Move to running and hand `text` to a live process or a new one.

        Returns (error, extra messages) when no process could take the prompt."""
        was_running = self.s["status"] == "running"
        self._transition(event)
        self.s.pop("error", None)
        self.stopping = False
        self.pending_turns += 1
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

    def _hand_over_by_launch(self, text: str) -> tuple[RpcError, list[dict[str, Any]]] | None:
        """Start a (new) provider process for ``text``; (error, messages) if that fails."""
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

    def _launch_failed(self, exc: RpcError) -> tuple[RpcError, list[dict[str, Any]]]:
        self.pending_turns = 0
        self.queued.clear()
        self._transition(SessionEvent.PROCESS_CRASHED)
        self.s["error"] = exc.message
        return exc, [self._system_message(exc.message)]

    def _launch(self, prompt: str) -> None:
        gen = self.proc_gen.next()
        me = self.actor_ref
        resume_id = self.s.get("providerSessionId") if self.seq > 1 else None

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
            provider=self.s["provider"],
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

    def _on_stop(self, reply_to: ReplyTo) -> None:
        if self.s["status"] != "running":
            self.deps.outbox.reply(
                reply_to, result={"sessionId": self.session_id, "status": self.s["status"]}
            )
            return
        self.stopping = True
        self.queued.clear()  # a stop cancels the prompts waiting for the turn's end
        self.stop_waiters.append(reply_to)
        if self.proc is None:
            self._finish_stopped([])
        else:
            self.proc.stop_turn()

    def _finish_stopped(self, messages: list[dict[str, Any]]) -> None:
        self.pending_turns = 0
        self._transition(SessionEvent.STOPPED)
        self.s.pop("error", None)
        messages.append(self._system_message("stopped"))
        self._became_terminal()
        self._commit(messages, status_changed=True)

    def _reply_stop_waiters(self) -> None:
        waiters, self.stop_waiters = self.stop_waiters, []
        result = {"sessionId": self.session_id, "status": self.s["status"]}
        for reply_to in waiters:
            self.deps.outbox.reply(reply_to, result=result)

    # ------------------------------------------------------------ provider output

    def _on_output(self, items: list[Normalized], done: Callable[[], None]) -> None:
        now = db.now_ms()
        self.last_activity = time.monotonic()
        stall_cleared = False
        if self.stalled:
            self.stalled = False
            stall_cleared = True
        messages: list[dict[str, Any]] = []
        raws: list[AddRaw] = []
        status_changed = False
        cost_changed = False
        for n in items:
            kind = n.kind
            if kind == "init":
                if n.model:
                    self.s["model"] = n.model
                if n.provider_session_id:
                    previous = self.s.get("providerSessionId")
                    if previous is not None and previous != n.provider_session_id:
                        # A new provider-side conversation: its cumulative cost restarts.
                        self.cost_base = float(self.s.get("costUsd", 0.0))
                    self.s["providerSessionId"] = n.provider_session_id
            elif kind == "tool_call" and n.tool_id and n.tool_name:
                if len(self.tool_names) >= MAX_TOOL_NAMES:
                    self.tool_names.pop(next(iter(self.tool_names)))
                self.tool_names[n.tool_id] = n.tool_name
            elif kind == "cost":
                self._apply_cost(n)
                cost_changed = True
            elif kind == "status":
                self._maybe_retry_notice(n)
            elif kind == "unknown":
                raw = n.raw or {}
                raws.append(
                    AddRaw(self.session_id, now, str(raw.get("type", "?"))[:64], _dump(raw))
                )
            elif kind == "error" and self.stopping:
                # The provider's report of the interrupt we asked for is not an error.
                continue
            elif kind == "turn_end":
                if self._on_turn_end(n, messages):
                    status_changed = True
                continue
            if convert.is_displayed(n):
                self.seq += 1
                messages.append(
                    convert.to_agent_message(n, self.seq, now, tool_names=self.tool_names)
                )
        if messages or raws or status_changed or cost_changed:
            self._commit(
                messages,
                status_changed=status_changed,
                cost_changed=cost_changed,
                raws=raws,
                then=lambda _r: done(),
                on_error=done,
            )
        else:
            done()
        if stall_cleared and not (status_changed or cost_changed):
            self._report(status_changed=False)

    def _on_turn_end(self, n: Normalized, messages: list[dict[str, Any]]) -> bool:
        if self.s["status"] != "running":
            return False
        self.pending_turns = max(0, self.pending_turns - 1)
        if self.stopping:
            self.pending_turns = 0
            self._transition(SessionEvent.STOPPED)
            self.s.pop("error", None)
            self.seq += 1
            messages.append(convert.system_message("stopped", self.seq, db.now_ms()))
        elif n.is_error:
            self.pending_turns = 0
            if self.queued:
                self.seq += 1
                note = f"{len(self.queued)} queued prompt(s) not sent: the turn failed"
                messages.append(convert.system_message(note, self.seq, db.now_ms()))
                self.queued.clear()
            self._transition(SessionEvent.TURN_FAILED)
            self.s["error"] = n.text or "the provider reported an error"
        elif self.pending_turns == 0:
            self._transition(SessionEvent.TURN_DONE)
            self.s.pop("error", None)
        elif not (self.queued and self._hand_over_queued(messages)):
            return False
        self._became_terminal()
        return True

    def _hand_over_queued(self, messages: list[dict[str, Any]]) -> bool:
        """The turn ended and a prompt waits: give it to the provider (its user
        message was recorded when it arrived). True if that failed, which ended
        the session in ``error``."""
        text = self.queued.popleft()
        if self.proc is not None and self.proc.send_prompt(text):
            return False
        error = self._hand_over_by_launch(text)
        if error is None:
            return False
        messages.extend(error[1])
        return True

    def _apply_cost(self, n: Normalized) -> None:
        if n.cost_usd is not None:
            if n.cost_cumulative:
                # Never let a failed resume (which reports 0) wipe what was spent.
                total = max(float(self.s["costUsd"]), self.cost_base + n.cost_usd)
                self.s["costUsd"] = round(total, 10)
            else:
                self.s["costUsd"] = round(float(self.s["costUsd"]) + n.cost_usd, 10)
        self.s["inputTokens"] += n.input_tokens
        self.s["outputTokens"] += n.output_tokens
        self.s["cacheReadTokens"] += n.cache_read_tokens
        self.s["cacheCreationTokens"] += n.cache_creation_tokens

    def _maybe_retry_notice(self, n: Normalized) -> None:
        if n.status != "retrying" or not n.text:
            return
        now = time.monotonic()
        if now - self.last_retry_notice < RETRY_NOTICE_INTERVAL_S:
            return
        self.last_retry_notice = now
        self._tell(
            self.deps.registry,
            Notify("warning", "system", n.text, self.session_id, self.project_id),
        )

    def _on_exit(self, report: ExitReport) -> None:
        self.proc = None
        self.control.set(None)
        if self.s["status"] == "running":
            if self.stopping:
                self._finish_stopped([])
            else:
                self.pending_turns = 0
                reason = _exit_reason(report)
                self._transition(
                    SessionEvent.PROCESS_CRASHED
                    if report.returncode not in (0, None)
                    else SessionEvent.PROCESS_EXITED
                )
                self.s["error"] = reason
                self._became_terminal()
                self._commit([self._system_message(reason)], status_changed=True)
        elif self.stop_waiters:
            self._reply_stop_waiters()
        if report.stderr_tail and report.returncode not in (0, None):
            log.info("session %s provider stderr: %s", self.session_id, report.stderr_tail[-500:])

    # ------------------------------------------------------------ timers

    def _arm_stall(self) -> None:
        self.last_activity = time.monotonic()
        self.stalled = False
        gen = self.stall_gen.next()
        timeout = self.settings.int("stall_timeout_ms") / 1000.0
        self.deps.scheduler.call_later(timeout, self.actor_ref, Tick("stall", gen))

    def _schedule_cleanup(self) -> None:
        gen = self.cleanup_gen.next()
        grace = self.settings.int("cleanup_grace_ms") / 1000.0
        self.deps.scheduler.call_later(grace, self.actor_ref, Tick("cleanup", gen))

    def _on_tick(self, tick: Tick) -> None:
        if tick.kind == "stall" and self.stall_gen.is_current(tick.generation):
            if self.s["status"] != "running":
                return
            timeout = self.settings.int("stall_timeout_ms") / 1000.0
            idle = time.monotonic() - self.last_activity
            if idle >= timeout:
                if not self.stalled:
                    self.stalled = True
                    secs = int(idle)
                    self._tell(
                        self.deps.registry,
                        Notify(
                            "warning",
                            "agent_stalled",
                            f"{self.project_id}: no output from the agent for {secs}s",
                            self.session_id,
                            self.project_id,
                        ),
                    )
                    self._report(status_changed=False)
                delay = timeout
            else:
                delay = timeout - idle
            self.deps.scheduler.call_later(
                max(delay, 0.05), self.actor_ref, Tick("stall", tick.generation)
            )
        elif (
            tick.kind == "cleanup"
            and self.cleanup_gen.is_current(tick.generation)
            and is_terminal(self.s["status"])
        ):
            self._tell(
                self.deps.registry,
                RequestRetire(self.session_id, self.project_id, self.epoch),
            )

    def _on_retire(self, reason: str) -> None:
        if self.s["status"] == "running":
            # Daemon shutdown: the turn is cut short; a later prompt can resume it.
            self._transition(SessionEvent.INTERRUPTED)
            self.s["error"] = f"interrupted: {reason}"
            self.pending_turns = 0
            self._commit([self._system_message(self.s["error"])], status_changed=True)
        self.stall_gen.next()
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

    def _transition(self, event: SessionEvent) -> None:
        try:
            self.s["status"] = transition(self.s["status"], event)
        except IllegalTransition:
            log.warning(
                "session %s: ignored %s in status %s", self.session_id, event.name, self.s["status"]
            )

    def _became_terminal(self) -> None:
        self.stall_gen.next()
        self.stalled = False
        self._schedule_cleanup()

    def _user_message(self, text: str) -> dict[str, Any]:
        self.seq += 1
        return convert.user_message(text, self.seq, db.now_ms())

    def _system_message(self, text: str) -> dict[str, Any]:
        self.seq += 1
        return convert.system_message(text, self.seq, db.now_ms())

    def _summary(self) -> dict[str, Any]:
        return summary_of(self.s, stalled=self.stalled)

    def _report(self, *, status_changed: bool) -> None:
        self._tell(
            self.deps.registry,
            SessionChanged(
                self.session_id,
                self.project_id,
                self.s["status"],
                self.s.get("error"),
                self._summary(),
                status_changed,
                self.epoch,
            ),
        )

    def _commit(
        self,
        messages: list[dict[str, Any]],
        *,
        status_changed: bool = False,
        cost_changed: bool = False,
        raws: list[AddRaw] | None = None,
        then: Any = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        s = self.s
        s["updatedAt"] = db.now_ms()
        s["messageCount"] = int(s.get("messageCount", 0)) + len(messages)
        s["lastSeqId"] = self.seq
        ops: list[Any] = [SaveSession(dict(s), self.options)]
        publish: list[Publication] = []
        if messages:
            ops.append(AddMessages(self.session_id, messages))
            publish.append(
                Publication(
                    "agent.message",
                    {"sessionId": self.session_id, "messages": messages},
                    self.project_id,
                )
            )
        if raws:
            ops.extend(raws)
        if cost_changed:
            publish.append(
                Publication(
                    "agent.cost",
                    {
                        "sessionId": self.session_id,
                        "costUsd": s["costUsd"],
                        "inputTokens": s["inputTokens"],
                        "outputTokens": s["outputTokens"],
                        "cacheReadTokens": s["cacheReadTokens"],
                        "cacheCreationTokens": s["cacheCreationTokens"],
                    },
                    self.project_id,
                )
            )
        if status_changed:
            data: dict[str, Any] = {"sessionId": self.session_id, "status": s["status"]}
            if s.get("error"):
                data["error"] = s["error"]
            publish.append(Publication("agent.status", data, self.project_id))
        report = status_changed or cost_changed
        terminal_stop = status_changed and is_terminal(s["status"]) and bool(self.stop_waiters)
        change = SessionChanged(
            self.session_id,
            self.project_id,
            s["status"],
            s.get("error"),
            self._summary(),
            status_changed,
            self.epoch,
        )
        waiters = self.stop_waiters if terminal_stop else []
        if terminal_stop:
            self.stop_waiters = []
        registry = self.deps.registry
        outbox = self.deps.outbox
        stop_result = {"sessionId": self.session_id, "status": s["status"]}

        def after(results: list[Any]) -> None:
            if report:
                registry.tell(change)
            for reply_to in waiters:
                outbox.reply(reply_to, result=stop_result)
            if then is not None:
                then(results)

        def failed(exc: Exception) -> None:
            for reply_to in waiters:
                outbox.reply(reply_to, error=InternalError("could not store the session"))
            if on_error is not None:
                on_error()

        self.deps.store.tell(
            Write(ops, publish, then=after, on_error=failed, live_seq=(self.session_id, self.seq))
        )

    @staticmethod
    def _tell(ref: pykka.ActorRef[Any], message: Any) -> None:
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            pass


def _exit_reason(report: ExitReport) -> str:
    if report.signal is not None:
        head = f"provider killed by signal {report.signal}"
    else:
        head = f"provider exited with code {report.returncode}"
    tail = [line for line in report.stderr_tail.strip().splitlines() if line.strip()]
    return f"{head}: {tail[-1][:500]}" if tail else head


def _dump(raw: dict[str, Any]) -> str:
    import orjson

    try:
        return orjson.dumps(raw, default=str).decode()[:65536]
    except TypeError:
        return repr(raw)[:65536]

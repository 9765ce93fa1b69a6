"""A session actor's timers and notices: the stall clock, the cleanup grace, the log.

A mixin of :class:`~corral.actors.session.SessionActor` (these run on the
session's thread): the stall timer re-arms itself while the session runs and
tells the registry once when silence becomes a stall (naming a hung tool);
the cleanup timer asks the registry to retire a finished session after the
grace; provider retries are noticed at most once per RETRY_NOTICE_INTERVAL_S;
the end of each turn is one operator log line.
Every tick carries its generation, so a cancelled timer's late tick is ignored.
"""

from __future__ import annotations

import time
from typing import Any

import pykka

from corral.actors import oplog
from corral.actors.error_class import classify
from corral.actors.health import HealthState
from corral.actors.messages import Notify, RequestRetire
from corral.actors.normalized import Normalized
from corral.actors.record import SessionRecord
from corral.actors.scheduler import Generation, Tick
from corral.actors.settings import Settings
from corral.actors.stall import StallClock
from corral.actors.state import Lifecycle, is_terminal

RETRY_NOTICE_INTERVAL_S = 10.0


class SessionTimers:
    # provided by SessionActor
    actor_ref: pykka.ActorRef[Any]
    deps: Any
    settings: Settings
    life: Lifecycle
    stall: StallClock
    health: HealthState
    cleanup_gen: Generation
    epoch: int
    session_id: str
    project_id: str
    last_retry_notice: float
    rec: SessionRecord
    stopped_by_client: bool
    error_info: str | None
    turn_began: float

    def _ids(self) -> tuple[str, str]:
        return self.session_id, self.project_id

    def _tell(self, ref: pykka.ActorRef[Any], message: Any) -> None:
        raise NotImplementedError

    def _report(self, *, status_changed: bool) -> None:
        raise NotImplementedError

    def _arm_stall(self) -> None:
        gen = self.stall.arm()
        timeout = self.settings.int("stall_timeout_ms") / 1000.0
        self.deps.scheduler.call_later(timeout, self.actor_ref, Tick("stall", gen))

    def _schedule_cleanup(self) -> None:
        gen = self.cleanup_gen.next()
        grace = self.settings.int("cleanup_grace_ms") / 1000.0
        self.deps.scheduler.call_later(grace, self.actor_ref, Tick("cleanup", gen))

    def _on_tick(self, tick: Tick) -> None:
        if tick.kind == "stall" and self.stall.is_current(tick.generation):
            if self.life.running:
                self._check_stall(tick.generation)
        elif (
            tick.kind == "cleanup"
            and self.cleanup_gen.is_current(tick.generation)
            and is_terminal(self.life.status)
        ):
            self._tell(
                self.deps.registry,
                RequestRetire(self.session_id, self.project_id, self.epoch),
            )

    def _check_stall(self, generation: int) -> None:
        became, delay, idle = self.stall.check(self.settings.int("stall_timeout_ms") / 1000.0)
        if became:
            self.health.set_stalled(True)
            oplog.session_stalled(self.project_id, self.session_id, idle)
            tool = self.health.active_tool()
            what = f"tool {tool[0]} has run for {idle}s with no output" if tool else None
            text = what or f"no output from the agent for {idle}s"
            self._tell(
                self.deps.registry,
                Notify("warning", "agent_stalled", f"{self.project_id}: {text}", *self._ids()),
            )
            self._report(status_changed=False)
        self.deps.scheduler.call_later(delay, self.actor_ref, Tick("stall", generation))

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

    def _log_turn_end(self) -> None:
        rec, ids = self.rec, (self.project_id, self.session_id)  # the log names the project first
        if self.stopped_by_client:
            oplog.session_stopped(*ids)
        elif self.life.status == "error":
            oplog.session_error(
                *ids, classify(rec.error, provider_code=self.error_info)[0], rec.error or ""
            )
        took = time.monotonic() - self.turn_began
        oplog.turn_ended(
            *ids, self.life.status, rec.cost_usd, rec.input_tokens, rec.output_tokens, took
        )

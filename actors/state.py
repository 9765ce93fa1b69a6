"""The session status state machine: every status, event and legal transition.

A session's status is one of ``idle``, ``running``, ``done`` or ``error``
(wire contract §3); ``done`` and ``error`` are terminal until a new prompt
explicitly continues the session. The SessionActor feeds every lifecycle fact
to :func:`transition` as a :class:`SessionEvent`; anything not in
:data:`TRANSITIONS` raises :class:`IllegalTransition`, so a surprising order of
events is noticed instead of silently corrupting the status.

Events:

* ``START``: the provider process was launched for a prompt (first prompt, or
  a relaunch with resume of a finished session).
* ``PROMPT``: a prompt was sent to the session (while running: a queued
  follow-up).
* ``TURN_DONE`` / ``TURN_FAILED``: the provider ended the turn OK / with an error.
* ``STOPPED``: a stop was requested and the turn ended.
* ``PROCESS_EXITED``: the provider process exited cleanly. Harmless when the
  session is not running; while running it means the turn never finished.
* ``PROCESS_CRASHED``: the provider process died, was killed or failed to launch.
* ``RESTORED``: a stored done/error session was made current again.
* ``INTERRUPTED``: a daemon restart or shutdown found the session running.
* ``STORAGE_FAILED``: a step of the session could not be stored (a full disk):
  the session ends in ``error`` from any status, its provider stopped.
* ``TURN_STARTED``: the provider started a turn of its own accord (its stream
  shows a new turn after the last one ended): the stream is the truth, so the
  session is running again until that turn's end.

Decisions beyond the obvious:

* A dead process fails a running (or never started) session, but not a
  finished one: ``done + PROCESS_CRASHED -> done`` (an idle process kept for
  follow-ups may be reaped or killed at any time).
* Late turn endings are tolerated only where they cannot change the outcome:
  ``done + TURN_DONE -> done`` and ``error + TURN_FAILED -> error`` (duplicates),
  and ``done + TURN_FAILED -> done``: the first ending of a turn wins. Typically
  a stopped turn (``STOPPED`` made it ``done``) is later reported by the
  provider as an interrupted, failed turn; that must not turn a user's stop
  into an error. ``error + TURN_DONE`` stays illegal: an error is never
  silently healed by a stray success.
* ``INTERRUPTED`` is only legal while running; ``idle`` accepts no ``PROMPT``
  (the first prompt arrives with ``START``).

The table (rows: event, columns: current status, cells: the new status; ``-``
is illegal), as produced by :func:`describe_table`:

| event | idle | running | done | error |
|---|---|---|---|---|
| START | running | - | running | running |
| PROMPT | - | running | running | running |
| TURN_DONE | - | done | done | - |
| TURN_FAILED | - | error | done | error |
| STOPPED | done | done | done | error |
| PROCESS_EXITED | - | error | done | error |
| PROCESS_CRASHED | error | error | done | error |
| RESTORED | - | - | done | error |
| INTERRUPTED | - | error | - | - |
| STORAGE_FAILED | error | error | error | error |
| TURN_STARTED | - | running | running | running |
"""

from __future__ import annotations

import logging
import os
from enum import StrEnum
from typing import Final, Literal, get_args

__all__ = [
    "STATUSES",
    "TERMINAL",
    "TRANSITIONS",
    "IllegalTransition",
    "Lifecycle",
    "SessionEvent",
    "Status",
    "can_transition",
    "describe_table",
    "is_terminal",
    "legal_events",
    "transition",
]

Status = Literal["idle", "running", "done", "error"]

STATUSES: Final[tuple[Status, ...]] = get_args(Status)
"""All statuses, in lifecycle order."""

TERMINAL: Final[frozenset[Status]] = frozenset({"done", "error"})
"""Statuses a session stays in until a new prompt continues it."""


class SessionEvent(StrEnum):
    """A lifecycle fact about a session (see the module documentation)."""

    START = "start"
    PROMPT = "prompt"
    TURN_DONE = "turn_done"
    TURN_FAILED = "turn_failed"
    STOPPED = "stopped"
    PROCESS_EXITED = "process_exited"
    PROCESS_CRASHED = "process_crashed"
    RESTORED = "restored"
    INTERRUPTED = "interrupted"
    STORAGE_FAILED = "storage_failed"
    TURN_STARTED = "turn_started"


_E = SessionEvent

TRANSITIONS: Final[dict[tuple[Status, SessionEvent], Status]] = {
    # idle: created, provider not launched yet
    ("idle", _E.START): "running",
    ("idle", _E.PROCESS_CRASHED): "error",  # failed to launch
    ("idle", _E.STOPPED): "done",
    # running: a turn is in progress
    ("running", _E.PROMPT): "running",  # queued follow-up
    ("running", _E.TURN_DONE): "done",
    ("running", _E.TURN_FAILED): "error",
    ("running", _E.STOPPED): "done",
    ("running", _E.PROCESS_CRASHED): "error",
    ("running", _E.INTERRUPTED): "error",
    ("running", _E.PROCESS_EXITED): "error",  # exited without finishing the turn
    # done: the last turn finished
    ("done", _E.PROMPT): "running",
    ("done", _E.START): "running",  # relaunch with resume
    ("done", _E.TURN_DONE): "done",  # late duplicate
    ("done", _E.TURN_FAILED): "done",  # late: the first ending of a turn wins
    ("done", _E.STOPPED): "done",
    ("done", _E.PROCESS_EXITED): "done",
    ("done", _E.PROCESS_CRASHED): "done",  # a dead idle process does not fail the session
    ("done", _E.RESTORED): "done",
    # error: the last turn (or the process) failed
    ("error", _E.PROMPT): "running",
    ("error", _E.START): "running",
    ("error", _E.TURN_FAILED): "error",  # late duplicate
    ("error", _E.STOPPED): "error",
    ("error", _E.PROCESS_EXITED): "error",
    ("error", _E.PROCESS_CRASHED): "error",
    ("error", _E.RESTORED): "error",
    # any status: what the session did could not be stored
    ("idle", _E.STORAGE_FAILED): "error",
    ("running", _E.STORAGE_FAILED): "error",
    ("done", _E.STORAGE_FAILED): "error",
    ("error", _E.STORAGE_FAILED): "error",
    # the provider's stream shows a turn it started itself
    ("running", _E.TURN_STARTED): "running",
    ("done", _E.TURN_STARTED): "running",
    ("error", _E.TURN_STARTED): "running",
}
"""Every legal ``(status, event) -> new status``; anything else is illegal."""


class IllegalTransition(ValueError):
    """``event`` is not legal in ``status``; the status must stay unchanged."""

    def __init__(self, status: str, event: SessionEvent) -> None:
        self.status = status
        self.event = event
        super().__init__(f"illegal session transition: {event.name} while {status}")


def transition(status: Status, event: SessionEvent) -> Status:
    """The status after ``event`` happens in ``status``; raises :class:`IllegalTransition`."""
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise IllegalTransition(status, event) from None


def can_transition(status: Status, event: SessionEvent) -> bool:
    """Whether ``event`` is legal in ``status``."""
    return (status, event) in TRANSITIONS


def legal_events(status: Status) -> frozenset[SessionEvent]:
    """The events that are legal in ``status``."""
    return frozenset(e for (s, e) in TRANSITIONS if s == status)


def is_terminal(status: str) -> bool:
    """Whether ``status`` is ``done`` or ``error``."""
    return status in TERMINAL


def describe_table() -> str:
    """The transition table in markdown (rows: event, columns: current status)."""
    lines = [
        "| event | " + " | ".join(STATUSES) + " |",
        "|---" * (len(STATUSES) + 1) + "|",
    ]
    for event in SessionEvent:
        cells = [TRANSITIONS.get((status, event), "-") for status in STATUSES]
        lines.append(f"| {event.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


STRICT_ENV = "CORRAL_STRICT_TRANSITIONS"
"""With this set to ``1`` (the test suite sets it) an illegal transition raises."""

log = logging.getLogger("corral.state")


class Lifecycle:
    """A session's status and the two facts that decide its next one.

    ``pending_turns`` counts the prompts handed to the session whose turns have
    not ended; ``stopping`` records that a stop was asked for (the provider's
    report of the interrupt that follows is then not an error). Every change of
    status goes through :func:`transition`: an illegal event raises
    :class:`IllegalTransition` in strict mode (the tests) and is logged as a bug
    and ignored otherwise, the status staying as it was.
    """

    def __init__(self, status: Status, *, strict: bool | None = None) -> None:
        self.status: Status = status
        self.pending_turns = 0
        self.stopping = False
        self.strict = os.environ.get(STRICT_ENV) == "1" if strict is None else strict

    @property
    def running(self) -> bool:
        return self.status == "running"

    def fire(self, event: SessionEvent) -> Status:
        try:
            self.status = transition(self.status, event)
        except IllegalTransition:
            if self.strict:
                raise
            log.error("bug: ignored %s in status %s", event.name, self.status)
        return self.status

    def prompted(self, *, first: bool) -> None:
        """A prompt was handed over: a session's first (START) or a follow-up
        (PROMPT); either clears an earlier stop."""
        self.fire(SessionEvent.START if first else SessionEvent.PROMPT)
        self.pending_turns += 1
        self.stopping = False

    def stop_requested(self) -> bool:
        """A client asked for a stop; False if there is no turn to stop."""
        if not self.running:
            return False
        self.stopping = True
        return True

    def turn_ended(self, ok: bool) -> bool:
        """The provider ended a turn; True if the status changed (the session is
        no longer running), False while more prompts wait for their turns or
        when the session was not running (a late report)."""
        if not self.running:
            return False
        self.pending_turns = max(0, self.pending_turns - 1)
        if self.stopping:
            self.stopped()
        elif not ok:
            self.pending_turns = 0
            self.fire(SessionEvent.TURN_FAILED)
        elif self.pending_turns == 0:
            self.fire(SessionEvent.TURN_DONE)
        else:
            return False
        return True

    def stopped(self) -> None:
        """The stop asked for is complete (the turn ended or the process is gone)."""
        self.pending_turns = 0
        self.fire(SessionEvent.STOPPED)

    def process_ended(self, crashed: bool) -> None:
        """The provider went away while the session was running."""
        self.pending_turns = 0
        self.fire(SessionEvent.PROCESS_CRASHED if crashed else SessionEvent.PROCESS_EXITED)

    def launch_failed(self) -> None:
        self.pending_turns = 0
        self.fire(SessionEvent.PROCESS_CRASHED)

    def interrupted(self) -> None:
        """The daemon stops while the turn runs."""
        self.pending_turns = 0
        self.fire(SessionEvent.INTERRUPTED)

    def provider_turn_started(self) -> bool:
        """The provider's stream shows a turn it began after the last one ended;
        True if the session was not running (it is now, until that turn ends)."""
        if self.running:
            return False
        self.fire(SessionEvent.TURN_STARTED)
        self.pending_turns = 1
        self.stopping = False
        return True

    def storage_failed(self) -> None:
        """A step could not be stored: the session ends in ``error``."""
        self.pending_turns = 0
        self.stopping = False
        self.fire(SessionEvent.STORAGE_FAILED)

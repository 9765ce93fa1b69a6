"""The messages actors tell each other, in one place so the flows read clearly.

Requests come from the router as :class:`Request`; session actors report up to
the registry with the ``Session*``/``Started``/``StartFailed`` messages; the
registry drives sessions with :class:`Begin`, :class:`Prompt`, :class:`Stop`
and :class:`Retire`. Provider output reaches a session as
:class:`ProviderOutput`/:class:`ProviderExited` tagged with the process
generation, so output of a replaced process is recognised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.actors.normalized import Normalized
from corral.actors.ports import ExitReport, ReplyTo
from corral.protocol.errors import RpcError

# ---------------------------------------------------------------- router → registry


@dataclass(frozen=True)
class Request:
    """A validated call for the registry: ``handler(registry, params, reply_to)``
    comes from the dispatch table; ``method`` names it in logs."""

    handler: Callable[[Any, dict[str, Any], ReplyTo], Any]
    params: dict[str, Any]
    reply_to: ReplyTo
    method: str


# ---------------------------------------------------------------- registry → session


@dataclass(frozen=True)
class Begin:
    """First prompt of a fresh session: record it and launch the provider."""

    prompt: str
    epoch: int


@dataclass(frozen=True)
class Prompt:
    text: str
    reply_to: ReplyTo
    epoch: int


@dataclass(frozen=True)
class Stop:
    reply_to: ReplyTo


@dataclass(frozen=True)
class Approved:
    """A client answered an approval (already given to the provider by the registry)."""

    approval_id: str
    allow: bool
    message: str | None
    reply_to: ReplyTo


@dataclass(frozen=True)
class Retire:
    """Leave memory: close the provider process and stop the actor."""

    reason: str = "cleanup"


# ---------------------------------------------------------------- provider → session


@dataclass(frozen=True)
class ProviderOutput:
    generation: int
    items: list[Normalized]
    done: Callable[[], None] = lambda: None  # call once handled and committed


@dataclass(frozen=True)
class ProviderExited:
    generation: int
    report: ExitReport


# ---------------------------------------------------------------- session → registry


@dataclass(frozen=True)
class Started:
    session_id: str
    project_id: str
    model: str | None


@dataclass(frozen=True)
class StartFailed:
    session_id: str
    project_id: str
    error: RpcError


@dataclass(frozen=True)
class SessionChanged:
    """A session's committed state after a step (``summary`` is its Session
    object), with a snapshot of what its Health is derived from."""

    session_id: str
    project_id: str
    status: str
    error: str | None
    summary: dict[str, Any]
    status_changed: bool
    epoch: int
    health: Any = None  # corral.actors.health.HealthState (a copy)
    error_info: str | None = None  # the provider's error code, if it gave one
    stopped: bool = False  # the turn ended because a client stopped it


@dataclass(frozen=True)
class FilesWritten:
    """A live session's tool call wrote these canonical paths."""

    session_id: str
    project_id: str
    paths: list[str]
    ts: int


@dataclass(frozen=True)
class RequestRetire:
    """The cleanup grace ended; `epoch` is the last prompt epoch the session saw."""

    session_id: str
    project_id: str
    epoch: int


@dataclass(frozen=True)
class Notify:
    variant: str
    kind: str
    message: str
    session_id: str | None
    project_id: str | None


@dataclass(frozen=True)
class Shutdown:
    """Stop accepting work, end every session; `done` is set when all are retired."""

    done: Any  # threading.Event


@dataclass(frozen=True)
class SessionDied:
    session_id: str
    project_id: str
    error: str


@dataclass(frozen=True)
class StorageFailed:
    """A write of this session could not be stored (told by the store's error path)."""

    reason: str
    committed_seq: int | None


@dataclass(frozen=True)
class StorageRecovered:
    """The write recording a storage failure is committed: writing works again."""

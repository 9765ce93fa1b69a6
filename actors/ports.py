"""What the actors need from the daemon around them, as small protocols.

The daemon (``supervisor/``) implements these and injects them, so actors stay
free of sockets and processes:

* :class:`Outbox` carries RPC replies and events to the router thread;
* :class:`ProviderLauncher` starts a provider process for a session;
* :class:`ProviderHandle` is the running process, as the session sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from corral.actors.normalized import Normalized
from corral.protocol.errors import InternalError, RpcError


class ReplyTo(Protocol):
    """Opaque token naming the request an answer belongs to (made by the router)."""


class Outbox(Protocol):
    def reply(self, to: ReplyTo, result: Any = None, error: RpcError | None = None) -> None:
        """Answer one request (thread-safe, never blocks)."""

    def publish(self, event: str, data: dict[str, Any], project_id: str | None = None) -> None:
        """Publish one event (thread-safe, never blocks). eseq is assigned by the router."""


@dataclass(frozen=True)
class ExitReport:
    """How a provider process (or an in-process provider stream) ended."""

    returncode: int | None  # as Popen reports it (negative = killed by a signal)
    signal: int | None  # the signal that killed it, if any
    stderr_tail: str  # last bytes of stderr, decoded with errors="replace"
    stopped_by_us: bool  # a stop or close was asked for before it ended
    pid: int | None = None
    leftover_killed: int = 0  # processes of its tree still alive after it exited, killed by us
    reason: str | None = None  # why corral stopped it, when it did so on its own account


@dataclass(frozen=True)
class Capabilities:
    """What a provider handle can do, so the session adapts instead of guessing."""

    mid_turn_prompts: bool = False
    """A prompt may be handed over while a turn runs (the provider queues it, as
    Claude Code does). Without it the session keeps the prompt and hands it
    over when the turn ends, never killing the running turn."""


@dataclass(frozen=True)
class ApprovalDecision:
    """A person's answer to a provider's permission prompt (``agent.approve``)."""

    allow: bool
    message: str | None = None  # told to the agent on deny
    updated_input: dict[str, Any] | None = None  # allow only: the tool runs with this input
    remember: bool = False  # allow this kind of call for the rest of the session
    suggestions: list[Any] | None = None  # what the provider offered for remember


@dataclass
class LaunchRequest:
    """Everything a provider needs to start a process for a session."""

    session_id: str
    project_id: str
    provider: str
    options: dict[str, Any]
    prompt: str
    resume_id: str | None
    settings: dict[str, str]
    # (items, done): the session calls done() once the items are committed, which
    # gives the reader back a credit (flow control: a flood cannot outrun the store)
    on_messages: Callable[[list[Normalized], Callable[[], None]], None]
    on_exit: Callable[[ExitReport], None]


class ProviderHandle(Protocol):
    """A running provider (a process, or an in-process stream), driven by its session."""

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def alive(self) -> bool: ...

    def send_prompt(self, text: str) -> bool:
        """Hand a follow-up prompt to the provider; False if it cannot take it
        (exited, or being stopped). Called mid-turn only with ``mid_turn_prompts``."""

    def stop_turn(self) -> None:
        """Urgent stop: the provider's own interrupt, then the signal ladder. Never blocks."""

    def answer(self, request: dict[str, Any], decision: ApprovalDecision) -> bool:
        """Give the provider a person's answer to its permission prompt ``request``
        (the ``raw["request"]`` of its ``approval`` item); False if it cannot take it."""

    def close(self) -> None:
        """End the process gently (stdin EOF, then the ladder). Never blocks."""

    def wait_exit(self, timeout: float) -> bool:
        """Block up to `timeout` seconds for the process to be gone; True if it is."""


class ProviderLauncher(Protocol):
    def launch(self, request: LaunchRequest) -> ProviderHandle:
        """Open the provider for a session (started, prompt taken). Raises
        ProviderUnavailable or OSError."""


def run_and_answer(
    outbox: Outbox, reply_to: ReplyTo, what: str, call: Callable[[], Any], log: logging.Logger
) -> None:
    """Run a request handler and answer with its result, its RpcError, or (for a
    bug) internal_error after logging it. A result of None means the handler
    answers later itself (after a commit, or from another actor)."""
    try:
        result = call()
    except RpcError as exc:
        outbox.reply(reply_to, error=exc)
    except Exception as exc:
        log.exception("%s failed", what)
        outbox.reply(reply_to, error=InternalError(f"{what} failed: {exc}"))
    else:
        if result is not None:
            outbox.reply(reply_to, result=result)


class ProviderCatalog(Protocol):
    """What the registry may ask about providers before it starts a session."""

    def names(self) -> tuple[str, ...]:
        """Every registered provider name."""

    def availability(
        self, name: str, settings: dict[str, str], *, probe: bool = False
    ) -> tuple[bool, str]:
        """(available, detail): binary found, or why not. With `probe`, the detail
        also names the version, which may run the binary (bounded, cached)."""

    def validate_config(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        """The provider's `providerConfig`, checked; raises InvalidParams."""

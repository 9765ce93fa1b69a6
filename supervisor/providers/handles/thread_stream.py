"""The in-process base: a provider whose turns run as streams on one thread.

HTTP providers (Ollama) have no process to supervise: each turn is a streamed
request made by the provider's own client. :class:`ThreadStreamHandle` gives
them the same :class:`~corral.actors.ports.ProviderHandle` face as a process:
one worker thread per session runs the turns one after the other (a prompt
that arrives mid-turn waits: ``mid_turn_prompts`` is false), output reaches
the session in batches with the same flow control as a process's reads, a
stop sets a cancel event the turn checks (a turn must return within a second
of it), and closing ends the thread and reports an exit like a process's.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

from corral.actors.normalized import Normalized
from corral.actors.ports import ApprovalDecision, Capabilities, ExitReport, LaunchRequest

log = logging.getLogger("corral.providers")

BATCHES_IN_FLIGHT = 16
CREDIT_POLL_S = 0.25
JOIN_TIMEOUT_S = 5.0

Emit = Callable[[list[Normalized]], None]


class TurnRunner(Protocol):
    """One provider session's turns (called on the handle's worker thread only)."""

    def run_turn(self, prompt: str, emit: Emit, cancel: threading.Event) -> None:
        """Run one turn for ``prompt``: ``emit`` items as they come, end with a
        ``turn_end`` item; return soon (within a second) once ``cancel`` is set.
        An exception ends the turn as an error and keeps the session usable."""
        ...

    def close(self) -> None:
        """The handle ended: release what the runner holds (connections)."""
        ...


_CLOSE = object()


class ThreadStreamHandle:
    """Turns of a :class:`TurnRunner` on a worker thread (a ProviderHandle)."""

    def __init__(
        self,
        runner: TurnRunner,
        request: LaunchRequest,
        name: str,
        capabilities: Capabilities | None = None,
    ) -> None:
        self._runner = runner
        self._on_messages = request.on_messages
        self._on_exit = request.on_exit
        self._name = name
        self._capabilities = capabilities or Capabilities(mid_turn_prompts=False)
        self._prompts: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._closing = threading.Event()
        self._gone = threading.Event()
        self._credits = threading.Semaphore(BATCHES_IN_FLIGHT)
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def pid(self) -> int | None:
        return None

    @property
    def alive(self) -> bool:
        return not self._gone.is_set()

    def start(self, prompt: str) -> None:
        self._prompts.put(prompt)
        self._thread.start()

    def send_prompt(self, text: str) -> bool:
        if self._closing.is_set() or self._gone.is_set():
            return False
        self._cancel.clear()
        self._prompts.put(text)
        return True

    def stop_turn(self) -> None:
        self._cancel.set()

    def answer(self, request: dict[str, Any], decision: ApprovalDecision) -> bool:
        return False  # in-process turns ask no one (see the provider's doc)

    def close(self) -> None:
        self._closing.set()
        self._cancel.set()
        self._prompts.put(_CLOSE)

    def wait_exit(self, timeout: float) -> bool:
        return self._gone.wait(timeout)

    # ------------------------------------------------------------ worker thread

    def _main(self) -> None:
        try:
            while True:
                prompt = self._prompts.get()
                if prompt is _CLOSE or self._closing.is_set():
                    return
                assert isinstance(prompt, str)
                self._turn(prompt)
        finally:
            try:
                self._runner.close()
            except Exception:
                log.exception("%s: closing the provider failed", self._name)
            self._gone.set()
            report = ExitReport(
                returncode=0, signal=None, stderr_tail="", stopped_by_us=self._closing.is_set()
            )
            try:
                self._on_exit(report)
            except Exception:
                log.exception("%s: exit callback failed", self._name)

    def _turn(self, prompt: str) -> None:
        try:
            self._runner.run_turn(prompt, self._emit, self._cancel)
        except Exception as exc:
            log.exception("%s: turn failed", self._name)
            self._emit([Normalized("turn_end", is_error=True, text=f"provider error: {exc}")])

    def _emit(self, items: list[Normalized]) -> None:
        if not items:
            return
        while not self._credits.acquire(timeout=CREDIT_POLL_S):
            if self._closing.is_set():
                break
        self._on_messages(list(items), self._credits.release)

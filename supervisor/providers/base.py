"""Provider adapters and the stream-json process handle they share.

A :class:`ProviderAdapter` knows one provider: whether it is available, how to
check its ``providerConfig``, how to build its command line and environment,
and which stream parser reads its output. :class:`StreamJsonHandle` runs such
a command as a :class:`~supervisor.process.ProviderProcess`: prompts are
written to stdin as stream-json user lines, each stdout line is parsed on the
reader thread and the normalized messages are handed to the session.
"""

from __future__ import annotations

import logging
import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from corral.actors.normalized import Normalized
from corral.actors.ports import ExitReport, LaunchRequest
from corral.actors.settings import Settings
from corral.supervisor.process import ExitInfo, ProviderProcess

log = logging.getLogger("corral.providers")

# Stop ladder after an interrupt: give the provider time to end its turn and
# exit on stdin EOF, then SIGINT (graceful for Claude Code), SIGTERM, SIGKILL.
INTERRUPT_GRACE_S = 2.0
SIGINT_GRACE_S = 1.5
SIGTERM_GRACE_S = 2.0
CLOSE_GRACE_S = 3.0
PROMPT_WRITE_TIMEOUT_S = 10.0
BATCHES_IN_FLIGHT = 16  # reads (up to 64 KiB each) handed over but not yet committed
CREDIT_POLL_S = 0.25
CREDIT_WARN_S = 30.0


class StreamParser(Protocol):
    def feed_line(self, line: bytes | str) -> list[Normalized]: ...


@dataclass
class LaunchSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    encode_prompt: Callable[[str], bytes]
    encode_interrupt: Callable[[], bytes] | None
    parser: StreamParser


class ProviderAdapter(ABC):
    name: str = ""

    @abstractmethod
    def availability(self, settings: Settings, *, probe: bool = False) -> tuple[bool, str]:
        """(available, detail); only with `probe` may it run the provider (version)."""

    @abstractmethod
    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Checked providerConfig (raises InvalidParams naming providerConfig.<key>)."""

    @abstractmethod
    def launch_spec(
        self, request: LaunchRequest, settings: Settings, base_env: Mapping[str, str]
    ) -> LaunchSpec:
        """The command for this request (raises ProviderUnavailable)."""


class StreamJsonHandle:
    """A provider process that takes stream-json prompts on stdin."""

    def __init__(self, spec: LaunchSpec, request: LaunchRequest, name: str) -> None:
        self._spec = spec
        self._on_messages = request.on_messages
        self._on_exit = request.on_exit
        self._stopping = threading.Event()
        self._credits = threading.Semaphore(BATCHES_IN_FLIGHT)
        self._name = name
        self._process = ProviderProcess(
            spec.argv,
            env=spec.env,
            cwd=spec.cwd,
            on_lines=self._lines,
            on_exit=self._exited,
            stdin_pipe=True,
            name=name,
        )

    def start(self, prompt: str) -> None:
        self._process.start()
        if not self._process.write(self._spec.encode_prompt(prompt), PROMPT_WRITE_TIMEOUT_S):
            self.close()
            raise OSError(f"the provider did not take its prompt on stdin: {self._name}")

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._process.alive

    def send_prompt(self, text: str) -> bool:
        if self._stopping.is_set():
            return False
        # Bounded: a provider that stopped reading is not waited for by its
        # session; the session then starts a fresh process (with resume).
        return self._process.write(self._spec.encode_prompt(text), PROMPT_WRITE_TIMEOUT_S)

    def stop_turn(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        # The ladder first: it bounds the stdin work below, which runs on its own
        # thread because a write to a provider that stopped reading blocks (and
        # holds the stdin lock) until the ladder's signals end the process.
        self._process.terminate(
            (
                (0, INTERRUPT_GRACE_S),
                (signal.SIGINT, SIGINT_GRACE_S),
                (signal.SIGTERM, SIGTERM_GRACE_S),
            )
        )
        interrupt = self._spec.encode_interrupt
        self._end_stdin(interrupt() if interrupt is not None else None)

    def close(self) -> None:
        self._stopping.set()
        self._process.terminate(((0, CLOSE_GRACE_S), (signal.SIGTERM, SIGTERM_GRACE_S)))
        self._end_stdin(None)

    def _end_stdin(self, last: bytes | None) -> None:
        """Write ``last`` (if any), then close stdin, without blocking the caller."""

        def run() -> None:
            if last is not None:
                self._process.write(last)
            self._process.close_stdin()

        threading.Thread(target=run, name=f"{self._name}-stdin-end", daemon=True).start()

    def wait_exit(self, timeout: float) -> bool:
        return self._process.wait(timeout) is not None

    # reader-thread callbacks

    def _lines(self, raws: list[bytes]) -> None:
        # One hand-off per read: a flood becomes a few large session steps
        # (one commit, one event each) instead of one per line.
        items: list[Normalized] = []
        for raw in raws:
            if raw.strip():
                items.extend(self._spec.parser.feed_line(raw))
        if items:
            self._take_credit()
            self._on_messages(items, self._credits.release)

    def _take_credit(self) -> None:
        """Flow control: at most BATCHES_IN_FLIGHT handed-over reads may await their
        commit. Past that the reader waits, the pipe fills and the provider blocks
        on its own output. A process being stopped or closed is never held back
        (its session may be gone and would not give credits back)."""
        waited = 0.0
        while not self._credits.acquire(timeout=CREDIT_POLL_S):
            if self._stopping.is_set():
                return
            waited += CREDIT_POLL_S
            if waited == CREDIT_WARN_S:
                log.warning("%s: output waits for the store (%.0fs)", self._name, waited)

    def _exited(self, info: ExitInfo) -> None:
        self._on_exit(
            ExitReport(
                returncode=info.returncode,
                signal=info.signal,
                stderr_tail=info.stderr_tail,
                stopped_by_us=info.stopped_by_us,
            )
        )

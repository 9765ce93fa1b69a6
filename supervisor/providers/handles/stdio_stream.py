"""The long-lived process base: a provider speaking a line protocol on stdin/stdout.

Claude Code (stream-json), the mock agent and Codex's JSON-RPC ``app-server``
are each one process per live session. What differs between them is the
*dialect*, a :class:`LineProtocol`: which lines open the session, how a prompt
and an interrupt are written, and what each output line means (normalized
items for the session, and lines to write back, such as a handshake's next
step or the answer to a server request). :class:`StdioStreamHandle` does the
rest for all of them: the :class:`~corral.supervisor.process.ProviderProcess`,
bounded stdin writes, one hand-off per read with flow control back from the
store, the stop ladder and the exit report. What the process prints that is
not its protocol goes through an :class:`~.output_guard.OutputGuard`: unknown
lines are capped, over-long lines become a note, and a process printing
garbage is stopped with the guard's verdict as its exit reason.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from corral.actors.normalized import Normalized
from corral.actors.ports import ApprovalDecision, Capabilities, ExitReport, LaunchRequest
from corral.supervisor.process import ProviderProcess
from corral.supervisor.process.lines import DroppedLine
from corral.supervisor.providers.handles.output_guard import OutputGuard

log = logging.getLogger("corral.providers")

# Stop ladder after an interrupt: give the provider time to end its turn and
# exit on stdin EOF, then SIGINT (graceful for Claude Code), SIGTERM, SIGKILL.
INTERRUPT_GRACE_S = 2.0
SIGINT_GRACE_S = 1.5
SIGTERM_GRACE_S = 2.0
CLOSE_GRACE_S = 3.0
PROMPT_WRITE_TIMEOUT_S = 10.0
REPLY_WRITE_TIMEOUT_S = 5.0
BATCHES_IN_FLIGHT = 16  # credits: a hand-off takes one per started 64 KiB it carries
CREDIT_BYTES = 64 * 1024


class LineProtocol(Protocol):
    """A provider's dialect on stdin/stdout. Every line given back ends in ``\\n``."""

    @property
    def capabilities(self) -> Capabilities: ...

    def opening(self, prompt: str) -> list[bytes]:
        """Lines to write right after the process started (handshake, first prompt)."""
        ...

    def prompt(self, text: str) -> list[bytes]:
        """Lines that hand the provider a follow-up prompt."""
        ...

    def interrupt(self) -> list[bytes]:
        """Lines asking the provider to end its current turn (may be empty)."""
        ...

    def feed(self, line: bytes) -> tuple[list[Normalized], list[bytes]]:
        """One output line: items for the session, and lines to write back."""
        ...

    def answer(self, request: dict[str, Any], decision: ApprovalDecision) -> list[bytes]:
        """Lines answering the permission prompt ``request`` (empty: cannot)."""
        ...


class StreamParser(Protocol):
    def feed_line(self, line: bytes | str) -> list[Normalized]: ...


class PromptLines:
    """The dialect of providers whose prompts are plain input lines (stream-json):
    an encoder for prompts, one for the interrupt, a parser for the output."""

    def __init__(
        self,
        parser: StreamParser,
        encode_prompt: Callable[[str], bytes],
        encode_interrupt: Callable[[], bytes] | None,
        capabilities: Capabilities | None = None,
    ) -> None:
        self._parser = parser
        self._encode_prompt = encode_prompt
        self._encode_interrupt = encode_interrupt
        self._capabilities = capabilities or Capabilities(mid_turn_prompts=True)

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def opening(self, prompt: str) -> list[bytes]:
        return [self._encode_prompt(prompt)]

    def prompt(self, text: str) -> list[bytes]:
        return [self._encode_prompt(text)]

    def interrupt(self) -> list[bytes]:
        return [self._encode_interrupt()] if self._encode_interrupt is not None else []

    def feed(self, line: bytes) -> tuple[list[Normalized], list[bytes]]:
        return self._parser.feed_line(line), []

    def answer(self, request: dict[str, Any], decision: ApprovalDecision) -> list[bytes]:
        return []  # a plain prompt-lines dialect asks no one


@dataclass
class StdioSpec:
    """The process to run for a session, and the dialect it speaks."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    protocol: LineProtocol


class StdioStreamHandle:
    """A provider process driven through its :class:`LineProtocol` (a ProviderHandle)."""

    def __init__(self, spec: StdioSpec, request: LaunchRequest, name: str) -> None:
        self._spec = spec
        self._protocol = spec.protocol
        self._on_messages = request.on_messages
        self._on_exit = request.on_exit
        self._stopping = threading.Event()
        self._credit_lock = threading.Lock()
        self._in_flight = 0  # credits of hand-offs not stored yet
        self._name = name
        self._guard = OutputGuard()
        self._process = ProviderProcess(
            spec.argv,
            env=spec.env,
            cwd=spec.cwd,
            on_lines=self._lines,
            on_exit=self._exited,
            stdin_pipe=True,
            name=name,
            on_dropped_line=self._dropped_line,
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._protocol.capabilities

    def start(self, prompt: str) -> None:
        self._process.start()
        if not self._write(self._protocol.opening(prompt), PROMPT_WRITE_TIMEOUT_S):
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
        return self._write(self._protocol.prompt(text), PROMPT_WRITE_TIMEOUT_S)

    def stop_turn(self) -> None:
        if self._stopping.is_set():
            return
        self._begin_stopping()
        # The ladder first: it bounds how long the provider may take. The interrupt
        # lines are queued on stdin (never blocking this thread), then stdin is closed.
        self._process.terminate(
            (
                (0, INTERRUPT_GRACE_S),
                (signal.SIGINT, SIGINT_GRACE_S),
                (signal.SIGTERM, SIGTERM_GRACE_S),
            )
        )
        self._process.end_stdin(self._protocol.interrupt())

    def answer(self, request: dict[str, Any], decision: ApprovalDecision) -> bool:
        """Write the answer to a permission prompt now (bounded), whatever the
        session's inbox holds: the provider waits for it."""
        lines = self._protocol.answer(request, decision)
        return bool(lines) and self._write(lines, PROMPT_WRITE_TIMEOUT_S)

    def close(self) -> None:
        self._begin_stopping()
        self._process.terminate(((0, CLOSE_GRACE_S), (signal.SIGTERM, SIGTERM_GRACE_S)))
        self._process.end_stdin([])

    def wait_exit(self, timeout: float) -> bool:
        return self._process.wait(timeout) is not None

    # ------------------------------------------------------------ stdin

    def _write(self, lines: list[bytes], timeout: float | None) -> bool:
        return all(self._process.write(line, timeout) for line in lines)

    def _begin_stopping(self) -> None:
        """From now on the process is being stopped: never hold its output back
        (its session may be gone and would not give credits back)."""
        self._stopping.set()
        self._process.call_soon(self._check_reading)

    # ------------------------------------------------------------ pipe-loop callbacks

    def _lines(self, raws: list[bytes]) -> None:
        # One hand-off per read: a flood becomes a few large session steps
        # (one commit, one event each) instead of one per line.
        items: list[Normalized] = []
        guard = self._guard
        for raw in raws:
            if guard.verdict is not None:
                break
            if not raw.strip():
                continue
            found, replies = self._protocol.feed(raw)
            items.extend(guard.take(raw, found, bool(replies)))
            if guard.verdict is not None:
                break
            if replies and not self._write(replies, REPLY_WRITE_TIMEOUT_S):
                log.warning("%s: the provider did not take a reply on stdin", self._name)
        if any(n.kind == "turn_end" for n in items):
            items.extend(guard.summary())
        self._check_verdict()
        self._hand_over(items, sum(len(raw) for raw in raws))

    def _dropped_line(self, line: DroppedLine) -> None:
        items = self._guard.dropped_line(line)
        self._check_verdict()
        self._hand_over(items)

    def _hand_over(self, items: list[Normalized], size: int = 0) -> None:
        """Flow control: at most BATCHES_IN_FLIGHT times 64 KiB of handed-over output
        may await its commit (a hand-off counts a credit per started 64 KiB, at
        least one). Past that, reading stops until commits give credits back:
        the pipe fills and the provider blocks on its own output. A process
        being stopped or closed is never held back (its session may be gone
        and would not give credits back)."""
        if not items:
            return
        taken = min(BATCHES_IN_FLIGHT, max(1, -(-size // CREDIT_BYTES)))
        with self._credit_lock:
            self._in_flight += taken
        self._check_reading()
        process = self._process

        def stored() -> None:
            with self._credit_lock:
                self._in_flight -= taken
            process.call_soon(self._check_reading)

        self._on_messages(items, stored)

    def _check_reading(self) -> None:
        """Pipe loop: pause or resume reading stdout to match the credits in use."""
        with self._credit_lock:
            hold = self._in_flight >= BATCHES_IN_FLIGHT and not self._stopping.is_set()
        if hold:  # both idempotent
            self._process.pause_reading()
        else:
            self._process.resume_reading()

    def _check_verdict(self) -> None:
        """The guard judged the output garbage: stop the process (once); the rest
        of what it prints is dropped and its exit report carries the verdict."""
        if self._guard.verdict is None or self._stopping.is_set():
            return
        log.warning("%s: %s; stopping it", self._name, self._guard.verdict)
        self._begin_stopping()
        self._process.terminate(((signal.SIGTERM, SIGTERM_GRACE_S),))
        self._process.end_stdin([])

    def _exited(self, report: ExitReport) -> None:
        # What was not stored is counted in one row, before the exit is reported.
        summary = self._guard.summary()
        if summary:
            self._on_messages(summary, lambda: None)
        if self._guard.verdict is not None:
            report = replace(report, reason=self._guard.verdict)
        self._on_exit(report)

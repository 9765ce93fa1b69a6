"""The built-in ``mock`` agent: a simulated coding agent speaking Claude stream-json.

Owns the ``mock`` provider's behaviour (its ``providerConfig`` is checked by
:mod:`.config`, its content made by :mod:`.script`). Run as a separate program::

    python -m corral.supervisor.providers.mock [--session-id ID | --resume ID]
        [--config JSON] [--state-dir DIR] [--model NAME] [--cwd DIR]
        [--permission-mode MODE]

It behaves like ``claude -p --input-format stream-json --output-format
stream-json --verbose``: it reads stream-json ``user`` lines on stdin and
answers each with the same line shapes the real CLI prints, so
:class:`~corral.supervisor.providers.claude.stream.ClaudeStreamParser` parses it with
no special case. Nothing is executed and nothing is written outside the state
directory: tool calls and their results are simulated text.

Per prompt it prints ``system/init``; then for each of ``turns`` assistant
turns a ``thinking`` block and a ``text`` block followed by ``toolCalls`` pairs
of an ``assistant`` ``tool_use`` line and a ``user`` ``tool_result`` line; then
a final ``text``; then a ``result`` (``subtype: success``). A new assistant
message id starts at every prompt and after every tool result, as with the
real CLI (one API request per message). ``flood`` extra texts come right after
the first init of the process. Texts are deterministic for a given prompt,
config and conversation turn number, and exactly ``textBytes`` bytes long.

``tools`` replaces each step's generated calls with the listed ones (``hang``:
nothing after the tool_use until a stop); ``ask`` first prints a Claude Code
``can_use_tool`` control request and waits for its ``control_response`` (see
:mod:`.permissions`; stdin EOF ends the turn as interrupted). ``usage``
replaces keys of the token usage each result reports.

stdin ``control_request`` ``interrupt`` (or SIGINT) ends the running turn like
the real CLI: ``control_response`` (interrupt only), a rejected tool result if
a tool call was pending, the synthetic "[Request interrupted by user]" note
("... for tool use" during a tool), and a ``result`` with ``subtype:
error_during_execution``, ``is_error: true``. After SIGINT the process exits
0; SIGTERM exits 143 at once. Prompts written while a turn runs are queued and
answered in order; on stdin EOF the queued prompts are answered, then the
process exits 0.

Only the standard library is imported, to keep start-up fast.
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import sys
import threading
import time
import uuid
from collections import deque
from typing import Any

from corral.supervisor.providers.mock import script
from corral.supervisor.providers.mock.permissions import Permissions

__all__ = ["DEFAULT_MODEL", "SESSION_ID_RE", "MockAgent"]

DEFAULT_MODEL = "mock-1"
VERSION = "corral-mock 1"

TOOLS = ["Task", "Bash", "Edit", "Glob", "Grep", "Read", "Write", "WebFetch", "TodoWrite"]

COST_PER_TURN = 0.0025
COST_PER_OUTPUT_BYTE = 0.000002

INTERRUPTED_TOOL_RESULT = (
    "The user doesn't want to proceed with this tool use. The tool use was rejected "
    "(eg. if it was a file edit, the new_string was NOT written to the file). STOP what "
    "you are doing and wait for the user to tell you how to proceed."
)

_SLICE = 0.05
"""Longest wait between checks of the SIGINT flag during a timed pause, in seconds."""

_IDLE_SLICE = 1.0
"""The same while waiting with no deadline (idle, hanging, awaiting an answer):
stdin events still wake the mock at once, only a SIGINT waits up to this long,
so a thousand idle mocks do not keep the machine's cores busy."""

SESSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


# ---------------------------------------------------------------------------
# the agent


class _Interrupted(Exception):
    def __init__(self, by_signal: bool) -> None:
        super().__init__("interrupted")
        self.by_signal = by_signal


class _Failed(Exception):
    """failAfter reached."""


def _now_iso() -> str:
    now = time.time()
    millis = int((now - int(now)) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{millis:03d}Z"


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


class MockAgent:
    """One mock agent process: stdin events in, stream-json lines out."""

    def __init__(
        self,
        config: dict[str, Any],
        session_id: str,
        model: str,
        cwd: str,
        state_dir: str | None,
        state: dict[str, Any] | None,
        permission_mode: str | None = None,
    ) -> None:
        self.config = config
        self.permissions = Permissions(permission_mode)
        self.session_id = session_id
        self.model = model
        self.cwd = cwd
        self.state_dir = state_dir
        state = state or {}
        prompts = state.get("prompts")
        self.prompts: list[str] = (
            [p for p in prompts if isinstance(p, str)] if isinstance(prompts, list) else []
        )
        turns = state.get("turns")
        self.turn_counter = (
            turns
            if isinstance(turns, int) and not isinstance(turns, bool) and turns >= 0
            else len(self.prompts)
        )
        cost = state.get("total_cost_usd")
        self.total_cost = (
            float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else 0.0
        )
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.pending: deque[str] = deque()
        self.eof = False
        self.lines_written = 0
        self.result_index = 0
        self.flooded = False
        self.sigint = False
        self._out = sys.stdout.buffer
        self._out_lock = threading.Lock()
        # per-turn state
        self._message_id = ""
        self._pending_tool: str | None = None
        self._turn_output_bytes = 0
        self._turn_requests = 0
        self._denials: list[dict[str, Any]] = []

    # -- output -------------------------------------------------------------

    def emit(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        with self._out_lock:
            try:
                self._out.write(data + b"\n")
                self._out.flush()
            except (BrokenPipeError, ValueError, OSError):
                os._exit(1)
            self.lines_written += 1
        fail_after = self.config["failAfter"]
        if fail_after is not None and self.lines_written >= fail_after:
            raise _Failed()

    def _assistant(self, block: dict[str, Any]) -> None:
        self.emit(
            {
                "type": "assistant",
                "message": {
                    "id": self._message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [block],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 100,
                        "output_tokens": 1,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                    },
                    "context_management": None,
                },
                "parent_tool_use_id": None,
                "session_id": self.session_id,
                "uuid": str(uuid.uuid4()),
                "timestamp": _now_iso(),
                "request_id": "req_mock_" + self._message_id[-24:],
            }
        )

    def _user(self, content: list[dict[str, Any]], **extra: Any) -> None:
        line: dict[str, Any] = {
            "type": "user",
            "message": {"role": "user", "content": content},
            "parent_tool_use_id": None,
            "session_id": self.session_id,
            "uuid": str(uuid.uuid4()),
            "timestamp": _now_iso(),
        }
        line.update(extra)
        self.emit(line)

    def _text(self, text: str) -> None:
        self._turn_output_bytes += len(text.encode("utf-8"))
        self._assistant({"type": "text", "text": text})

    def _init(self) -> None:
        mode = self.permissions.mode or "default"
        self.emit(script.init_line(self.session_id, self.model, self.cwd, mode, TOOLS, VERSION))

    def _control_response(self, request_id: str, error: str | None = None) -> None:
        if error is None:
            response: dict[str, Any] = {
                "subtype": "success",
                "request_id": request_id,
                "response": {"still_queued": []},
            }
        else:
            response = {"subtype": "error", "request_id": request_id, "error": error}
        self.emit({"type": "control_response", "response": response})

    # -- events -------------------------------------------------------------

    def on_sigint(self, signum: int, frame: object) -> None:
        """SIGINT handler: only sets a flag (the main loop polls it every slice)."""
        self.sigint = True

    def _handle(self, event: tuple[Any, ...], in_turn: bool) -> None:
        """Apply one stdin/signal event; raise _Interrupted to end a running turn."""
        kind = event[0]
        if kind == "user":
            self.pending.append(event[1])
        elif kind == "eof":
            self.eof = True
        elif kind == "interrupt":
            self._control_response(event[1])
            if in_turn:
                raise _Interrupted(by_signal=False)
        elif kind == "control":
            self._control_response(event[1], f"unsupported control request: {event[2]}")
        # a control_response nobody waits for (any more) is ignored

    def pause(self, seconds: float | None) -> None:
        """Wait ``seconds`` (None: forever) while serving stdin events and signals."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            if self.sigint:
                self.sigint = False
                raise _Interrupted(by_signal=True)
            wait = _IDLE_SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
            try:
                event = self.events.get(timeout=wait) if wait > 0 else self.events.get_nowait()
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                continue
            self._handle(event, in_turn=True)

    def _step(self) -> None:
        self.pause(self.config["delayMs"] / 1000.0)

    # -- turns --------------------------------------------------------------

    def run(self) -> int:
        try:
            if self.config["failAfter"] == 0:
                raise _Failed()
            while True:
                if self.pending:
                    self.answer(self.pending.popleft())
                    continue
                if self.eof or self.sigint:
                    return 0
                try:
                    event = self.events.get(timeout=_IDLE_SLICE)
                except queue.Empty:
                    continue
                self._handle(event, in_turn=False)
        except _Failed:
            sys.stderr.write(
                f"mock agent: failAfter={self.config['failAfter']} reached after "
                f"{self.lines_written} output lines; exiting with code 1\n"
            )
            sys.stderr.flush()
            return 1

    def answer(self, prompt: str) -> None:
        self.turn_counter += 1
        self.prompts.append(prompt)
        # Like Claude Code, record the conversation as soon as a prompt is taken,
        # so a process killed mid-turn can still be resumed.
        self._save()
        conv_turn = self.turn_counter
        started = time.monotonic()
        self._message_id = _new_id("msg_mock_")
        self._pending_tool = None
        self._turn_output_bytes = 0
        self._turn_requests = 1
        self._denials = []
        self._init()
        try:
            final = self._turn(prompt, conv_turn)
        except _Interrupted as interrupted:
            self._finish_interrupted(started)
            if interrupted.by_signal:
                raise SystemExit(0) from None
            return
        self._finish_success(prompt, conv_turn, final, started)

    def _turn(self, prompt: str, conv_turn: int) -> str:
        cfg = self.config
        size = cfg["textBytes"]
        snippet = script.snippet(prompt)
        calls = len(cfg["tools"]) if cfg["tools"] is not None else cfg["toolCalls"]
        if not self.flooded:
            self.flooded = True
            for i in range(1, cfg["flood"] + 1):
                self.pause(0)  # no delay, but interrupts and SIGINT still end the flood
                self._message_id = _new_id("msg_mock_")
                self._text(script.sized(f'[mock flood {i}/{cfg["flood"]}] "{snippet}".', size))
            if cfg["flood"]:
                self._message_id = _new_id("msg_mock_")
        if cfg["hang"]:
            self.pause(None)
        tool_index = (conv_turn - 1) * cfg["toolCalls"] * cfg["turns"]
        for step in range(1, cfg["turns"] + 1):
            self._step()
            self._assistant(
                {
                    "type": "thinking",
                    "thinking": (
                        f"Conversation turn {conv_turn}, step {step}/{cfg['turns']}: the user"
                        f' asked "{snippet}". I will use {calls} tool call(s).'
                    ),
                    "signature": "mock-signature",
                }
            )
            self._step()
            self._text(
                script.sized(
                    f"[mock turn {conv_turn}, step {step}/{cfg['turns']}] Working on"
                    f' "{snippet}" (prompt {conv_turn} of this conversation).',
                    size,
                )
            )
            if cfg["tools"] is not None:
                for entry in cfg["tools"]:
                    self._scripted_call(entry)
                continue
            for _ in range(cfg["toolCalls"]):
                name, tool_input, result, extra = script.tool_call(tool_index, prompt, self.cwd)
                tool_index += 1
                tool_id = _new_id("toolu_mock_")
                self._step()
                self._assistant(
                    {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}
                )
                self._pending_tool = tool_id
                self._step()
                self._pending_tool = None
                self._user(
                    [
                        {
                            "tool_use_id": tool_id,
                            "type": "tool_result",
                            "content": result,
                            "is_error": False,
                        }
                    ],
                    tool_use_result=extra,
                )
                self._message_id = _new_id("msg_mock_")
                self._turn_requests += 1
        self._step()
        final = script.sized(
            f'[mock turn {conv_turn}] Done with "{snippet}" after {cfg["turns"]} step(s)'
            f" and {cfg['turns'] * calls} tool call(s); this conversation has"
            f" {conv_turn} prompt(s).",
            size,
        )
        self._text(final)
        return final

    # -- scripted tool calls (``tools``) and permission prompts ---------------

    def _scripted_call(self, entry: dict[str, Any]) -> None:
        name, tool_input = entry["name"], entry["input"]
        tool_id = _new_id("toolu_mock_")
        self._step()
        self._assistant({"type": "tool_use", "id": tool_id, "name": name, "input": tool_input})
        self._pending_tool = tool_id
        refusal: str | None = None
        interrupt = False
        if entry.get("ask") and self.permissions.may_ask(name, tool_input):
            refusal, interrupt = self._ask(tool_id, name, tool_input)
        if refusal is None and entry.get("hang"):
            self.pause(None)
        self._step()
        self._pending_tool = None
        if refusal is not None:
            self._denials.append(
                {"tool_name": name, "tool_use_id": tool_id, "tool_input": tool_input}
            )
            text, is_error = refusal, True
        else:
            text, is_error = entry.get("output", "ok"), entry.get("isError", False)
        self._user(
            [
                {
                    "tool_use_id": tool_id,
                    "type": "tool_result",
                    "content": text,
                    "is_error": is_error,
                }
            ],
            tool_use_result=f"Error: {text}" if is_error else text,
        )
        self._message_id = _new_id("msg_mock_")
        self._turn_requests += 1
        if interrupt:
            raise _Interrupted(by_signal=False)

    def _ask(self, tool_id: str, name: str, tool_input: dict[str, Any]) -> tuple[str | None, bool]:
        """Ask for permission; (None, False) when allowed, else (refusal, interrupt)."""
        request_id = str(uuid.uuid4())
        self.emit(self.permissions.request(request_id, tool_id, name, tool_input))
        return self.permissions.decide(self._await_response(request_id), name)

    def _await_response(self, request_id: str) -> dict[str, Any]:
        """Wait for the control_response to ``request_id``, serving other events."""
        while True:
            if self.sigint:
                self.sigint = False
                raise _Interrupted(by_signal=True)
            if self.eof:
                raise _Interrupted(by_signal=False)
            try:
                event = self.events.get(timeout=_IDLE_SLICE)
            except queue.Empty:
                continue
            if event[0] == "control_response" and event[1] == request_id:
                response: dict[str, Any] = event[2]
                return response
            self._handle(event, in_turn=True)

    def _turn_cost(self) -> float:
        return round(
            COST_PER_TURN * self.config["turns"] + COST_PER_OUTPUT_BYTE * self._turn_output_bytes,
            8,
        )

    def _finish_success(self, prompt: str, conv_turn: int, final: str, started: float) -> None:
        cost = self._turn_cost()
        self.total_cost = round(self.total_cost + cost, 8)
        requests = self._turn_requests
        prompt_tokens = math.ceil(len(prompt.encode("utf-8")) / 4)
        usage = script.usage(
            input_tokens=100 * requests + prompt_tokens,
            output_tokens=math.ceil(self._turn_output_bytes / 4) + 20 * (requests - 1),
            read=100 * (requests - 1) + (100 if conv_turn > 1 else 0),
            created=100 if conv_turn == 1 else 0,
        )
        usage.update(self.config["usage"] or {})
        duration = int((time.monotonic() - started) * 1000)
        self.emit(
            {
                "duration_api_ms": duration,
                "stop_reason": "end_turn",
                "session_id": self.session_id,
                "total_cost_usd": self.total_cost,
                "usage": usage,
                "modelUsage": script.model_usage(self.model, usage, cost),
                "permission_denials": self._denials,
                "terminal_reason": "completed",
                "is_error": False,
                "num_turns": requests,
                "subtype": "success",
                "api_error_status": None,
                "result": final,
                "type": "result",
                "duration_ms": duration,
                "uuid": str(uuid.uuid4()),
                "queued_turn_count": len(self.pending),
                "result_index": self._next_result_index(),
            }
        )
        self._save()

    def _finish_interrupted(self, started: float) -> None:
        tool_id = self._pending_tool
        self._pending_tool = None
        if tool_id is not None:
            self._user(
                [
                    {
                        "type": "tool_result",
                        "content": INTERRUPTED_TOOL_RESULT,
                        "is_error": True,
                        "tool_use_id": tool_id,
                    }
                ],
                tool_use_result="User rejected tool use",
            )
            self._user([{"type": "text", "text": "[Request interrupted by user for tool use]"}])
            terminal, stop = "aborted_tools", "tool_use"
        else:
            self._user([{"type": "text", "text": "[Request interrupted by user]"}])
            terminal, stop = "aborted_streaming", "null"
        cost = round(COST_PER_OUTPUT_BYTE * self._turn_output_bytes, 8)
        self.total_cost = round(self.total_cost + cost, 8)
        usage = script.usage(0, 0, 0, 0)
        duration = int((time.monotonic() - started) * 1000)
        self.emit(
            {
                "duration_api_ms": 0,
                "stop_reason": None if tool_id is None else "tool_use",
                "session_id": self.session_id,
                "total_cost_usd": self.total_cost,
                "usage": usage,
                "modelUsage": script.model_usage(self.model, usage, cost),
                "permission_denials": [],
                "terminal_reason": terminal,
                "is_error": True,
                "num_turns": self._turn_requests,
                "subtype": "error_during_execution",
                "errors": [
                    f"[ede_diagnostic] result_type=user last_content_type=n/a stop_reason={stop}"
                ],
                "type": "result",
                "duration_ms": duration,
                "uuid": str(uuid.uuid4()),
                "queued_turn_count": len(self.pending),
                "result_index": self._next_result_index(),
            }
        )
        self._save()

    def _next_result_index(self) -> int:
        index = self.result_index
        self.result_index += 1
        return index

    # -- state --------------------------------------------------------------

    def _save(self) -> None:
        if not self.state_dir:
            return
        path = os.path.join(self.state_dir, f"{self.session_id}.json")
        tmp = f"{path}.{os.getpid()}.tmp"
        state = {
            "session_id": self.session_id,
            "model": self.model,
            "cwd": self.cwd,
            "prompts": self.prompts,
            "turns": self.turn_counter,
            "total_cost_usd": self.total_cost,
        }
        try:
            os.makedirs(self.state_dir, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(state, fh)
            os.replace(tmp, path)
        except OSError as exc:
            sys.stderr.write(f"mock agent: cannot save state: {exc}\n")
            sys.stderr.flush()

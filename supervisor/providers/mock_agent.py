"""The built-in ``mock`` agent: a simulated coding agent speaking Claude stream-json.

Owns the ``mock`` provider's behaviour and its ``providerConfig`` validation
(:func:`validate_config`). Run as a separate program::

    python -m corral.supervisor.providers.mock_agent [--session-id ID | --resume ID]
        [--config JSON] [--state-dir DIR] [--model NAME] [--cwd DIR]

It behaves like ``claude -p --input-format stream-json --output-format
stream-json --verbose``: it reads stream-json ``user`` lines on stdin and
answers each with the same line shapes the real CLI prints, so
:class:`~supervisor.providers.claude_stream.ClaudeStreamParser` parses it with
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

import argparse
import json
import math
import os
import queue
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from typing import Any, NoReturn

__all__ = ["DEFAULTS", "MockConfigError", "main", "validate_config"]

DEFAULT_MODEL = "mock-1"
VERSION = "corral-mock 1"

DEFAULTS: dict[str, Any] = {
    "turns": 1,
    "toolCalls": 2,
    "delayMs": 50,
    "textBytes": 200,
    "hang": False,
    "failAfter": None,
    "flood": 0,
}
"""The ``providerConfig`` of a mock session when a key is absent."""

# key -> (minimum, maximum); the maxima are generous guards, not part of the contract.
_INT_RANGES: dict[str, tuple[int, int]] = {
    "turns": (1, 1000),
    "toolCalls": (0, 1000),
    "delayMs": (0, 3_600_000),
    "textBytes": (1, 1_048_576),
    "failAfter": (0, 1_000_000_000),
    "flood": (0, 1_000_000),
}

TOOLS = ["Task", "Bash", "Edit", "Glob", "Grep", "Read", "Write", "WebFetch", "TodoWrite"]

COST_PER_TURN = 0.0025
COST_PER_OUTPUT_BYTE = 0.000002

INTERRUPTED_TOOL_RESULT = (
    "The user doesn't want to proceed with this tool use. The tool use was rejected "
    "(eg. if it was a file edit, the new_string was NOT written to the file). STOP what "
    "you are doing and wait for the user to tell you how to proceed."
)

_SLICE = 0.05
"""Longest wait between checks of the SIGINT flag, in seconds."""

_SESSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class MockConfigError(ValueError):
    """A bad ``providerConfig`` for the mock provider; ``field`` names the key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def validate_config(config: object) -> dict[str, Any]:
    """Check a mock ``providerConfig`` and return it complete with defaults.

    ``None`` means "no config". Unknown keys, wrong types (``bool`` is not an
    int) and out-of-range values raise :class:`MockConfigError`.
    """
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise MockConfigError("providerConfig", "must be an object")
    out = dict(DEFAULTS)
    for key, value in config.items():
        if not isinstance(key, str) or key not in DEFAULTS:
            raise MockConfigError(str(key), "unknown key")
        if key == "hang":
            if not isinstance(value, bool):
                raise MockConfigError(key, "must be a boolean")
            out[key] = value
            continue
        if key == "failAfter" and value is None:
            out[key] = None
            continue
        low, high = _INT_RANGES[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise MockConfigError(key, "must be an integer")
        if value < low or value > high:
            raise MockConfigError(key, f"must be between {low} and {high}")
        out[key] = value
    return out


# ---------------------------------------------------------------------------
# deterministic content

_FILLER = (
    " The mock agent simulates a coding session: it reads files, runs commands and"
    " edits code, but nothing is executed and no file is touched."
)


def _snippet(prompt: str, limit: int = 60) -> str:
    """ASCII-only, single-line excerpt of the prompt."""
    chars = [c if " " <= c <= "~" else "?" for c in prompt[:limit]]
    text = "".join(chars).strip()
    if len(prompt) > limit:
        text += "..."
    return text or "(empty prompt)"


def _sized(head: str, size: int) -> str:
    """``head`` padded with filler or cut to exactly ``size`` ASCII characters."""
    text = head
    while len(text) < size:
        text += _FILLER
    return text[:size]


def _slug(prompt: str) -> str:
    words = [w for w in re.findall(r"[a-z0-9]+", prompt.lower()) if len(w) >= 4]
    slug = "_".join(words[:2]) or "module"
    return slug if slug[0].isalpha() else f"m_{slug}"


def _tool_call(index: int, prompt: str, cwd: str) -> tuple[str, dict[str, Any], str, Any]:
    """(name, input, result text, tool_use_result) of the simulated tool call ``index``."""
    extra: dict[str, Any]
    slug = _slug(prompt)
    src = os.path.join(cwd, "src", f"{slug}.py")
    kind = index % 5
    if kind == 0:
        lines = [
            f'"""{slug} module (simulated content)."""',
            "",
            f"def {slug}() -> str:",
            f'    return "{slug}"',
        ]
        numbered = "\n".join(f"{n:>6}\t{line}" for n, line in enumerate(lines, 1))
        extra = {
            "type": "text",
            "file": {
                "filePath": src,
                "content": "\n".join(lines),
                "numLines": len(lines),
                "startLine": 1,
                "totalLines": len(lines),
            },
        }
        return "Read", {"file_path": src}, numbered, extra
    if kind == 1:
        stdout = f"src\ntests\nREADME.md\npyproject.toml\nsrc/{slug}.py"
        extra = {
            "stdout": stdout,
            "stderr": "",
            "interrupted": False,
            "isImage": False,
            "noOutputExpected": False,
        }
        tool_input = {"command": "ls src tests", "description": "List the project layout"}
        return "Bash", tool_input, stdout, extra
    if kind == 2:
        files = [f"src/{slug}.py", f"tests/test_{slug}.py"]
        text = f"Found {len(files)} files\n" + "\n".join(files)
        extra = {"mode": "files_with_matches", "filenames": files, "numFiles": len(files)}
        tool_input = {
            "pattern": slug,
            "path": os.path.join(cwd, "src"),
            "output_mode": "files_with_matches",
        }
        return "Grep", tool_input, text, extra
    if kind == 3:
        old = f'    return "{slug}"'
        new = f'    return "{slug} (updated)"'
        text = f"The file {src} has been updated successfully."
        extra = {"filePath": src, "oldString": old, "newString": new, "replaceAll": False}
        tool_input = {"file_path": src, "old_string": old, "new_string": new}
        return "Edit", tool_input, text, extra
    files = [f"src/{slug}.py", "src/__init__.py", f"tests/test_{slug}.py"]
    text = "\n".join(os.path.join(cwd, f) for f in files)
    extra = {"filenames": files, "numFiles": len(files), "truncated": False}
    return "Glob", {"pattern": "**/*.py", "path": cwd}, text, extra


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
    ) -> None:
        self.config = config
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
        self.emit(
            {
                "type": "system",
                "subtype": "init",
                "cwd": self.cwd,
                "session_id": self.session_id,
                "tools": TOOLS,
                "mcp_servers": [],
                "model": self.model,
                "permissionMode": "default",
                "slash_commands": [],
                "apiKeySource": "none",
                "claude_code_version": VERSION,
                "output_style": "default",
                "agents": [],
                "skills": [],
                "plugins": [],
                "uuid": str(uuid.uuid4()),
            }
        )

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

    @staticmethod
    def _usage(input_tokens: int, output_tokens: int, read: int, created: int) -> dict[str, Any]:
        return {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
            "output_tokens": output_tokens,
            "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
            "service_tier": "standard",
        }

    def _model_usage(self, usage: dict[str, Any], cost: float) -> dict[str, Any]:
        return {
            self.model: {
                "inputTokens": usage["input_tokens"],
                "outputTokens": usage["output_tokens"],
                "cacheReadInputTokens": usage["cache_read_input_tokens"],
                "cacheCreationInputTokens": usage["cache_creation_input_tokens"],
                "webSearchRequests": 0,
                "costUSD": cost,
                "contextWindow": 200000,
                "maxOutputTokens": 32000,
            }
        }

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

    def pause(self, seconds: float | None) -> None:
        """Wait ``seconds`` (None: forever) while serving stdin events and signals."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            if self.sigint:
                self.sigint = False
                raise _Interrupted(by_signal=True)
            wait = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
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
                    event = self.events.get(timeout=_SLICE)
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
        snippet = _snippet(prompt)
        if not self.flooded:
            self.flooded = True
            for i in range(1, cfg["flood"] + 1):
                self.pause(0)  # no delay, but interrupts and SIGINT still end the flood
                self._message_id = _new_id("msg_mock_")
                self._text(_sized(f'[mock flood {i}/{cfg["flood"]}] "{snippet}".', size))
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
                        f' asked "{snippet}". I will use {cfg["toolCalls"]} tool call(s).'
                    ),
                    "signature": "mock-signature",
                }
            )
            self._step()
            self._text(
                _sized(
                    f"[mock turn {conv_turn}, step {step}/{cfg['turns']}] Working on"
                    f' "{snippet}" (prompt {conv_turn} of this conversation).',
                    size,
                )
            )
            for _ in range(cfg["toolCalls"]):
                name, tool_input, result, extra = _tool_call(tool_index, prompt, self.cwd)
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
        final = _sized(
            f'[mock turn {conv_turn}] Done with "{snippet}" after {cfg["turns"]} step(s)'
            f" and {cfg['turns'] * cfg['toolCalls']} tool call(s); this conversation has"
            f" {conv_turn} prompt(s).",
            size,
        )
        self._text(final)
        return final

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
        usage = self._usage(
            input_tokens=100 * requests + prompt_tokens,
            output_tokens=math.ceil(self._turn_output_bytes / 4)
            + 20 * self.config["turns"] * self.config["toolCalls"],
            read=100 * (requests - 1) + (100 if conv_turn > 1 else 0),
            created=100 if conv_turn == 1 else 0,
        )
        duration = int((time.monotonic() - started) * 1000)
        self.emit(
            {
                "duration_api_ms": duration,
                "stop_reason": "end_turn",
                "session_id": self.session_id,
                "total_cost_usd": self.total_cost,
                "usage": usage,
                "modelUsage": self._model_usage(usage, cost),
                "permission_denials": [],
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
        usage = self._usage(0, 0, 0, 0)
        duration = int((time.monotonic() - started) * 1000)
        self.emit(
            {
                "duration_api_ms": 0,
                "stop_reason": None if tool_id is None else "tool_use",
                "session_id": self.session_id,
                "total_cost_usd": self.total_cost,
                "usage": usage,
                "modelUsage": self._model_usage(usage, cost),
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


# ---------------------------------------------------------------------------
# stdin


def _stdin_reader(events: queue.Queue[tuple[Any, ...]]) -> None:
    """Turn stream-json stdin lines into events; runs in a daemon thread."""
    stream = sys.stdin.buffer
    while True:
        try:
            line = stream.readline()
        except (OSError, ValueError):
            line = b""
        if not line:
            events.put(("eof",))
            return
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            sys.stderr.write("mock agent: ignoring a stdin line that is not JSON\n")
            sys.stderr.flush()
            continue
        if not isinstance(obj, dict):
            continue
        kind = obj.get("type")
        if kind == "user":
            message = obj.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            events.put(("user", _content_text(content)))
        elif kind == "control_request":
            request_id = obj.get("request_id")
            request_id = request_id if isinstance(request_id, str) else ""
            request = obj.get("request")
            subtype = request.get("subtype") if isinstance(request, dict) else None
            if subtype == "interrupt":
                events.put(("interrupt", request_id))
            else:
                events.put(("control", request_id, str(subtype)))


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    parts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict):
                if block.get("type") == "text" and isinstance(block.get("text"), str):
                    parts.append(block["text"])
                elif block.get("type") == "image":
                    parts.append("[image]")
    return "\n".join(parts)


# ---------------------------------------------------------------------------
# entry point


def _resume_unknown(session_id: str) -> NoReturn:
    message = f"No conversation found with session ID: {session_id}"
    line = {
        "type": "result",
        "subtype": "error_during_execution",
        "duration_ms": 0,
        "duration_api_ms": 0,
        "is_error": True,
        "num_turns": 0,
        "stop_reason": None,
        "session_id": session_id,
        "total_cost_usd": 0,
        "usage": {
            "input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 0,
        },
        "modelUsage": {},
        "permission_denials": [],
        "uuid": str(uuid.uuid4()),
        "errors": [message],
        "result_index": 0,
    }
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    raise SystemExit(1)


def _load_state(state_dir: str | None, session_id: str) -> dict[str, Any] | None:
    if not state_dir or not _SESSION_ID_RE.match(session_id):
        return None
    path = os.path.join(state_dir, f"{session_id}.json")
    try:
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m corral.supervisor.providers.mock_agent",
        description="corral's simulated agent (Claude stream-json dialect on stdin/stdout)",
    )
    ident = parser.add_mutually_exclusive_group()
    ident.add_argument("--session-id", help="start a new session with this id")
    ident.add_argument("--resume", help="continue a session saved in --state-dir")
    parser.add_argument("--config", default=None, help="providerConfig as a JSON object")
    parser.add_argument("--state-dir", default=None, help="directory for <session_id>.json")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--cwd", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the mock agent; returns the process exit code."""
    args = _parse_args(argv)
    try:
        raw_config = json.loads(args.config) if args.config else None
        config = validate_config(raw_config)
    except ValueError as exc:
        sys.stderr.write(f"mock agent: invalid --config: {exc}\n")
        return 2

    state: dict[str, Any] | None = None
    if args.resume is not None:
        state = _load_state(args.state_dir, args.resume)
        if state is None:
            _resume_unknown(args.resume)
        session_id = args.resume
    elif args.session_id is not None:
        if not _SESSION_ID_RE.match(args.session_id):
            sys.stderr.write(f"Error: Invalid session ID: {args.session_id}\n")
            return 1
        session_id = args.session_id
    else:
        session_id = str(uuid.uuid4())

    cwd = args.cwd or (state or {}).get("cwd") or os.getcwd()
    agent = MockAgent(config, session_id, args.model, str(cwd), args.state_dir, state)

    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))
    signal.signal(signal.SIGINT, agent.on_sigint)
    threading.Thread(target=_stdin_reader, args=(agent.events,), daemon=True).start()
    try:
        return agent.run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # the stdin reader thread may still block in readline(): leave without joining it
    os._exit(code)

"""The ollama provider's tools: a small, safe set a local model may call.

========================= ========= =============================================
model-facing name         shown as  what it does
========================= ========= =============================================
``read_file``             ``Read``  a text file's lines (``file_path``, optional
                                    ``offset`` and ``limit`` in lines)
``list_directory``        ``LS``    a directory's entries (``path``, default ``.``)
``run_command``           ``Bash``  one command (``command``), only when the
                                    session's permission mode allows it
========================= ========= =============================================

Tool calls are shown (``tool_name`` of the Normalized values) under corral's
usual names, so the transcript, health and file-conflict rules treat them like
every other provider's; :func:`model_name` maps a stored name back.

Confinement: a path is resolved against the session's cwd, then made real
(``realpath``: ``..`` and symlinks removed); it must lie inside the cwd or one
of the session's additional directories, else the call is refused. Only
regular files are read (a FIFO or a device never blocks a turn).

Commands: ``run_command`` is offered, and runs, only in permission mode
``bypassPermissions``, the one mode in which a session never asks a person.
``acceptEdits`` accepts file edits, not commands (as in Claude Code), and in
``default`` and ``plan`` a command would need an approval this provider cannot
ask for yet; a call anyway gets a refusal the model can read. A command is split
with :func:`shlex.split` and run without a shell (no pipes, redirections, globs
or variables), in the cwd, in its own process group, with stdin closed, for at
most ``command_timeout`` seconds and ``max_output_bytes`` of output (stdout and
stderr together); a stop kills its process group at once.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shlex
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "COMMAND_MODES",
    "DISPLAY_NAMES",
    "ToolBox",
    "ToolOutcome",
    "display_name",
    "model_name",
]

DISPLAY_NAMES: dict[str, str] = {
    "read_file": "Read",
    "list_directory": "LS",
    "run_command": "Bash",
}
"""Model-facing tool name → the name corral shows and stores."""

_MODEL_NAMES = {shown: name for name, shown in DISPLAY_NAMES.items()}

COMMAND_MODES: frozenset[str] = frozenset({"bypassPermissions"})
"""Permission modes in which ``run_command`` is offered and runs."""

COMMAND_TIMEOUT_S = 30.0
MAX_OUTPUT_BYTES = 64 * 1024
MAX_FILE_BYTES = 4 * 1024 * 1024
DEFAULT_READ_LINES = 2000
MAX_ENTRIES = 1000
_POLL_S = 0.05
_LEFTOVER_GRACE_S = 0.5


def display_name(name: str) -> str:
    """The shown name of a model-facing tool name (unknown names unchanged)."""
    return DISPLAY_NAMES.get(name, name)


def model_name(shown: str) -> str:
    """The model-facing name of a shown tool name (unknown names unchanged)."""
    return _MODEL_NAMES.get(shown, shown)


@dataclass(frozen=True)
class ToolOutcome:
    """A tool's answer to the model: ``text``, and whether it is an error."""

    text: str
    is_error: bool = False


class _Refused(Exception):
    pass


_READ_SPEC: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": (
            "Read a text file inside the working directory. Relative paths are relative "
            "to the working directory. Returns the file's lines."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "file_path": {"type": "string", "description": "the file to read"},
                "offset": {"type": "integer", "description": "first line (1-based)"},
                "limit": {"type": "integer", "description": "how many lines"},
            },
            "required": ["file_path"],
        },
    },
}

_LIST_SPEC: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "list_directory",
        "description": ("List a directory inside the working directory (directories end with /)."),
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "the directory; default ."},
            },
            "required": [],
        },
    },
}

_COMMAND_SPEC: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "run_command",
        "description": (
            "Run one program with arguments in the working directory and return its "
            "output and exit code. No shell: pipes, redirections, globs and variables "
            "are not interpreted. Time and output are limited."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "program and arguments"},
            },
            "required": ["command"],
        },
    },
}


class ToolBox:
    """The tools of one session: its directories, permission mode and limits."""

    def __init__(
        self,
        cwd: str,
        additional_dirs: Sequence[str] = (),
        *,
        permission_mode: str = "default",
        command_timeout: float = COMMAND_TIMEOUT_S,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.cwd = os.path.realpath(cwd)
        roots = [self.cwd]
        for extra in additional_dirs:
            real = os.path.realpath(os.path.join(self.cwd, extra))
            if real not in roots:
                roots.append(real)
        self.roots: tuple[str, ...] = tuple(roots)
        self.permission_mode = permission_mode
        self.command_timeout = command_timeout
        self.max_output_bytes = max_output_bytes
        self.env = dict(os.environ if env is None else env)

    @property
    def allows_commands(self) -> bool:
        return self.permission_mode in COMMAND_MODES

    def specs(self) -> list[dict[str, Any]]:
        """The tool definitions to send with a chat (Ollama's function format)."""
        specs = [_READ_SPEC, _LIST_SPEC]
        if self.allows_commands:
            specs.append(_COMMAND_SPEC)
        return specs

    def run(
        self, name: str, arguments: Mapping[str, Any], cancel: threading.Event | None = None
    ) -> ToolOutcome:
        """Run one call; every failure is an error outcome (never an exception)."""
        try:
            if name == "read_file":
                return self._read(arguments)
            if name == "list_directory":
                return self._list(arguments)
            if name == "run_command":
                return self._command(arguments, cancel or threading.Event())
        except _Refused as exc:
            return ToolOutcome(str(exc), is_error=True)
        except OSError as exc:
            return ToolOutcome(f"{name} failed: {exc.strerror or exc}", is_error=True)
        except (ValueError, TypeError) as exc:  # arguments no tool can take
            return ToolOutcome(f"{name} failed: {exc}", is_error=True)
        known = ", ".join(spec["function"]["name"] for spec in self.specs())
        return ToolOutcome(f"unknown tool {name!r}; the tools are: {known}", is_error=True)

    # ------------------------------------------------------------ paths

    def _resolve(self, path: object) -> str:
        """The real path of ``path`` (relative to the cwd) if it is inside the session's
        directories; raises a refusal otherwise."""
        if not isinstance(path, str) or not path:
            raise _Refused("a path (a non-empty string) is required")
        if "\x00" in path:
            raise _Refused("a path may not contain NUL")
        real = os.path.realpath(os.path.join(self.cwd, os.path.expanduser(path)))
        for root in self.roots:
            if os.path.commonpath([real, root]) == root:
                return real
        raise _Refused(
            f"refused: {path} is outside the session's directories ({', '.join(self.roots)})"
        )

    # ------------------------------------------------------------ tools

    def _read(self, arguments: Mapping[str, Any]) -> ToolOutcome:
        path = arguments.get("file_path", arguments.get("path"))
        real = self._resolve(path)
        offset = _positive(arguments.get("offset"), 1, "offset")
        limit = _positive(arguments.get("limit"), DEFAULT_READ_LINES, "limit")
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise _Refused(f"{path} is a directory; use list_directory")
            if not stat.S_ISREG(info.st_mode):
                raise _Refused(f"refused: {path} is not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(MAX_FILE_BYTES)
        finally:
            os.close(fd)
        if b"\x00" in data[:8192]:
            return ToolOutcome(f"{path} is a binary file ({info.st_size} bytes)", is_error=True)
        lines = data.decode("utf-8", errors="replace").splitlines()
        chosen = lines[offset - 1 : offset - 1 + limit]
        text = "\n".join(chosen)
        notes = []
        if info.st_size > len(data):
            notes.append(f"only the first {len(data)} of {info.st_size} bytes were read")
        if offset > 1 or offset - 1 + limit < len(lines):
            if chosen:
                last = offset - 1 + len(chosen)
                notes.append(f"lines {offset}-{last} of {len(lines)}")
            else:
                notes.append(f"no lines from {offset}: the file has {len(lines)}")
        text = _cut(text, self.max_output_bytes)
        if notes:
            text += f"\n[{'; '.join(notes)}]"
        return ToolOutcome(text if text else "(empty file)")

    def _list(self, arguments: Mapping[str, Any]) -> ToolOutcome:
        path = arguments.get("path") or "."
        real = self._resolve(path)
        if not os.path.isdir(real):
            raise _Refused(f"{path} is not a directory")
        entries = []
        with os.scandir(real) as it:
            for entry in it:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                entries.append(entry.name + ("/" if is_dir else ""))
        entries.sort()
        more = len(entries) - MAX_ENTRIES
        shown = entries[:MAX_ENTRIES]
        if more > 0:
            shown.append(f"... ({more} more entries)")
        return ToolOutcome("\n".join(shown) if shown else "(empty directory)")

    def _command(self, arguments: Mapping[str, Any], cancel: threading.Event) -> ToolOutcome:
        if not self.allows_commands:
            raise _Refused(
                f"refused: running commands is not allowed in permission mode "
                f"{self.permission_mode!r} (it needs bypassPermissions)"
            )
        command = arguments.get("command")
        if not isinstance(command, str) or not command.strip():
            raise _Refused("a command (a non-empty string) is required")
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise _Refused(f"cannot split the command: {exc}") from None
        if not argv:
            raise _Refused("a command (a non-empty string) is required")
        try:
            proc = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise _Refused(f"command not found: {argv[0]}") from None
        except PermissionError:
            raise _Refused(f"permission denied: {argv[0]}") from None
        output, stopped = self._collect(proc, cancel)
        text = output.decode("utf-8", errors="replace")
        code = proc.returncode
        if stopped:
            text += f"\n[{stopped}]"
            return ToolOutcome(text.lstrip("\n"), is_error=True)
        if code != 0:
            text += f"\n[exit code {code}]"
            return ToolOutcome(text.lstrip("\n"), is_error=True)
        return ToolOutcome(text if text else "(no output)")

    def _collect(self, proc: subprocess.Popen[bytes], cancel: threading.Event) -> tuple[bytes, str]:
        """(output, why it was stopped or ""); the process is reaped on return."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        kept = bytearray()
        dropped = 0
        stopped = ""
        deadline = time.monotonic() + self.command_timeout
        exited_at: float | None = None
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                if cancel.is_set():
                    stopped = "interrupted"
                    break
                now = time.monotonic()
                if now >= deadline:
                    stopped = f"timed out after {self.command_timeout:g}s"
                    break
                eof = False
                for _key, _ev in sel.select(_POLL_S):
                    chunk = _read_some(fd)
                    if chunk is None:
                        continue
                    if not chunk:
                        eof = True
                        break
                    room = self.max_output_bytes - len(kept)
                    kept += chunk[: max(room, 0)]
                    dropped += max(len(chunk) - max(room, 0), 0)
                if eof:
                    stopped = _wait_exit(proc, cancel, deadline, self.command_timeout)
                    break
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                if exited_at is not None and now - exited_at > _LEFTOVER_GRACE_S:
                    break  # a leftover child holds the pipe open
        _kill_group(proc)  # a stopped command, or what it left behind
        proc.stdout.close()
        proc.wait()
        if dropped:
            kept += f"\n... (output cut: {dropped} more bytes)".encode()
        return bytes(kept), stopped


def _wait_exit(
    proc: subprocess.Popen[bytes], cancel: threading.Event, deadline: float, timeout: float
) -> str:
    """Wait for a command whose output ended; why it was stopped, or ""."""
    while True:
        try:
            proc.wait(_POLL_S)
            return ""
        except subprocess.TimeoutExpired:
            pass
        if cancel.is_set():
            return "interrupted"
        if time.monotonic() >= deadline:
            return f"timed out after {timeout:g}s"


def _read_some(fd: int) -> bytes | None:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill what is left of the command's process group (its own, see start_new_session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _positive(value: object, default: int, what: str) -> int:
    if value is None:
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _Refused(f"{what} must be a positive integer")
    return value


def _cut(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    kept = data[:max_bytes].decode("utf-8", errors="ignore")
    return f"{kept}\n... (cut: {len(data) - max_bytes} more bytes)"

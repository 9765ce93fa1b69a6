"""Display rules: turning :class:`Normalized` provider events into AgentMessages.

An AgentMessage is the dict clients display (wire contract §3)::

    {"id": str, "seqId": int, "role": str, "content": str, "timestamp": int ms,
     "toolName"?: str, "toolInput"?: str, "toolPath"?: str, "parentId"?: str}

Optional keys are absent (never ``None``) when unknown. Two extra keys are
added: ``"toolUseId"`` on tool-call/tool-result messages whose tool id is
known, and ``"isError": True`` on tool results that report an error.

=========== =========== ===============================================================
kind        role        content
=========== =========== ===============================================================
init        system      ``Session started (model: X)`` (without the parenthesis if no
                        model)
text        assistant   the text
thinking    thinking    the text
tool_call   tool-call   the Bash command, else ``file_path``, else the input as
                        indented JSON (empty when the input is missing)
tool_result tool-result the text, cut after 500 lines with a ``... (N more lines)`` line
error       system      ``Error: <text>`` (no second prefix if the text starts with one)
system      system      the text
=========== =========== ===============================================================

``cost``, ``status``, ``compaction``, ``turn_end`` and ``unknown`` are not
displayed (:func:`is_displayed`); they update session state instead.

A tool call's ``toolInput`` is its input as compact JSON and its ``toolPath``
is ``file_path``, else ``path``, else (Bash) the command cut to 80 characters.
A tool result's ``toolName`` comes from the session's map of tool ids to names.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from typing import Any

from corral.actors.normalized import DISPLAYED_KINDS, FILE_PATH_KEY, SHELL_TOOL, Normalized

__all__ = [
    "BASH_TOOL",
    "MAX_RESULT_LINES",
    "TOOL_PATH_COMMAND_CHARS",
    "is_displayed",
    "to_agent_message",
    "truncate_lines",
    "user_message",
]

MAX_RESULT_LINES = 500
"""A tool result keeps at most this many lines; the rest become one tail line."""

TOOL_PATH_COMMAND_CHARS = 80
"""A Bash command used as ``toolPath`` is cut to this many characters."""

BASH_TOOL = SHELL_TOOL
"""The tool whose ``command`` input is shown as the tool call's content (the
normalized shell tool, see :mod:`corral.actors.normalized`)."""

_ROLES: dict[str, str] = {
    "init": "system",
    "text": "assistant",
    "thinking": "thinking",
    "tool_call": "tool-call",
    "tool_result": "tool-result",
    "error": "system",
    "system": "system",
}


def is_displayed(n: Normalized) -> bool:
    """Whether ``n`` becomes an AgentMessage (else it only updates session state)."""
    return n.kind in DISPLAYED_KINDS


_ids = random.Random()  # seeded from os.urandom once; ids need uniqueness, not secrecy


def _new_id() -> str:
    # uuid4() reads os.urandom for every message and releases the GIL each time
    # (a thread switch per message on the hot path); 128 random bits are as unique.
    return f"{_ids.getrandbits(128):032x}"


def _base(role: str, content: str, seq_id: int, now_ms: int) -> dict[str, Any]:
    return {
        "id": _new_id(),
        "seqId": seq_id,
        "role": role,
        "content": content,
        "timestamp": now_ms,
    }


def user_message(text: str, seq_id: int, now_ms: int) -> dict[str, Any]:
    """The AgentMessage of a prompt the user sent."""
    return _base("user", text, seq_id, now_ms)


def system_message(text: str, seq_id: int, now_ms: int) -> dict[str, Any]:
    """A note of corral's own in the transcript ("stopped", why a provider ended)."""
    return _base("system", text, seq_id, now_ms)


def to_agent_message(
    n: Normalized,
    seq_id: int,
    now_ms: int,
    *,
    tool_names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The AgentMessage for a displayed provider event (see the module table).

    ``tool_names`` maps tool ids to tool names, so that a tool result can name
    its tool. Raises :class:`ValueError` for a kind that is not displayed.
    """
    role = _ROLES.get(n.kind)
    if role is None:
        raise ValueError(f"{n.kind!r} events are not displayed")
    msg = _base(role, "", seq_id, now_ms)
    if n.kind == "init":
        msg["content"] = f"Session started (model: {n.model})" if n.model else "Session started"
    elif n.kind == "error":
        msg["content"] = _error_text(n.text)
    elif n.kind == "tool_call":
        _fill_tool_call(msg, n)
    elif n.kind == "tool_result":
        _fill_tool_result(msg, n, tool_names)
    else:  # text, thinking, system
        msg["content"] = n.text
    if n.parent_id is not None:
        msg["parentId"] = n.parent_id
    return msg


def _error_text(text: str) -> str:
    text = text.strip()
    if not text:
        return "Error"
    if text.lower().startswith("error"):
        return text
    return f"Error: {text}"


def _fill_tool_call(msg: dict[str, Any], n: Normalized) -> None:
    if n.tool_name is not None:
        msg["toolName"] = n.tool_name
    if n.tool_id is not None:
        msg["toolUseId"] = n.tool_id
    tool_input = n.tool_input
    if tool_input is None:
        return  # no toolInput/toolPath, empty content
    msg["toolInput"] = _dumps(tool_input, pretty=False)
    file_path = _str_field(tool_input, FILE_PATH_KEY)
    command = _str_field(tool_input, "command") if n.tool_name == BASH_TOOL else None
    tool_path = file_path or _str_field(tool_input, "path")
    if tool_path is None and command is not None:
        tool_path = command[:TOOL_PATH_COMMAND_CHARS]
    if tool_path is not None:
        msg["toolPath"] = tool_path
    if command is not None:
        msg["content"] = command
    elif file_path is not None:
        msg["content"] = file_path
    else:
        msg["content"] = _dumps(tool_input, pretty=True)


def _fill_tool_result(
    msg: dict[str, Any], n: Normalized, tool_names: Mapping[str, str] | None
) -> None:
    msg["content"] = truncate_lines(n.text, MAX_RESULT_LINES)
    name = None
    if n.tool_id is not None:
        msg["toolUseId"] = n.tool_id
        if tool_names is not None:
            name = tool_names.get(n.tool_id)
    if name is None:
        name = n.tool_name
    if name is not None:
        msg["toolName"] = name
    if n.is_error:
        msg["isError"] = True


def truncate_lines(text: str, max_lines: int) -> str:
    """``text`` cut to its first ``max_lines`` lines plus a ``... (N more lines)`` line.

    Lines are separated by ``\\n``; a final newline does not start another line.
    Text of at most ``max_lines`` lines is returned unchanged.
    """
    lines = text.split("\n")
    count = len(lines) - 1 if len(lines) > 1 and lines[-1] == "" else len(lines)
    if count <= max_lines:
        return text
    kept = "\n".join(lines[:max_lines])
    return f"{kept}\n... ({count - max_lines} more lines)"


def _str_field(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def _dumps(value: object, *, pretty: bool) -> str:
    """Strict JSON text of a tool input; never raises.

    Like JavaScript's ``JSON.stringify``, NaN and infinities become ``null``;
    values JSON cannot express become their ``str()``.
    """
    try:
        return _dumps_strict(value, pretty=pretty)
    except ValueError:  # a non-finite float somewhere
        pass
    except (TypeError, RecursionError):
        return json.dumps(str(value), ensure_ascii=False)
    try:
        return _dumps_strict(_finite(value), pretty=pretty)
    except (TypeError, ValueError, RecursionError):
        return json.dumps(str(value), ensure_ascii=False)


def _dumps_strict(value: object, *, pretty: bool) -> str:
    if pretty:
        return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False, default=str)
    return json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str
    )


def _finite(value: object) -> object:
    """``value`` with every NaN/infinite float replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value

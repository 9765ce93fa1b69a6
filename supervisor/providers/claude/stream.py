"""Claude Code stream-json dialect: the output parser and the stdin encoders.

Owns the translation of ``claude -p --output-format stream-json --verbose``
output lines (and the built-in ``mock`` agent's, which speaks the same dialect)
into provider-neutral :class:`~actors.normalized.Normalized` values, and the
encoding of the lines corral writes to the CLI's stream-json stdin.

One JSON object per line; dispatch is on the parsed ``type``/``subtype``, never
on a textual prefix. :meth:`ClaudeStreamParser.feed_line` never raises: a line
it cannot decode or does not understand becomes a ``kind="unknown"`` value
that carries the decoded object (or the undecodable text) in ``raw``.

Decisions worth knowing:

* ``control_response`` (the CLI's answer to a stdin ``control_request`` such as
  an interrupt) becomes a ``status`` value with ``status="control_response"``,
  ``text`` = the answered ``request_id`` and ``raw`` = the whole line; it is
  not displayed.
* ``stream_event`` lines (``--include-partial-messages``) produce nothing: the
  complete per-block ``assistant`` lines always follow them, so using both
  would duplicate every text.
* ``system/thinking_tokens``, ``system/status`` and ``system/ui_invalidate``
  produce nothing; blank lines produce nothing.
* ``result`` always yields a ``cost`` value first (``total_cost_usd`` is
  cumulative for the provider session; ``usage`` is per turn), then, when
  ``is_error`` is true, an ``error`` value (skipped when a synthetic API-error
  assistant line already reported the same text in this turn) and a
  ``turn_end`` with ``is_error=True``; otherwise a ``turn_end`` with
  ``is_error=False``. Done vs. error is decided only from ``is_error``: API
  failures arrive as ``subtype: "success"`` with ``is_error: true``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson

from corral.actors.normalized import Normalized
from corral.supervisor.providers.values import as_dict, as_str

__all__ = [
    "ClaudeStreamParser",
    "encode_interrupt",
    "encode_user_message",
]

logger = logging.getLogger("corral.providers.claude")

UNPARSED_LIMIT = 4096
"""How many characters of an undecodable line are kept in ``raw``."""

_SILENT_SYSTEM_SUBTYPES = frozenset({"thinking_tokens", "status", "ui_invalidate"})

_SYNTHETIC_NOTES = (
    "[Request interrupted by user",
    "Your response above was cut off mid-stream",
)

_TOOL_USE_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})

# Unknown line types are logged once per process; the set is bounded so a
# misbehaving provider cannot grow it without limit.
_LOGGED_UNKNOWN: set[str] = set()
_LOGGED_UNKNOWN_LIMIT = 256
_LOGGED_LOCK = threading.Lock()


def encode_user_message(text: str) -> bytes:
    """One stream-json stdin line (with trailing newline) carrying a user prompt."""
    line = {"type": "user", "message": {"role": "user", "content": text}}
    return orjson.dumps(line) + b"\n"


def encode_interrupt(request_id: str) -> bytes:
    """One stream-json stdin line (with trailing newline) asking to interrupt the turn."""
    line = {
        "type": "control_request",
        "request_id": request_id,
        "request": {"subtype": "interrupt"},
    }
    return orjson.dumps(line) + b"\n"


def _int(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 2**63:
        return int(value)
    return 0


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
        if number == number and number not in (float("inf"), float("-inf")):
            return number
    return None


def _log_unknown(key: str) -> None:
    key = key[:100]
    with _LOGGED_LOCK:
        if key in _LOGGED_UNKNOWN or len(_LOGGED_UNKNOWN) >= _LOGGED_UNKNOWN_LIMIT:
            return
        _LOGGED_UNKNOWN.add(key)
    logger.warning("claude stream-json: unknown line type %r (stored as unknown)", key)


def _blocks_text(content: object) -> str:
    """Text of a ``content`` that is a string or a list of ``{type: text}`` blocks."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict):
            text = as_str(block.get("text"))
            if block.get("type") == "text" and text is not None:
                parts.append(text)
    return "\n".join(parts)


def _tool_use_result_text(value: object) -> str:
    """Fallback text for an empty tool_result, from the line's ``tool_use_result``."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        return ""
    parts = [text for text in (as_str(value.get("stdout")), as_str(value.get("stderr"))) if text]
    if parts:
        return "\n".join(parts)
    for key in ("content", "message", "error"):
        found = as_str(value.get(key))
        if found:
            return found
    return ""


class ClaudeStreamParser:
    """Stateful parser of one Claude stream-json process's stdout.

    Feed every stdout line to :meth:`feed_line`; it returns the normalized
    values for that line (possibly none). The only state is per turn: the
    error texts already reported by synthetic API-error assistant lines, so the
    closing ``result`` does not report the same error twice.
    """

    def __init__(self) -> None:
        self._turn_errors: set[str] = set()

    def feed_line(self, line: bytes | str) -> list[Normalized]:
        """Parse one output line; never raises."""
        try:
            return self._feed(line)
        except Exception:  # defensive: a parser bug must not kill the session
            logger.exception("claude stream-json: parser failure")
            return [Normalized(kind="unknown", raw={"unparsed": _as_text(line)[:UNPARSED_LIMIT]})]

    # -- dispatch -----------------------------------------------------------

    def _feed(self, line: bytes | str) -> list[Normalized]:
        if isinstance(line, bytes | bytearray | memoryview):
            data = bytes(line)
            if not data.strip():
                return []
        elif isinstance(line, str):
            if not line.strip():
                return []
            data = line.encode("utf-8", "surrogatepass")
        else:
            return [Normalized(kind="unknown", raw={"unparsed": repr(line)[:UNPARSED_LIMIT]})]
        try:
            obj = orjson.loads(data)
        except Exception:
            return [Normalized(kind="unknown", raw={"unparsed": _as_text(data)[:UNPARSED_LIMIT]})]
        if not isinstance(obj, dict):
            return [Normalized(kind="unknown", raw={"unparsed": _as_text(data)[:UNPARSED_LIMIT]})]

        kind = obj.get("type")
        if kind == "system":
            return self._system(obj)
        if kind == "assistant":
            return self._assistant(obj)
        if kind == "user":
            return self._user(obj)
        if kind == "result":
            return self._result(obj)
        if kind == "stream_event":
            return []
        if kind == "control_response":
            response = as_dict(obj.get("response"))
            return [
                Normalized(
                    kind="status",
                    status="control_response",
                    text=as_str(response.get("request_id")) or "",
                    raw=obj,
                )
            ]
        if kind == "rate_limit_event":
            info = as_dict(obj.get("rate_limit_info"))
            return [
                Normalized(
                    kind="status",
                    status="rate_limit",
                    text=as_str(info.get("status")) or "rate limit",
                    raw=obj,
                )
            ]
        _log_unknown(kind if isinstance(kind, str) else repr(kind))
        return [Normalized(kind="unknown", raw=obj)]

    # -- system -------------------------------------------------------------

    def _system(self, obj: dict[str, Any]) -> list[Normalized]:
        subtype = obj.get("subtype")
        if subtype == "init":
            self._turn_errors.clear()
            return [
                Normalized(
                    kind="init",
                    model=as_str(obj.get("model")),
                    provider_session_id=as_str(obj.get("session_id")),
                    cwd=as_str(obj.get("cwd")),
                )
            ]
        if subtype == "api_retry":
            return [Normalized(kind="status", status="retrying", text=_retry_text(obj))]
        if subtype == "permission_denied":
            tool = as_str(obj.get("tool_name")) or "tool"
            message = as_str(obj.get("message"))
            text = f"Permission denied: {tool}" + (f" — {message}" if message else "")
            return [
                Normalized(
                    kind="system",
                    text=text,
                    tool_name=as_str(obj.get("tool_name")),
                    tool_id=as_str(obj.get("tool_use_id")),
                    parent_id=as_str(obj.get("parent_tool_use_id")),
                )
            ]
        if subtype == "compact_boundary":
            meta = as_dict(obj.get("compact_metadata"))
            trigger = as_str(meta.get("trigger"))
            pre_tokens = _int(meta.get("pre_tokens"))
            text = "context compacted"
            if trigger:
                text += f" ({trigger}"
                text += f", {pre_tokens} tokens before)" if pre_tokens else ")"
            return [Normalized(kind="compaction", text=text)]
        if subtype in _SILENT_SYSTEM_SUBTYPES:
            return []
        _log_unknown(f"system/{subtype if isinstance(subtype, str) else repr(subtype)}")
        return [Normalized(kind="unknown", raw=obj)]

    # -- assistant ----------------------------------------------------------

    def _assistant(self, obj: dict[str, Any]) -> list[Normalized]:
        message = as_dict(obj.get("message"))
        parent = as_str(obj.get("parent_tool_use_id"))
        content = message.get("content")

        if obj.get("is_api_error_message") is True:
            text = _blocks_text(content).strip()
            if not text:
                text = as_str(obj.get("error")) or "API error"
            self._turn_errors.add(text)
            return [Normalized(kind="error", text=text, parent_id=parent)]

        if isinstance(content, str):
            return [Normalized(kind="text", text=content, parent_id=parent)] if content else []
        if not isinstance(content, list):
            return [Normalized(kind="unknown", raw=obj)]

        out: list[Normalized] = []
        for block in content:
            if not isinstance(block, dict):
                out.append(Normalized(kind="unknown", raw=obj))
                continue
            btype = block.get("type")
            if btype == "text":
                block_text = as_str(block.get("text"))
                if block_text:
                    out.append(Normalized(kind="text", text=block_text, parent_id=parent))
            elif btype == "thinking":
                thought = as_str(block.get("thinking"))
                if thought:
                    out.append(Normalized(kind="thinking", text=thought, parent_id=parent))
            elif btype == "redacted_thinking":
                continue
            elif btype in _TOOL_USE_BLOCKS:
                tool_input = block.get("input")
                if tool_input is None:
                    tool_input = {}
                elif not isinstance(tool_input, dict):
                    tool_input = {"input": tool_input}
                out.append(
                    Normalized(
                        kind="tool_call",
                        tool_name=as_str(block.get("name")) or "unknown",
                        tool_input=tool_input,
                        tool_id=as_str(block.get("id")),
                        parent_id=parent,
                    )
                )
            else:
                out.append(Normalized(kind="unknown", raw=obj))
        return out

    # -- user ---------------------------------------------------------------

    def _user(self, obj: dict[str, Any]) -> list[Normalized]:
        message = as_dict(obj.get("message"))
        parent = as_str(obj.get("parent_tool_use_id"))
        synthetic = obj.get("isSynthetic") is True
        content = message.get("content")

        if isinstance(content, str):
            return self._user_note(content, synthetic, parent)
        if not isinstance(content, list):
            return []

        out: list[Normalized] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "tool_result":
                text = _blocks_text(block.get("content"))
                if not text:
                    text = _tool_use_result_text(obj.get("tool_use_result"))
                out.append(
                    Normalized(
                        kind="tool_result",
                        text=text,
                        tool_id=as_str(block.get("tool_use_id")),
                        is_error=block.get("is_error") is True,
                        parent_id=parent,
                    )
                )
            elif btype == "text":
                out.extend(self._user_note(as_str(block.get("text")) or "", synthetic, parent))
        return out

    @staticmethod
    def _user_note(text: str, synthetic: bool, parent: str | None) -> list[Normalized]:
        """A synthetic note becomes ``system``; an echo of the user's prompt nothing."""
        if not text:
            return []
        if synthetic or text.startswith(_SYNTHETIC_NOTES):
            return [Normalized(kind="system", text=text, parent_id=parent)]
        return []

    # -- result -------------------------------------------------------------

    def _result(self, obj: dict[str, Any]) -> list[Normalized]:
        usage = as_dict(obj.get("usage"))
        out = [
            Normalized(
                kind="cost",
                cost_usd=_number(obj.get("total_cost_usd")),
                cost_cumulative=True,
                input_tokens=_int(usage.get("input_tokens")),
                output_tokens=_int(usage.get("output_tokens")),
                cache_read_tokens=_int(usage.get("cache_read_input_tokens")),
                cache_creation_tokens=_int(usage.get("cache_creation_input_tokens")),
            )
        ]
        if obj.get("is_error") is True:
            text = _result_error_text(obj)
            if text not in self._turn_errors:
                out.append(Normalized(kind="error", text=text))
            out.append(Normalized(kind="turn_end", is_error=True, text=text))
        else:
            out.append(Normalized(kind="turn_end", is_error=False))
        self._turn_errors.clear()
        return out


def _as_text(data: object) -> str:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data).decode("utf-8", "replace")
    if isinstance(data, str):
        return data.encode("utf-8", "replace").decode("utf-8", "replace")
    return repr(data)


def _retry_text(obj: dict[str, Any]) -> str:
    error = as_str(obj.get("error"))
    status = obj.get("error_status")
    if status is None:
        reason = "connection error"
        if error and error != "unknown":
            reason = f"connection error ({error})"
    else:
        reason = error or f"HTTP {status}"
    text = f"retrying: {reason}"
    attempt = obj.get("attempt")
    if isinstance(attempt, int) and not isinstance(attempt, bool):
        maximum = obj.get("max_retries")
        if isinstance(maximum, int) and not isinstance(maximum, bool):
            text += f", attempt {attempt}/{maximum}"
        else:
            text += f", attempt {attempt}"
    return text


def _result_error_text(obj: dict[str, Any]) -> str:
    errors = obj.get("errors")
    if isinstance(errors, list):
        parts = [e for e in errors if isinstance(e, str) and e]
        if parts:
            return "; ".join(parts)
    result = as_str(obj.get("result"))
    if result:
        return result
    status = obj.get("api_error_status")
    if status is not None and not isinstance(status, dict | list):
        return f"API error {status}"
    subtype = as_str(obj.get("subtype"))
    return subtype or "error"

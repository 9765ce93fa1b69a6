"""How the CLI shows things to people: transcript lines and tables (rich).

Everything here is a pure function from protocol objects (AgentMessage, Session,
Approval, ...) to rich renderables, with the current time passed in where an age
is shown, so tests can render them through a recording console.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

__all__ = [
    "age",
    "approvals_table",
    "decision_line",
    "message_text",
    "money",
    "one_line",
    "sessions_table",
    "short_id",
    "status_style",
    "tokens",
]

ROLES: dict[str, tuple[str, str]] = {
    "user": ("you", "bold cyan"),
    "assistant": ("agent", "green"),
    "thinking": ("thinking", "dim italic"),
    "tool-call": ("tool", "yellow"),
    "tool-result": ("result", "dim"),
    "system": ("system", "magenta"),
}
STATUS_STYLE = {"running": "bold yellow", "done": "green", "error": "bold red", "idle": "cyan"}
VARIANT_STYLE = {"success": "green", "warning": "yellow", "error": "bold red", "info": "cyan"}
RESULT_LINES = 3
"""Lines of a tool result shown before ``… (N more lines)``."""
LABEL_WIDTH = 8
ERROR_PREFIXES = ("Error", "error:", "provider exited", "interrupted")


def now_ms() -> int:
    """The current time in ms (the unit of every protocol timestamp)."""
    return int(time.time() * 1000)


def short_id(session_id: str | None) -> str:
    """The first 8 characters of a session or approval id (what ``ls`` shows)."""
    return (session_id or "")[:8] or "-"


def money(value: Any) -> str:
    """``$0.0123``."""
    try:
        return f"${float(value):.4f}"
    except (TypeError, ValueError):
        return "-"


def tokens(session: Mapping[str, Any]) -> str:
    """``1.2k/340`` input/output tokens."""

    def n(value: Any) -> str:
        v = int(value or 0)
        return f"{v / 1000:.1f}k" if v >= 10_000 else str(v)

    return f"{n(session.get('inputTokens'))}/{n(session.get('outputTokens'))}"


def duration(ms: float | None) -> str:
    """``45s``, ``12m``, ``3h``, ``2d`` (``-`` when unknown)."""
    if ms is None:
        return "-"
    s = max(0, int(ms / 1000))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def age(ts_ms: Any, now: int) -> str:
    """How long ago ``ts_ms`` was (``3m ago``)."""
    if not isinstance(ts_ms, int | float) or ts_ms <= 0:
        return "-"
    return f"{duration(now - ts_ms)} ago"


def status_style(status: str | None) -> str:
    """The style of a session status."""
    return STATUS_STYLE.get(status or "", "")


def is_error(message: Mapping[str, Any]) -> bool:
    """A failed tool result, or a system message reporting an error."""
    if message.get("role") == "tool-result":
        return bool(message.get("isError"))
    if message.get("role") == "system":
        return str(message.get("content", "")).startswith(ERROR_PREFIXES)
    return False


def _cut(lines: list[str], keep: int) -> list[str]:
    if len(lines) <= keep:
        return lines
    more = len(lines) - keep
    return [*lines[:keep], f"… ({more} more line{'s' if more > 1 else ''})"]


def message_text(message: Mapping[str, Any]) -> Text:
    """One message as text: seqId, a role label and the content.

    Tool calls are one compact line (tool name + path or command), tool results
    are dimmed and cut, thinking is dimmed, errors are red. Continuation lines
    are indented under the content.
    """
    role = str(message.get("role", "?"))
    label, style = ROLES.get(role, (role, ""))
    content = str(message.get("content", ""))
    error = is_error(message)
    if role == "tool-call":
        target = message.get("toolPath") or " ".join(content.split())
        lines = [f"{message.get('toolName', '?')}  {target}"]
    elif role == "tool-result":
        lines = _cut(content.splitlines() or [""], RESULT_LINES)
    else:
        lines = content.splitlines() or [""]
    body_style = "bold red" if error else ("" if role in ("assistant", "user") else style)
    seq = message.get("seqId", "")
    text = Text()
    text.append(f"{seq:>4} ", style="dim")
    text.append(f"{label:<{LABEL_WIDTH}} ", style="bold red" if error else style)
    indent = " " * (5 + LABEL_WIDTH + 1)
    text.append(("\n" + indent).join(lines), style=body_style)
    return text


def marker(text: str, style: str = "dim") -> Text:
    """A separator line in a stream: ``── done ──``."""
    return Text(f"── {text} ──", style=style)


def sessions_table(sessions: Iterable[Mapping[str, Any]], now: int, plain: bool = False) -> Table:
    """``corral ls``: one row per session, newest first."""
    table = Table(box=None if plain else box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name, justify in (
        ("PROJECT", "left"),
        ("SESSION", "left"),
        ("PROVIDER", "left"),
        ("MODEL", "left"),
        ("STATUS", "left"),
        ("COST", "right"),
        ("TOKENS", "right"),
        ("MSGS", "right"),
        ("AGE", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for s in sessions:
        status = str(s.get("status", "?"))
        table.add_row(
            str(s.get("projectId", "")),
            short_id(s.get("sessionId")),
            str(s.get("provider", "")),
            str(s.get("model") or "-"),
            Text(status, style=status_style(status)),
            money(s.get("costUsd")),
            tokens(s),
            str(s.get("messageCount", 0)),
            age(s.get("updatedAt"), now),
        )
    return table


def kv_table(rows: Iterable[tuple[str, Any]], plain: bool = False) -> Table:
    """A two-column key/value table."""
    table = Table(box=None if plain else box.SIMPLE, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else str(value))
    return table


def simple_table(headers: Iterable[str], plain: bool = False) -> Table:
    """An empty table with these column headers."""
    table = Table(box=None if plain else box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for header in headers:
        table.add_column(header)
    return table


def approvals_table(approvals: Iterable[Mapping[str, Any]], now: int, plain: bool = False) -> Table:
    """``corral approvals``: one row per pending Approval (project, short id, tool,
    summary, age), in the order given (the daemon lists the oldest first)."""
    table = Table(box=None if plain else box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("PROJECT", no_wrap=True)
    table.add_column("APPROVAL", no_wrap=True)
    table.add_column("TOOL", no_wrap=True, style="yellow")
    table.add_column("SUMMARY", overflow="fold")
    table.add_column("AGE", justify="right", no_wrap=True)
    for a in approvals:
        table.add_row(
            Text(str(a.get("projectId", ""))),
            short_id(a.get("approvalId")),
            Text(str(a.get("toolName", ""))),
            Text(one_line(a.get("summary"))),
            age(a.get("createdAt"), now),
        )
    return table


def one_line(value: Any) -> str:
    """Text on one line: runs of whitespace (newlines too) become one space."""
    return " ".join(str(value or "").split())


def decision_line(
    approval: Mapping[str, Any],
    decision: str,
    *,
    message: str | None = None,
    remember: bool = False,
) -> str:
    """What was decided: ``allowed Bash: echo hi (api, approval 1a2b3c4d)``."""
    verb = "allowed" if decision == "allow" else "denied"
    if remember and decision == "allow":
        verb += " (and remembered for this session)"
    tool, summary = approval.get("toolName"), one_line(approval.get("summary"))
    what = f" {tool}: {summary}" if tool and summary else f" {tool or summary}".rstrip()
    where = f"{approval.get('projectId', '')}, approval {short_id(approval.get('approvalId'))}"
    line = f"{verb}{what} ({where})"
    if message and decision == "deny":
        line += f": {one_line(message)}"
    return line

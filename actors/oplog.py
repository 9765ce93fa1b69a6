"""The operator log: one line per session event, the lines an operator greps.

Every function writes one line to the logger ``corral.ops`` as ``<event>`` then
``key=value`` pairs (values with spaces or quotes are quoted), e.g.::

    session started project=web session=53a1413f-… provider=claude pid=4242 cwd=/home/me/web
    turn ended project=web session=53a1413f-… status=done cost=$0.0123 tokens=613/140 duration=4.2s

Where the line goes and how it is prefixed (journal or terminal) is the
daemon's logging setup (``supervisor/oplog.py``); this module only words it,
so that the actors can call it without knowing about the process.
"""

from __future__ import annotations

import logging

log = logging.getLogger("corral.ops")

__all__ = [
    "conflict",
    "format_fields",
    "restart_recovered",
    "retention_purged",
    "session_error",
    "session_stalled",
    "session_started",
    "session_stopped",
    "turn_ended",
]

MAX_VALUE = 300
"""A value longer than this many characters (an error text) is cut, with ``…``."""


def _value(value: object) -> str:
    text = str(value)
    if len(text) > MAX_VALUE:
        text = text[: MAX_VALUE - 1] + "…"
    if text and not any(c in text for c in ' "=\t\n\r\\'):
        return text
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


def format_fields(event: str, **fields: object) -> str:
    """``event key=value …`` (None values are left out)."""
    parts = [event]
    parts += [f"{key}={_value(value)}" for key, value in fields.items() if value is not None]
    return " ".join(parts)


def _emit(level: int, event: str, **fields: object) -> None:
    if log.isEnabledFor(level):
        log.log(level, "%s", format_fields(event, **fields))


def session_started(project: str, session: str, provider: str, pid: int | None, cwd: str) -> None:
    """A provider process (or in-process stream) took a session's first prompt."""
    _emit(
        logging.INFO,
        "session started",
        project=project,
        session=session,
        provider=provider,
        pid=pid,
        cwd=cwd,
    )


def turn_ended(
    project: str,
    session: str,
    status: str,
    cost_usd: float,
    input_tokens: int,
    output_tokens: int,
    duration_s: float,
) -> None:
    """A turn ended (``done`` or ``error``): what the session spent so far, and how long
    the turn took."""
    _emit(
        logging.INFO if status == "done" else logging.WARNING,
        "turn ended",
        project=project,
        session=session,
        status=status,
        cost=f"${cost_usd:.4f}",
        tokens=f"{input_tokens}/{output_tokens}",
        duration=f"{duration_s:.1f}s",
    )


def session_stopped(project: str, session: str, reason: str = "agent.stop") -> None:
    """A session was stopped (a client's ``agent.stop``, a replacement, shutdown)."""
    _emit(logging.INFO, "session stopped", project=project, session=session, reason=reason)


def session_error(project: str, session: str, error_class: str, text: str) -> None:
    """A session ended in ``error``: its class (e.g. ``ProviderUnavailable``,
    ``process_crashed``) and text."""
    _emit(
        logging.ERROR,
        "session error",
        project=project,
        session=session,
        error_class=error_class,
        error=text,
    )


def session_stalled(project: str, session: str, idle_s: float) -> None:
    """A running session printed nothing for ``stall_timeout_ms``."""
    _emit(
        logging.WARNING,
        "session stalled",
        project=project,
        session=session,
        idle=f"{idle_s:.0f}s",
    )


def conflict(path: str, sessions: list[str], projects: list[str] | None = None) -> None:
    """Two or more live sessions wrote the same file."""
    _emit(
        logging.WARNING,
        "conflict",
        path=path,
        sessions=",".join(sessions),
        projects=",".join(projects) if projects else None,
    )


def retention_purged(count: int) -> None:
    """Retention deleted ``count`` stored sessions (count or age limits)."""
    if count:
        _emit(logging.INFO, "retention purge", sessions=count)


def restart_recovered(interrupted: int) -> None:
    """The daemon started after one that died: ``interrupted`` sessions it left
    running were marked ``error`` ("interrupted: daemon restarted"). Nothing when 0."""
    if interrupted:
        _emit(logging.WARNING, "restart recovery", interrupted=interrupted)

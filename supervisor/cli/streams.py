"""Live transcripts: `tail` follows a project like `tail -f`; `start --follow` and
`prompt --follow` stream one turn until it ends.

All of them run a :class:`~corral.protocol.follow.SessionFollower`: the stored
messages first, then live ones, resyncing from storage whenever events were
missed (contract promise 2), so what is printed is exactly what is stored.
With ``--json`` every step is one JSON object per line (NDJSON):
``{"kind": "session"|"message"|"status", "sessionId", ...}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

import typer

from corral.supervisor.cli.common import EXIT_ERROR, EXIT_OK, Ctx, client_command

if TYPE_CHECKING:
    from corral.protocol.client import Subscriber
    from corral.protocol.follow import SessionFollower, Update

TERMINAL = ("done", "error")

PANEL = "Live"

app = typer.Typer()


def follower(
    cx: Ctx,
    project: str,
    session_id: str | None = None,
    *,
    after_seq: int | None = None,
    backlog: int | None = None,
    subscriber: Subscriber | None = None,
) -> SessionFollower:
    """A follower on this command's connection (subscribed to every event)."""
    from corral.protocol.follow import SessionFollower

    sub = subscriber or cx.subscriber()
    return SessionFollower(
        cx.client, sub, project, session_id, after_seq=after_seq, backlog=backlog
    )


def print_updates(cx: Ctx, updates: Iterable[Update]) -> str | None:
    """Print each update as it comes; returns the last status seen."""
    from corral.supervisor.cli.render import marker, message_text, short_id

    status: str | None = None
    for update in updates:
        if update.kind == "status":
            status = update.status
        if cx.json:
            cx.out.json_line(update.to_json())
            continue
        if update.kind == "message" and update.message is not None:
            cx.out.line(message_text(update.message))
        elif update.kind == "session":
            session = update.session or {}
            what = " · ".join(
                str(part)
                for part in (session.get("provider"), session.get("model"), session.get("status"))
                if part
            )
            cx.out.line(marker(f"session {short_id(update.session_id)}  {what}".rstrip()))
        elif update.kind == "status":
            if update.status == "error":
                cx.out.line(marker(f"error: {update.error or 'unknown'}", "bold red"))
            else:
                cx.out.line(marker(str(update.status), "green" if status == "done" else "dim"))
        cx.out.flush()
    return status


def _in_turn(update: Update) -> bool:
    """What ``--follow`` prints: messages and the final status."""
    return update.kind == "message" or (update.kind == "status" and update.status in TERMINAL)


def follow_turn(cx: Ctx, f: SessionFollower) -> int:
    """Stream until the turn ends: 0 when it ends ``done``, 1 on ``error``."""
    try:
        shown = (u for u in f.updates(until_turn_end=True) if _in_turn(u))
        status = print_updates(cx, shown)
    finally:
        f.close()
    return EXIT_OK if status == "done" else EXIT_ERROR


@client_command(app, panel=PANEL)
def tail(
    cx: Ctx,
    project: Annotated[str, typer.Argument(metavar="PROJECT", help="The project to follow.")],
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, help="Stored messages to show first.")
    ] = 20,
) -> int | None:
    """Follow a project like `tail -f`: its last messages, then live ones, until Ctrl-C.

    Moves on to the project's next session when one starts; resyncs from storage
    whenever events were missed.
    """
    f = follower(cx, project, backlog=lines)
    try:
        print_updates(cx, f.updates())
    finally:
        f.close()
    return None

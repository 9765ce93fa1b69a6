"""Sessions: list them, read a transcript, restore, clear and purge.

`show` accepts a project (its current session, else its newest stored one), a
session id, or the short id `ls` prints (a unique prefix).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import orjson
import typer

from corral.protocol.errors import RpcError
from corral.supervisor.cli.common import CommandFailed, Ctx, client_command, iter_pages

PANEL = "Sessions"

app = typer.Typer()


def resolve(cx: Ctx, ref: str, *, projects: bool = True) -> dict[str, Any]:
    """The Session that ``ref`` names: a project (unless not ``projects``), a session
    id, or a unique id prefix. The lookups travel together in one round-trip."""
    calls: list[tuple[str, dict[str, Any] | None]] = [("session.list", {"limit": 500})]
    if projects:
        calls += [("session.get", {"projectId": ref}), ("session.load", {"projectId": ref})]
    listed, *by_project = cx.client.pipeline(calls, timeout=cx.timeout, return_exceptions=True)
    for got in by_project:
        if isinstance(got, dict) and got.get("session"):
            session: dict[str, Any] = got["session"]
            return session
    if isinstance(listed, RpcError):
        raise listed
    matches = [s for s in listed["sessions"] if str(s.get("sessionId", "")).startswith(ref)]
    exact = [s for s in matches if s.get("sessionId") == ref]
    if exact or len(matches) == 1:
        return dict((exact or matches)[0])
    if len(matches) > 1:
        ids = ", ".join(str(s["sessionId"]) for s in matches[:5])
        raise CommandFailed(f"{ref!r} matches several sessions: {ids}")
    if len(ref) >= 32:  # a full id older than the 500 newest sessions
        return {"sessionId": ref}
    raise CommandFailed(f"no {'project or ' if projects else ''}session matches {ref!r}")


@client_command(app, name="ls", panel=PANEL)
def ls(
    cx: Ctx,
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Only this project.")
    ] = None,
    status: Annotated[
        str | None, typer.Option("--status", "-s", help="Only idle, running, done or error.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=500, help="At most this many.")
    ] = 50,
) -> int | None:
    """List stored sessions, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if project:
        params["projectId"] = project
    if status:
        params["status"] = status
    result = cx.call("session.list", params)
    if cx.json:
        cx.out.json_doc(result)
        return None
    from corral.supervisor.cli.render import now_ms, sessions_table

    if not result["sessions"]:
        cx.out.line("no sessions")
        return None
    cx.out.print(sessions_table(result["sessions"], now_ms(), cx.out.plain))
    return None


@client_command(app, panel=PANEL)
def show(
    cx: Ctx,
    ref: Annotated[
        str, typer.Argument(metavar="PROJECT_OR_SESSION", help="Project, session id or prefix.")
    ],
    after: Annotated[int, typer.Option("--after", min=0, help="Start after this seqId.")] = 0,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Show at most this many.")
    ] = None,
) -> int | None:
    """Print a transcript, page by page (a long one streams without being loaded whole)."""
    session = resolve(cx, ref)
    pages = iter_pages(cx.client, session["sessionId"], after, limit)
    if cx.json:
        out = sys.stdout
        out.write('{"messages":[')
        for i, message in enumerate(pages):
            out.write(("," if i else "") + orjson.dumps(message).decode())
        out.write("]}\n")
        return None
    from corral.supervisor.cli.render import marker, message_text, short_id

    what = " · ".join(
        str(session.get(k)) for k in ("projectId", "provider", "model", "status") if session.get(k)
    )
    cx.out.line(marker(f"session {short_id(session['sessionId'])}  {what}"))
    for message in pages:
        cx.out.line(message_text(message))
    if session.get("status") == "error" and session.get("error"):
        cx.out.line(marker(f"error: {session['error']}", "bold red"))
    return None


@client_command(app, panel=PANEL)
def restore(
    cx: Ctx,
    project: Annotated[str, typer.Argument(metavar="PROJECT", help="Project id.")],
) -> int | None:
    """Make PROJECT's newest ended session current again (to prompt it)."""
    result = cx.call("session.restore", {"projectId": project})
    if cx.json:
        cx.out.json_doc(result)
        return None
    from corral.supervisor.cli.render import short_id

    session = result.get("session") or {}
    if result.get("restored"):
        cx.out.line(
            f"restored session {short_id(session.get('sessionId'))} ({session.get('status')})"
        )
    elif session:
        cx.out.line(
            f"not restored: session {short_id(session.get('sessionId'))} is {session.get('status')}"
        )
    else:
        cx.out.line(f"nothing to restore for {project}")
    return None


@client_command(app, panel=PANEL)
def clear(
    cx: Ctx,
    project: Annotated[str, typer.Argument(metavar="PROJECT", help="Project id.")],
) -> int | None:
    """Forget PROJECT's ended current session (it stays stored)."""
    result = cx.call("session.clear", {"projectId": project})
    if cx.json:
        cx.out.json_doc(result)
    else:
        cx.out.line("cleared" if result.get("cleared") else f"nothing to clear for {project}")
    return None


@client_command(app, panel=PANEL)
def purge(
    cx: Ctx,
    session: Annotated[
        str | None, typer.Argument(metavar="SESSION", help="Session id or unique prefix.")
    ] = None,
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Purge every session of this project.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> int | None:
    """Delete a session (or all of a project's) and its messages, for good."""
    if (session is None) == (project is None):
        raise typer.BadParameter("give either a SESSION or --project P (not both)")
    if project is not None:
        if not yes:
            typer.confirm(f"Delete every session of project {project}?", abort=True)
        result = cx.call("project.purge", {"projectId": project}, slow=True)
        if cx.json:
            cx.out.json_doc(result)
        else:
            cx.out.line(f"purged {result['purgedSessions']} session(s) of {project}")
        return None
    assert session is not None
    found = resolve(cx, session, projects=False)
    sid = str(found["sessionId"])
    if not yes:
        count = found.get("messageCount")
        what = f" ({found.get('projectId')}, {count} messages)" if count is not None else ""
        typer.confirm(f"Delete session {sid}{what}?", abort=True)
    result = cx.call("session.purge", {"sessionId": sid}, slow=True)
    if cx.json:
        cx.out.json_doc(result)
    else:
        cx.out.line(f"purged session {sid}" if result.get("purged") else f"no session {sid}")
    return None

"""Status: the daemon (`info`), the projects' health, notifications and file conflicts."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from corral.supervisor.cli.common import Ctx, client_command

PANEL = "Status"

app = typer.Typer()


@client_command(app, panel=PANEL)
def health(
    cx: Ctx,
    project: Annotated[
        str | None, typer.Argument(metavar="PROJECT", help="Only this project.")
    ] = None,
) -> int | None:
    """Each project's health: status, activity, cost, burn rate, attention."""
    result = cx.call("health.get", {"projectId": project} if project else None)
    if cx.json:
        cx.out.json_doc(result)
        return None
    from corral.supervisor.cli.dashboard import health_table
    from corral.supervisor.cli.render import now_ms

    projects = result.get("projects", [])
    if not projects:
        cx.out.line("no projects with a current session")
    else:
        cx.out.print(health_table(projects, now_ms(), cx.out.plain))
    agg = result.get("aggregates") or {}
    cx.out.line(
        f"running {agg.get('running', 0)} · idle {agg.get('idle', 0)} · "
        f"stalled {agg.get('stalled', 0)} · burn ${float(agg.get('burnRateUsdPerHour') or 0):.2f}/h"
    )
    return None


@client_command(app, panel=PANEL)
def notifications(
    cx: Ctx,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, max=100, help="At most this many.")
    ] = None,
) -> int | None:
    """The newest notifications (agent finished, failed, stalled, ...)."""
    result = cx.call("notifications.list", {"limit": limit} if limit else None)
    if cx.json:
        cx.out.json_doc(result)
        return None
    from rich.text import Text

    from corral.supervisor.cli.render import VARIANT_STYLE, age, now_ms, simple_table

    items = result.get("notifications", [])
    if not items:
        cx.out.line("no notifications")
        return None
    table = simple_table(("WHEN", "KIND", "PROJECT", "MESSAGE"), cx.out.plain)
    now = now_ms()
    for n in items:
        style = VARIANT_STYLE.get(str(n.get("variant")), "")
        table.add_row(
            age(n.get("ts"), now),
            Text(str(n.get("kind", "")), style=style),
            str(n.get("projectId") or "-"),
            str(n.get("message", "")),
        )
    cx.out.print(table)
    return None


@client_command(app, panel=PANEL)
def conflicts(
    cx: Ctx,
    ack: Annotated[
        str | None,
        typer.Option("--ack", metavar="PROJECT", help="Acknowledge PROJECT's open conflicts."),
    ] = None,
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Only this project's.")
    ] = None,
) -> int | None:
    """Files written by more than one live session (open conflicts), or acknowledge them."""
    if ack is not None:
        done = cx.call("conflicts.ack", {"projectId": ack})
        if cx.json:
            cx.out.json_doc(done)
        else:
            cx.out.line(f"acknowledged {done.get('acknowledged', 0)} conflict(s) of {ack}")
        return None
    result = cx.call("conflicts.list", {"projectId": project} if project else None)
    if cx.json:
        cx.out.json_doc(result)
        return None
    from corral.supervisor.cli.render import age, now_ms, short_id, simple_table

    items = result.get("conflicts", [])
    if not items:
        cx.out.line("no open conflicts")
        return None
    table = simple_table(
        ("PROJECT", "PATH", "SESSIONS", "OTHER PROJECTS", "LAST WRITE"), cx.out.plain
    )
    now = now_ms()
    for c in items:
        table.add_row(
            str(c.get("projectId", "")),
            str(c.get("path", "")),
            ", ".join(short_id(s) for s in c.get("sessionIds", [])),
            ", ".join(p for p in c.get("projectIds", []) if p != c.get("projectId")) or "-",
            age(c.get("lastWriteTs"), now),
        )
    cx.out.print(table)
    return None


@client_command(app, panel=PANEL)
def info(cx: Ctx) -> int | None:
    """The daemon: version, pid, endpoints, data directory, sessions, providers."""
    result = cx.call("daemon.info")
    if cx.json:
        cx.out.json_doc(result)
        return None
    from rich.text import Text

    from corral.supervisor.cli.render import age, kv_table, now_ms, simple_table

    endpoints: dict[str, Any] = result.get("endpoints") or {}
    sessions: dict[str, Any] = result.get("sessions") or {}
    cx.out.print(
        kv_table(
            [
                ("version", result.get("version", "?")),
                ("pid", result.get("pid", "?")),
                ("boot", result.get("boot", "?")),
                ("started", age(result.get("startedAt"), now_ms())),
                ("rpc", endpoints.get("rpc", "?")),
                ("events", endpoints.get("events", "?")),
                ("data dir", result.get("dataDir", "?")),
                ("sessions", f"{sessions.get('live', 0)} live, {sessions.get('stored', 0)} stored"),
            ],
            cx.out.plain,
        )
    )
    table = simple_table(("PROVIDER", "AVAILABLE", "DETAIL"), cx.out.plain)
    for name, p in sorted((result.get("providers") or {}).items()):
        ok = bool(p.get("available"))
        table.add_row(
            name,
            Text("yes" if ok else "no", style="green" if ok else "red"),
            str(p.get("detail", "")),
        )
    cx.out.print(table)
    return None

"""Approvals: list the tool calls agents wait on (`approvals`) and answer one (`approve`).

An agent that is not in ``bypassPermissions`` mode asks before some tool calls;
the daemon holds each question as a pending Approval until a client answers it
with ``agent.approve``. ``approve PROJECT`` without an id answers the project's
only pending approval; an id may be shortened to a unique prefix (the short id
``approvals`` prints); :func:`choose` is that rule, without I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer

from corral.supervisor.cli.common import CommandFailed, Ctx, client_command

PANEL = "Agents"
FULL_ID = 32
"""Length of an approval id; a ref this long that nothing pending matches is sent as is
(the daemon's ``not_found`` is the answer)."""

app = typer.Typer()


def _listing(approvals: Sequence[Mapping[str, Any]]) -> str:
    from corral.supervisor.cli.render import one_line, short_id

    return "\n".join(
        f"  {short_id(a.get('approvalId'))}  {a.get('toolName', '')}  {one_line(a.get('summary'))}"
        for a in approvals
    )


def choose(
    pending: Sequence[Mapping[str, Any]], project: str, ref: str | None
) -> Mapping[str, Any]:
    """The pending approval of ``project`` that ``ref`` names: its id or a unique
    prefix of it, or with no ``ref`` the only one. Raises :class:`CommandFailed`
    (exit 1) when there is none, or several and no way to tell which."""
    if ref is None:
        if not pending:
            raise CommandFailed(f"no pending approval in project {project!r}")
        if len(pending) > 1:
            raise CommandFailed(
                f"project {project!r} has {len(pending)} pending approvals; "
                f"name one (corral approve {project} ID):\n{_listing(pending)}"
            )
        return pending[0]
    exact = [a for a in pending if a.get("approvalId") == ref]
    matches = exact or [a for a in pending if str(a.get("approvalId", "")).startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise CommandFailed(
            f"{ref!r} matches {len(matches)} pending approvals of project {project!r}:\n"
            f"{_listing(matches)}"
        )
    if len(ref) >= FULL_ID:
        return {"approvalId": ref, "projectId": project}
    raise CommandFailed(f"no pending approval of project {project!r} matches {ref!r}")


@client_command(app, name="approvals", panel=PANEL)
def approvals(
    cx: Ctx,
    project: Annotated[
        str | None, typer.Argument(metavar="PROJECT", help="Only this project.")
    ] = None,
) -> int | None:
    """The tool calls agents are waiting for you to allow or deny, oldest first."""
    result = cx.call("approvals.list", {"projectId": project} if project else None)
    if cx.json:
        cx.out.json_doc(result)
        return None
    pending = result.get("approvals", [])
    if not pending:
        cx.out.line("no pending approvals" + (f" in project {project}" if project else ""))
        return None
    from corral.supervisor.cli.render import approvals_table, now_ms

    cx.out.print(approvals_table(pending, now_ms(), cx.out.plain))
    return None


@client_command(app, name="approve", panel=PANEL)
def approve(
    cx: Ctx,
    project: Annotated[
        str, typer.Argument(metavar="PROJECT", help="The project whose agent asks.")
    ],
    approval_id: Annotated[
        str | None,
        typer.Argument(
            metavar="APPROVAL_ID",
            help="Which one: its id or a unique prefix (default: the only pending one).",
            show_default=False,
        ),
    ] = None,
    deny: Annotated[bool, typer.Option("--deny", help="Refuse the tool call.")] = False,
    message: Annotated[
        str | None,
        typer.Option("--message", "-m", help="With --deny: what the agent is told."),
    ] = None,
    remember: Annotated[
        bool,
        typer.Option(
            "--remember",
            help="Allow this kind of call for the rest of the session (where the provider can).",
        ),
    ] = False,
) -> int | None:
    """Allow (or with --deny refuse) a tool call an agent is waiting on."""
    if message is not None and not deny:
        raise typer.BadParameter(
            "only with --deny (it is what the refused agent is told)", param_hint="--message"
        )
    if remember and deny:
        raise typer.BadParameter("only when allowing, not with --deny", param_hint="--remember")
    pending = cx.call("approvals.list", {"projectId": project}).get("approvals", [])
    approval = choose(pending, project, approval_id)
    decision = "deny" if deny else "allow"
    params: dict[str, Any] = {
        "projectId": project,
        "approvalId": approval["approvalId"],
        "decision": decision,
    }
    if message is not None:
        params["message"] = message
    if remember:
        params["remember"] = True
    result = cx.call("agent.approve", params)
    if cx.json:
        cx.out.json_doc(result)
        return None
    from corral.supervisor.cli.render import decision_line

    cx.out.line(decision_line(approval, decision, message=message, remember=remember))
    return None

"""Agents: start a session, prompt it again, stop it.

`start` and `prompt` print what the daemon answered; with `--follow` they then
stream the transcript until the turn ends (exit 0 when it ends `done`, 1 on
`error`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from corral.supervisor.cli.common import Ctx, client_command

PANEL = "Agents"

app = typer.Typer()

FollowOpt = Annotated[
    bool, typer.Option("--follow", "-f", help="Stream the transcript until the turn ends.")
]


def _env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--env")
        env[key] = value
    return env


def _config(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--config") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--config")
    return value


def _json(cx: Ctx, result: dict[str, Any], stream: bool) -> None:
    """The method's result: one document, or the first line of a stream (``--follow``)."""
    if stream:
        cx.out.json_line(result)
    else:
        cx.out.json_doc(result)


@client_command(app, panel=PANEL)
def start(
    cx: Ctx,
    project: Annotated[
        str, typer.Argument(metavar="PROJECT", help="Project id (one current session each).")
    ],
    prompt: Annotated[str, typer.Argument(metavar="PROMPT", help="The first prompt.")],
    provider: Annotated[
        str, typer.Option("--provider", "-p", help="claude, codex, ollama or mock.")
    ] = "claude",
    cwd: Annotated[
        Path | None,
        typer.Option("--cwd", help="Working directory of the agent.  [default: this directory]"),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name.")] = None,
    system_prompt: Annotated[
        str | None, typer.Option("--system-prompt", help="System prompt for the agent.")
    ] = None,
    max_turns: Annotated[
        int | None, typer.Option("--max-turns", min=1, help="Maximum agent turns.")
    ] = None,
    permission_mode: Annotated[
        str | None,
        typer.Option("--permission-mode", help="default, acceptEdits, bypassPermissions or plan."),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="KEY=VALUE for the agent's environment (repeatable)."),
    ] = None,
    add_dir: Annotated[
        list[Path] | None,
        typer.Option("--add-dir", help="Another directory the agent may use (repeatable)."),
    ] = None,
    worktree: Annotated[
        str | None, typer.Option("--worktree", help="Name of a git worktree to run in.")
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", help="providerConfig, as a JSON object.")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key", help="A retry with the same key returns the first result."
        ),
    ] = None,
    follow: FollowOpt = False,
) -> int | None:
    """Start a session for PROJECT; prints its session id.

    Refused (exit 1) while the project's current session is running.
    """
    params: dict[str, Any] = {
        "projectId": project,
        "provider": provider,
        "prompt": prompt,
        "cwd": str((cwd or Path.cwd()).absolute()),
    }
    optional = {
        "model": model,
        "systemPrompt": system_prompt,
        "maxTurns": max_turns,
        "permissionMode": permission_mode,
        "extraEnv": _env(env) if env else None,
        "additionalDirectories": [os.path.abspath(d) for d in add_dir] if add_dir else None,
        "worktreeName": worktree,
        "providerConfig": _config(config),
        "idempotencyKey": idempotency_key,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    sub = cx.subscriber() if follow else None  # subscribed before the start: nothing is missed
    result = cx.call("agent.start", params, slow=True)
    if cx.json:
        _json(cx, result, follow)
    else:
        cx.out.line(str(result["sessionId"]))
    dropped = result.get("droppedEnv") or []
    if dropped:
        cx.out.warn(f"not passed to the agent (reserved names): {', '.join(dropped)}")
    if not follow:
        return None
    from corral.supervisor.cli.streams import follow_turn, follower

    return follow_turn(cx, follower(cx, project, result["sessionId"], after_seq=0, subscriber=sub))


@client_command(app, panel=PANEL)
def prompt(
    cx: Ctx,
    project: Annotated[str, typer.Argument(metavar="PROJECT", help="Project id.")],
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The prompt.")],
    follow: FollowOpt = False,
) -> int | None:
    """Send a follow-up prompt to PROJECT's current session (queued while it runs)."""
    sub = cx.subscriber() if follow else None
    result = cx.call("agent.prompt", {"projectId": project, "prompt": text}, slow=True)
    if cx.json:
        _json(cx, result, follow)
    else:
        from corral.supervisor.cli.render import short_id

        cx.out.line(f"sent to session {short_id(result['sessionId'])} as message {result['seqId']}")
    if not follow:
        return None
    from corral.supervisor.cli.streams import follow_turn, follower

    after = max(0, int(result["seqId"]) - 1)
    return follow_turn(
        cx, follower(cx, project, result["sessionId"], after_seq=after, subscriber=sub)
    )


@client_command(app, panel=PANEL)
def stop(
    cx: Ctx,
    project: Annotated[str, typer.Argument(metavar="PROJECT", help="Project id.")],
) -> int | None:
    """Stop PROJECT's running session (waits until its turn has ended)."""
    result = cx.call("agent.stop", {"projectId": project}, slow=True)
    if cx.json:
        cx.out.json_doc(result)
    else:
        from corral.supervisor.cli.render import short_id

        cx.out.line(f"stopped session {short_id(result['sessionId'])}: {result['status']}")
    return None

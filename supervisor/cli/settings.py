"""Read and change the daemon's settings: `settings` prints them all,
`settings get KEY` one value, `settings set KEY VALUE` changes one."""

from __future__ import annotations

from typing import Annotated

import typer

from corral.supervisor.cli.common import (
    DEFAULT_TIMEOUT,
    CommandFailed,
    Ctx,
    CurveKeyFileOpt,
    CurveServerKeyOpt,
    EventsOpt,
    JsonOpt,
    RpcOpt,
    TimeoutOpt,
    client_command,
    run_guarded,
)
from corral.supervisor.cli.fastparams import FastGroup

app = typer.Typer(cls=FastGroup, invoke_without_command=True, no_args_is_help=False)


def _all(cx: Ctx) -> dict[str, str]:
    settings: dict[str, str] = cx.call("settings.getAll")["settings"]
    return settings


@app.callback()
def settings(
    ctx: typer.Context,
    rpc: RpcOpt = None,
    events: EventsOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    json_output: JsonOpt = False,
    curve_server_key: CurveServerKeyOpt = None,
    curve_key_file: CurveKeyFileOpt = None,
) -> None:
    """Read and change the daemon's settings (alone: print them all)."""
    if ctx.invoked_subcommand is not None:
        return
    cx = Ctx(rpc, events, timeout, json_output, curve_server_key, curve_key_file)
    code = run_guarded(cx, lambda: _print_all(cx))
    if code:
        raise typer.Exit(code)


def _print_all(cx: Ctx) -> None:
    settings = _all(cx)
    if cx.json:
        cx.out.json_doc({"settings": settings})
        return
    from corral.supervisor.cli.render import kv_table

    cx.out.print(kv_table(sorted(settings.items()), cx.out.plain))


@client_command(app)
def get(cx: Ctx, key: Annotated[str, typer.Argument(help="Setting name.")]) -> int | None:
    """Print one setting's value."""
    settings = _all(cx)
    if key not in settings:
        raise CommandFailed(f"unknown setting {key!r} (known: {', '.join(sorted(settings))})")
    if cx.json:
        cx.out.json_doc({"key": key, "value": settings[key]})
    else:
        cx.out.line(settings[key])
    return None


@client_command(app, name="set")
def set_(
    cx: Ctx,
    key: Annotated[str, typer.Argument(metavar="KEY", help="Setting name.")],
    value: Annotated[
        str, typer.Argument(metavar="VALUE", help="New value (a string, validated by the daemon).")
    ],
) -> int | None:
    """Change one setting; prints the value as stored."""
    result = cx.call("settings.set", {"key": key, "value": value})
    if cx.json:
        cx.out.json_doc(result)
    else:
        cx.out.line(f"{key} = {result.get('settings', {}).get(key, value)}")
    return None

"""The `corral` command line (typer): the daemon (`serve`, `demo`) and its clients.

One module per group of commands, each a small typer app merged into this one
(its commands are listed under the group's heading in ``corral --help``):

- ``server``: serve, demo, version (the only ones that import the daemon, lazily)
- ``agents``: start, prompt, stop; ``approvals``: approvals, approve
- ``sessions``: ls, show, restore, clear, purge
- ``streams``: tail (and the ``--follow`` of start and prompt); ``watch``: watch
- ``status``: health, notifications, conflicts, info; ``settings``: settings
- ``raw``: describe, call
- ``service`` (install, uninstall, status), ``keys`` (generate), ``config_cmd`` (config show)

Client commands share ``common`` (options, output, exit codes) and
``fastparams`` (plain coercion of their values, without pydantic); people-facing
output is drawn by ``render`` and ``dashboard``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from corral.supervisor.cli import (
    agents,
    approvals,
    config_cmd,
    db,
    keys,
    raw,
    server,
    service,
    sessions,
    settings,
    status,
    streams,
    watch,
)
from corral.supervisor.cli.fastparams import FastGroup

__all__ = ["app", "main"]

app = typer.Typer(
    name="corral",
    cls=FastGroup,
    no_args_is_help=True,
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        from importlib import metadata

        try:
            typer.echo(f"corral {metadata.version('corral')}")
        except metadata.PackageNotFoundError:
            typer.echo("corral 0.0.0+unknown")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print corral's version and exit."
        ),
    ] = False,
) -> None:
    """corral: a per-user daemon that supervises AI coding agent sessions.

    Client commands take --rpc, --events, --timeout and --json after their name.
    Exit codes: 0 ok, 1 the daemon answered with an error, 2 usage error,
    3 the daemon did not answer within --timeout.
    """


for group in (server, agents, approvals, sessions, streams, watch, status, raw):
    app.add_typer(group.app)
app.add_typer(settings.app, name="settings", rich_help_panel="Status")
app.add_typer(service.app, name="service", rich_help_panel="Daemon")
app.add_typer(keys.app, name="keys", rich_help_panel="Daemon")
app.add_typer(config_cmd.app, name="config", rich_help_panel="Daemon")
app.add_typer(db.app, name="db", rich_help_panel="Daemon")


def main() -> None:
    """The ``corral`` entry point."""
    app()

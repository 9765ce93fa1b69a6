"""The daemon itself: `serve` runs it in the foreground, `demo` shows it at work.

These are the only commands that import the daemon (lazily, when they run):
every other command is a client of a running daemon.
"""

from __future__ import annotations

from typing import Annotated

import typer

PANEL = "Daemon"

app = typer.Typer()


@app.command(rich_help_panel=PANEL)
def serve(
    rpc: Annotated[
        str | None, typer.Option("--rpc", help="RPC endpoint (ROUTER), e.g. ipc:///path/rpc.sock")
    ] = None,
    events: Annotated[str | None, typer.Option("--events", help="Events endpoint (PUB)")] = None,
    data_dir: Annotated[
        str | None, typer.Option("--data-dir", help="Directory of corral.db")
    ] = None,
    insecure_tcp: Annotated[
        bool, typer.Option("--insecure-tcp", help="Allow tcp:// on loopback without CURVE")
    ] = False,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="DEBUG, INFO, WARNING, ERROR or CRITICAL (default INFO)"),
    ] = None,
    curve_dir: Annotated[
        str | None,
        typer.Option(
            "--curve-dir",
            help="CURVE keys (corral keys generate): every tcp:// endpoint requires them",
        ),
    ] = None,
) -> None:
    """Run the daemon in the foreground (SIGINT/SIGTERM stop it cleanly).

    Each option: its flag, else its CORRAL_* variable, else the config file
    ($XDG_CONFIG_HOME/corral/config.toml), else the default (corral config show).
    """
    from corral.supervisor import config as config_mod
    from corral.supervisor.oplog import configure_logging, parse_level

    try:
        cfg = config_mod.resolve(
            rpc=rpc,
            events=events,
            data_dir=data_dir,
            insecure_tcp=insecure_tcp,
            log_level=log_level,
            curve_dir=curve_dir,
        )
    except config_mod.ConfigError as exc:
        typer.echo(f"corral: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(parse_level(cfg.log_level))
    from corral.supervisor.daemon import serve as run

    try:
        code = run(cfg)
    except (config_mod.ConfigError, PermissionError) as exc:
        typer.echo(f"corral: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command(rich_help_panel=PANEL)
def demo(
    keep: Annotated[bool, typer.Option("--keep/--no-keep", help="Keep the demo's database")] = True,
    delay_ms: Annotated[
        int, typer.Option("--delay-ms", help="Mock agent pause between lines")
    ] = 120,
) -> None:
    """Start a daemon on a temporary dir and stream a simulated agent session."""
    from corral.supervisor.demo import run_demo

    raise typer.Exit(run_demo(keep=keep, delay_ms=delay_ms))


@app.command(rich_help_panel=PANEL)
def version() -> None:
    """Print corral's version."""
    from corral.supervisor.daemon import version as v

    typer.echo(v())

"""`corral config show`: the daemon's effective configuration and where each value came from.

It resolves exactly as ``corral serve`` does (flags, then ``CORRAL_*``, then
``$XDG_CONFIG_HOME/corral/config.toml``, then defaults), so it takes the same
flags; a bad value is the same one-line error with exit status 2.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from corral.supervisor.cli.fastparams import FastGroup

app = typer.Typer(cls=FastGroup, no_args_is_help=True, help="The daemon's configuration.")

EXIT_USAGE = 2


@app.command()
def show(
    rpc: Annotated[str | None, typer.Option("--rpc", help="As for serve")] = None,
    events: Annotated[str | None, typer.Option("--events", help="As for serve")] = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir", help="As for serve")] = None,
    insecure_tcp: Annotated[bool, typer.Option("--insecure-tcp", help="As for serve")] = False,
    log_level: Annotated[str | None, typer.Option("--log-level", help="As for serve")] = None,
    curve_dir: Annotated[str | None, typer.Option("--curve-dir", help="As for serve")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Print the effective configuration of `corral serve` with these flags, and each
    value's source (flag, env, file, default)."""
    from corral.supervisor import config as config_mod

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
        raise typer.Exit(EXIT_USAGE) from None
    values: dict[str, Any] = {
        "rpc": cfg.rpc_url,
        "events": cfg.events_url,
        "data_dir": str(cfg.data_dir),
        "log_level": cfg.log_level,
        "curve_dir": str(cfg.curve_dir) if cfg.curve_dir else None,
        "insecure_tcp": cfg.insecure_tcp,
        "claude_bin": cfg.claude_bin,
        "codex_bin": cfg.codex_bin,
    }
    file_state = "read" if cfg.config_file and cfg.config_file.is_file() else "absent"
    if json_output:
        import orjson

        doc = {
            "configFile": {"path": str(cfg.config_file), "present": file_state == "read"},
            "options": {
                key: {"value": value, "source": cfg.sources.get(key, "default")}
                for key, value in values.items()
            },
            "settings": dict(cfg.settings),
            "pinnedSettings": list(cfg.pinned_settings),
        }
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    rows = [(key, _text(value), cfg.sources.get(key, "default")) for key, value in values.items()]
    file_source = f"file {cfg.config_file}"
    rows += [(f"settings.{k}", v, file_source) for k, v in cfg.settings.items()]
    if cfg.pinned_settings:
        rows.append(("pinned_settings", ", ".join(cfg.pinned_settings), file_source))
    width = max(len(r[0]) for r in rows)
    value_width = min(max(len(r[1]) for r in rows), 70)
    typer.echo(f"config file: {cfg.config_file} ({file_state})")
    for key, value, source in rows:
        typer.echo(f"{key:<{width}}  {value:<{value_width}}  {source}")


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

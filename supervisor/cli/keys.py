"""`corral keys generate`: the CURVE certificates a tcp daemon and its clients use.

Written with pyzmq's ``zmq.auth.create_certificates`` (its ZPL certificate
format) into ``DIR`` (default ``$XDG_CONFIG_HOME/corral/curve``, mode 0700):
``server.key`` / ``server.key_secret`` for ``corral serve --curve-dir DIR``, and
``client.key`` / ``client.key_secret`` for a first client, whose public
``client.key`` is copied into ``DIR/authorized/``. Secret files are 0600. More
clients: put each one's public ``.key`` file into ``authorized/`` (the daemon
picks it up without a restart); remove it to refuse that client.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from corral.supervisor.cli.fastparams import FastGroup

app = typer.Typer(cls=FastGroup, no_args_is_help=True, help="CURVE keys for tcp endpoints.")

EXIT_ERROR = 1
NAMES = ("server", "client")


def default_dir() -> Path:
    """``$XDG_CONFIG_HOME/corral/curve``."""
    from corral.supervisor.config import config_file

    return config_file(os.environ).parent / "curve"


def generate_keys(directory: Path, *, force: bool = False) -> dict[str, Path]:
    """Write the server and client certificates into ``directory``; their paths by name.

    Raises FileExistsError when a server key is there already (unless ``force``).
    """
    import zmq.auth

    secret = directory / "server.key_secret"
    if secret.exists() and not force:
        raise FileExistsError(str(secret))
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    authorized = directory / "authorized"
    authorized.mkdir(mode=0o700, exist_ok=True)
    old_umask = os.umask(0o077)  # secret files are never readable by others, not even briefly
    try:
        paths: dict[str, Path] = {}
        for name in NAMES:
            public, private = zmq.auth.create_certificates(directory, name)
            os.chmod(private, 0o600)
            os.chmod(public, 0o644)
            paths[name] = Path(public)
            paths[f"{name}_secret"] = Path(private)
        copy = authorized / "client.key"
        shutil.copyfile(paths["client"], copy)
        os.chmod(copy, 0o644)
        paths["authorized"] = copy
    finally:
        os.umask(old_umask)
    return paths


@app.command()
def generate(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to write them (default $XDG_CONFIG_HOME/corral/curve)"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace existing keys (clients need the new ones)")
    ] = False,
) -> None:
    """Write a server key pair and a first client key pair (authorized) into DIR."""
    from zmq.auth.certs import load_certificate

    target = (directory or default_dir()).expanduser().absolute()
    try:
        paths = generate_keys(target, force=force)
    except FileExistsError as exc:
        typer.echo(
            f"corral: {exc} exists already; --force replaces the keys "
            "(every client then needs the new server key)",
            err=True,
        )
        raise typer.Exit(EXIT_ERROR) from None
    except OSError as exc:
        typer.echo(f"corral: cannot write CURVE keys into {target}: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    server_key = load_certificate(paths["server"])[0].decode()
    typer.echo(f"CURVE keys in {target}:")
    for name in ("server_secret", "server", "client_secret", "client", "authorized"):
        typer.echo(f"  {paths[name]}")
    typer.echo(f"server public key: {server_key}")
    typer.echo(f"daemon:  corral serve --curve-dir {target} --rpc tcp://HOST:PORT --events ...")
    typer.echo(
        f"clients: --curve-key-file {paths['client_secret']} --curve-server-key {server_key}"
    )
    typer.echo(f"another client: put its public .key file into {paths['authorized'].parent}/")

"""`corral service install | uninstall | status`: corral as a systemd user service.

``install`` writes the unit (:data:`TEMPLATE`, the same text as the repository's
``systemd/corral.service``) into ``$XDG_CONFIG_HOME/systemd/user/`` with
``ExecStart=`` the absolute path of the corral being run, then runs ``systemctl
--user daemon-reload`` and ``systemctl --user enable --now corral`` (the
``systemctl`` on PATH). When ``systemctl`` is missing or fails, it says exactly
what it would have run, so a person can run it. ``status`` shows ``systemctl
--user status corral`` and whether the daemon answers ``daemon.ping``.
``--dry-run`` prints what would be written and run, and changes nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from corral.supervisor.cli.common import EXIT_ERROR, EXIT_UNREACHABLE, Ctx, client_command
from corral.supervisor.cli.fastparams import FastGroup

app = typer.Typer(
    cls=FastGroup,
    no_args_is_help=True,
    help="corral as a systemd user service: install, uninstall, status.",
)

UNIT_NAME = "corral.service"
PLACEHOLDER = "@CORRAL@"
SYSTEMCTL_TIMEOUT_S = 60.0
"""How long one systemctl call may take (``enable --now`` waits for READY=1)."""

TEMPLATE = """\
# corral as a systemd user service. `corral service install` writes this unit
# into ~/.config/systemd/user/ with @CORRAL@ replaced by the absolute path of the
# corral it runs (a venv's too), then enables and starts it.
[Unit]
Description=corral: supervisor for AI coding agent sessions

[Service]
Type=notify
NotifyAccess=main
ExecStart=@CORRAL@ serve
# The daemon pings the watchdog only while its router and its store make progress.
WatchdogSec=30
Restart=on-failure
RestartSec=2
# Exit status 2 is a configuration error (one line in the journal says which):
# restarting would not fix it.
RestartPreventExitStatus=2
# Each live session holds a few descriptors (pipes, a pidfd); room for the cap.
LimitNOFILE=65536
# SIGTERM to the daemon only: it ends every session itself (interrupt, then its
# signal ladder) and drains the store; what is left of the cgroup is killed after.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec=60
# Hardening that agents survive: they read and write the user's projects and
# share /tmp with the user's tools (so no ProtectHome, ProtectSystem, PrivateTmp).
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes

[Install]
WantedBy=default.target
"""

DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print what would be written and run; change nothing.")
]


def unit_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/systemd/user`` (``~/.config/systemd/user``)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return Path(base) / "systemd" / "user"


def corral_command() -> list[str]:
    """How to run the corral being run now: its script's absolute path (not resolved
    through symlinks, so a venv stays a venv), else ``python -m corral.supervisor``."""
    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(script) == "corral":
        path = script if os.sep in script else (shutil.which(script) or script)
        path = os.path.abspath(path)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return [path]
    return [os.path.abspath(sys.executable), "-m", "corral.supervisor"]


def _exec_word(word: str) -> str:
    """One word of an ``ExecStart=`` line: ``%`` and ``\\`` escaped, quoted if needed."""
    escaped = word.replace("\\", "\\\\").replace("%", "%%")
    if any(c.isspace() or c in "\"';" for c in word) or word == "":
        return '"' + escaped.replace('"', '\\"') + '"'
    return escaped


def render_unit(command: list[str]) -> str:
    """The unit text for ``command`` (the words that run corral)."""
    return TEMPLATE.replace(PLACEHOLDER, " ".join(_exec_word(w) for w in command))


def _shell(argv: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in argv)


def _systemctl(args: list[str]) -> tuple[bool, str]:
    """Run ``systemctl --user ARGS`` (bounded); (ok, what went wrong)."""
    binary = shutil.which("systemctl")
    if binary is None:
        return False, "systemctl is not on PATH"
    try:
        done = subprocess.run(
            [binary, "--user", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        what = f"systemctl --user {' '.join(args)}"
        return False, f"{what} did not finish in {SYSTEMCTL_TIMEOUT_S:g}s"
    except OSError as exc:
        return False, f"cannot run systemctl: {exc}"
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        return False, f"systemctl --user {' '.join(args)} failed: {detail}"
    return True, ""


def _run_steps(steps: list[list[str]], done_message: str) -> int:
    for index, step in enumerate(steps):
        ok, problem = _systemctl(step)
        if not ok:
            typer.echo(f"corral: {problem}", err=True)
            typer.echo("Run it yourself, once systemd's user manager is there:", err=True)
            for rest in steps[index:]:
                typer.echo(f"  {_shell(['systemctl', '--user', *rest])}", err=True)
            return EXIT_ERROR
    typer.echo(done_message)
    return 0


INSTALL_STEPS = [["daemon-reload"], ["enable", "--now", "corral"]]
UNINSTALL_STEPS = [["disable", "--now", "corral"]]


@app.command()
def install(dry_run: DryRunOpt = False) -> None:
    """Write the user unit, then `systemctl --user daemon-reload` and `enable --now corral`."""
    target = unit_dir() / UNIT_NAME
    text = render_unit(corral_command())
    if dry_run:
        sys.stdout.write(text)
        typer.echo(f"# would write {target}, then run:", err=True)
        for step in INSTALL_STEPS:
            typer.echo(f"#   {_shell(['systemctl', '--user', *step])}", err=True)
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{UNIT_NAME}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        typer.echo(f"corral: cannot write {target}: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    typer.echo(f"wrote {target}")
    code = _run_steps(
        INSTALL_STEPS,
        "corral runs as a service now.\n"
        "  status: systemctl --user status corral\n"
        "  logs:   journalctl --user -u corral -f",
    )
    raise typer.Exit(code)


@app.command()
def uninstall(dry_run: DryRunOpt = False) -> None:
    """`systemctl --user disable --now corral`, remove the unit, `daemon-reload`."""
    target = unit_dir() / UNIT_NAME
    if dry_run:
        typer.echo(f"would run: {_shell(['systemctl', '--user', *UNINSTALL_STEPS[0]])}")
        typer.echo(f"would remove {target}")
        typer.echo("would run: systemctl --user daemon-reload")
        return
    code = _run_steps(UNINSTALL_STEPS, "corral service stopped and disabled")
    try:
        target.unlink()
        typer.echo(f"removed {target}")
    except FileNotFoundError:
        typer.echo(f"{target} was not there")
    except OSError as exc:
        typer.echo(f"corral: cannot remove {target}: {exc}", err=True)
        code = EXIT_ERROR
    if code == 0:
        code = _run_steps([["daemon-reload"]], "systemd reloaded")
    raise typer.Exit(code)


@client_command(app, "status")
def status(
    cx: Ctx,
    dry_run: DryRunOpt = False,
) -> int:
    """`systemctl --user status corral`, then whether the daemon answers `daemon.ping`."""
    argv = ["systemctl", "--user", "status", "corral", "--no-pager"]
    if dry_run:
        typer.echo(f"would run: {_shell(argv)}")
        typer.echo(f"would call daemon.ping on {cx.urls[0]}")
        return 0
    binary = shutil.which("systemctl")
    if binary is None:
        typer.echo("systemctl is not on PATH: no service status to show")
    else:
        sys.stdout.flush()
        try:
            subprocess.run([binary, *argv[1:]], stdin=subprocess.DEVNULL, timeout=30)
        except (subprocess.TimeoutExpired, OSError) as exc:
            typer.echo(f"corral: systemctl status: {exc}", err=True)
    started = time.monotonic()
    try:
        pong = cx.client.call("daemon.ping")
    except TimeoutError:
        typer.echo(f"daemon.ping: no answer from {cx.urls[0]} within {cx.timeout:g}s")
        return EXIT_UNREACHABLE
    took = (time.monotonic() - started) * 1000
    typer.echo(f"daemon.ping: answered by {cx.urls[0]} in {took:.0f} ms (boot {pong.get('boot')})")
    return 0

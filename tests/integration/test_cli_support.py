"""Helpers for the CLI tests (no tests here): run `corral` in-process (typer's CliRunner)
against a test daemon."""

from __future__ import annotations

import re
from typing import Any

import orjson
from typer.testing import CliRunner, Result

from corral.supervisor.background import DaemonProcess
from corral.supervisor.cli import app

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ESC = "\x1b["
FAST = '{"delayMs": 0}'
CLEAN_ENV: dict[str, str | None] = {
    "NO_COLOR": None,
    "FORCE_COLOR": None,
    "TTY_COMPATIBLE": None,
    "CORRAL_RPC": None,
    "CORRAL_EVENTS": None,
    "COLUMNS": "200",
}


def run(*args: str, input: str | None = None, env: dict[str, str | None] | None = None) -> Result:
    """``corral ARGS`` in-process; stdout and stderr apart."""
    full_env = dict(CLEAN_ENV)
    full_env.update(env or {})
    return CliRunner().invoke(app, list(args), input=input, env=full_env, catch_exceptions=False)


def on(daemon: DaemonProcess, *args: str, **kw: Any) -> Result:
    """``corral ARGS --rpc URL --events URL`` (the options after the command name)."""
    return run(*args, "--rpc", daemon.rpc_url, "--events", daemon.events_url, **kw)


def ok(result: Result) -> Result:
    """Assert exit 0 (showing both streams otherwise)."""
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result


def doc(result: Result) -> Any:
    """The one JSON document a ``--json`` command printed."""
    return orjson.loads(ok(result).stdout)


def ndjson(text: str) -> list[Any]:
    """The JSON objects of an NDJSON stream."""
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def start_args(project: str, prompt: str = "hello", config: str = FAST) -> list[str]:
    """``start PROJECT PROMPT`` with the fast mock provider."""
    return ["start", project, prompt, "--provider", "mock", "--config", config]

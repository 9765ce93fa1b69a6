"""How `corral` finds the daemon (flags, env, endpoints.json, defaults), what it
says when it cannot (exit 3), colours, `--version`, and what a client command
imports (in a real process)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corral.protocol.endpoints import DISCOVERY_FILE
from corral.supervisor.background import DaemonProcess
from tests.integration.helpers import poll
from tests.integration.test_cli_support import ESC, doc, ok, on, run, start_args

HINT = "start it with: corral serve  (or: systemctl --user start corral)"


@pytest.mark.parametrize(
    "args",
    [
        ["ls"],
        ["ls", "--json"],
        ["show", "p"],
        ["start", "p", "x", "--provider", "mock"],
        ["stop", "p"],
        ["tail", "p"],
        ["watch", "--once"],
        ["settings"],
        ["settings", "get", "x"],
        ["call", "daemon.ping"],
    ],
)
def test_unreachable_daemon_exits_3_with_a_hint(short_tmp: Path, args: list[str]) -> None:
    nobody = f"ipc://{short_tmp}/nobody.sock"
    t0 = time.monotonic()
    res = run(*args, "--rpc", nobody, "--events", nobody, "--timeout", "0.2")
    assert res.exit_code == 3, (res.stdout, res.stderr)
    assert time.monotonic() - t0 < 3
    assert f"cannot reach the corral daemon at {nobody}" in res.stderr
    assert HINT in res.stderr
    assert res.stdout == ""


def test_env_and_flags(daemon: DaemonProcess, short_tmp: Path) -> None:
    env = {"CORRAL_RPC": daemon.rpc_url, "CORRAL_EVENTS": daemon.events_url}
    assert doc(run("info", "--json", env=env))["pid"] == daemon.pid  # type: ignore[arg-type]
    nobody = f"ipc://{short_tmp}/nobody.sock"
    res = run("info", "--timeout", "0.2", env={"CORRAL_RPC": nobody})
    assert res.exit_code == 3
    # the flag wins over the environment
    res = run("info", "--json", "--rpc", daemon.rpc_url, env={"CORRAL_RPC": nobody})
    assert doc(res)["pid"] == daemon.pid


def serve(tmp: Path, rpc: str, events: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp / "run"), "XDG_CONFIG_HOME": str(tmp / "c")}
    for key in ("CORRAL_RPC", "CORRAL_EVENTS", "CORRAL_DATA_DIR"):
        env.pop(key, None)
    argv = [sys.executable, "-m", "corral.supervisor", "serve", "--rpc", rpc, "--events", events]
    argv += ["--data-dir", str(tmp / "data")]
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_discovery_through_endpoints_json(short_tmp: Path) -> None:
    elsewhere = short_tmp / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    rpc, events = f"ipc://{elsewhere}/r.sock", f"ipc://{elsewhere}/e.sock"
    proc = serve(short_tmp, rpc, events)
    try:
        discovery = short_tmp / "run" / "corral" / DISCOVERY_FILE
        poll(discovery.exists, timeout=20)
        env: dict[str, str | None] = {"XDG_RUNTIME_DIR": str(short_tmp / "run")}
        info = doc(run("info", "--json", env=env))
        assert info["pid"] == proc.pid and info["endpoints"] == {"rpc": rpc, "events": events}
        ok(run(*start_args("disc"), "--follow", env=env))  # events found the same way
        proc.terminate()
        assert proc.wait(20) == 0
        assert not discovery.exists()
        # a stale discovery file (a crashed daemon) names endpoints nobody answers on
        discovery.write_text(json.dumps({"rpc": rpc, "events": events, "pid": 1}))
        res = run("ls", "--timeout", "0.2", env=env)
        assert res.exit_code == 3 and rpc in res.stderr
        # without a discovery file: the default sockets
        discovery.unlink()
        res = run("ls", "--timeout", "0.2", env=env)
        assert res.exit_code == 3 and f"ipc://{short_tmp}/run/corral/rpc.sock" in res.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_colour_only_on_a_terminal_without_no_color(daemon: DaemonProcess) -> None:
    ok(on(daemon, *start_args("c1"), "--follow"))
    for args in (["ls"], ["show", "c1"], ["info"], ["health"]):
        plain = ok(on(daemon, *args))  # CliRunner's stdout is not a terminal: a pipe
        assert ESC not in plain.stdout, args
        forced = ok(on(daemon, *args, env={"FORCE_COLOR": "1"}))
        assert ESC in forced.stdout, args
        no_color = ok(on(daemon, *args, env={"FORCE_COLOR": "1", "NO_COLOR": "1"}))
        assert ESC not in no_color.stdout, args
        # the same text apart from clock readings ("started 3s" then "4s")
        assert digitless(no_color.stdout) == digitless(plain.stdout), args


def digitless(text: str) -> list[str]:
    return re.sub(r"\d+", "0", text).split()


def test_version() -> None:
    from importlib import metadata

    res = ok(run("--version"))
    assert res.stdout.strip() == f"corral {metadata.version('corral')}"
    assert ok(run("version")).stdout.strip() == metadata.version("corral")
    assert "Usage" in run().stdout  # no arguments: the help


DRIVER = """
import json, sys
sys.argv = ["corral", *sys.argv[1:]]
from corral.supervisor.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = sorted(
    m for m in sys.modules
    if m.split(".")[0] in ("actors", "pykka", "apsw", "pydantic") or m.startswith("corral.actors")
)
sys.stderr.write("MODULES " + json.dumps({"code": code, "heavy": heavy}) + "\\n")
"""


def imports_of(*args: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k not in ("CORRAL_RPC", "CORRAL_EVENTS")},
    )
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES "))
    return dict(json.loads(line[len("MODULES ") :]))


def test_client_commands_do_not_import_the_daemon(daemon: DaemonProcess) -> None:
    """Neither actors nor pykka nor apsw (nor pydantic, which typer would bring)."""
    assert imports_of("ls", "--help") == {"code": 0, "heavy": []}
    urls = ["--rpc", daemon.rpc_url, "--events", daemon.events_url]
    assert imports_of("ls", "--json", *urls) == {"code": 0, "heavy": []}
    assert imports_of("show", "nothing", *urls) == {"code": 1, "heavy": []}
    assert imports_of("start", "imp", "x", "--provider", "mock", "-f", *urls) == {
        "code": 0,
        "heavy": [],
    }


def test_shell_completion() -> None:
    corral = [sys.executable, "-m", "corral.supervisor"]
    script = subprocess.run(
        [*corral, "--show-completion", "bash"], capture_output=True, text=True, timeout=60
    )
    assert script.returncode == 0 and "complete" in script.stdout
    env = {**os.environ, "_CORRAL_COMPLETE": "complete_bash", "COMP_WORDS": "corral s"}
    env["COMP_CWORD"] = "1"
    words = subprocess.run(
        [str(Path(sys.executable).with_name("corral"))], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert {"serve", "start", "stop", "show", "settings"} <= set(words.stdout.split())

"""corral as a systemd user service: the unit, `corral service install | uninstall |
status`, `systemd-analyze verify` of the installed unit, and the README's three lines.

The user manager is not there in a test, so `systemctl` is a fake on PATH that records
its arguments (and fails when asked to): what corral runs is checked, not systemd.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from corral.actors.settings import VALIDATORS
from corral.supervisor.background import DaemonProcess
from corral.supervisor.cli import service
from corral.supervisor.daemon import STOP_BUDGET_S

ROOT = Path(__file__).resolve().parents[2]
CORRAL = [sys.executable, "-m", "corral.supervisor"]

FAKE_SYSTEMCTL = """#!/bin/sh
# records its arguments, one JSON array per line; fails for the verb in $FAKE_FAIL
printf '%s\\n' "$*" >> "$FAKE_LOG"
case " $* " in
  *" $FAKE_FAIL "*) echo "Failed to connect to bus: No medium found" >&2; exit 1;;
esac
case " $* " in
  *" status "*) echo "* corral.service - corral: supervisor for AI coding agent sessions";
               echo "     Active: active (running)";;
esac
exit 0
"""


def fake_bin(tmp: Path, with_systemctl: bool = True) -> Path:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    if with_systemctl:
        script = bin_dir / "systemctl"
        script.write_text(FAKE_SYSTEMCTL)
        script.chmod(0o755)
    return bin_dir


def run(
    tmp: Path,
    *args: str,
    fail: str = "",
    systemctl: bool = True,
    extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(
        {
            "PATH": f"{fake_bin(tmp, systemctl)}{os.pathsep}/nonexistent-only",
            "XDG_CONFIG_HOME": str(tmp / "cfg"),
            "XDG_RUNTIME_DIR": str(tmp / "run"),
            "FAKE_LOG": str(tmp / "systemctl.log"),
            "FAKE_FAIL": fail or "-none-",
        }
    )
    env.update(extra or {})
    return subprocess.run([*CORRAL, *args], env=env, capture_output=True, text=True, timeout=60)


def calls(tmp: Path) -> list[str]:
    log = tmp / "systemctl.log"
    return log.read_text().splitlines() if log.exists() else []


def unit_path(tmp: Path) -> Path:
    return tmp / "cfg" / "systemd" / "user" / "corral.service"


def parse_unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_repository_unit_is_the_template() -> None:
    assert (ROOT / "systemd" / "corral.service").read_text() == service.TEMPLATE
    assert "%h/.local/bin" not in service.TEMPLATE


def test_unit_keys() -> None:
    unit = parse_unit(service.render_unit(["/opt/corral venv/bin/corral"]))
    s = unit["Service"]
    assert s["ExecStart"] == '"/opt/corral venv/bin/corral" serve'
    assert (s["Type"], s["NotifyAccess"], s["WatchdogSec"]) == ("notify", "main", "30")
    assert (s["Restart"], s["RestartSec"], s["KillMode"]) == ("on-failure", "2", "mixed")
    assert s["RestartPreventExitStatus"] == "2"  # a usage error does not loop
    assert s["NoNewPrivileges"] == "yes"
    assert "PrivateTmp" not in s and "ProtectHome" not in s and "ProtectSystem" not in s
    assert float(s["TimeoutStopSec"]) > STOP_BUDGET_S
    # the session cap's maximum, a few descriptors each, plus clients
    max_sessions = 10_000
    VALIDATORS["max_live_sessions"](str(max_sessions))
    with pytest.raises(ValueError):
        VALIDATORS["max_live_sessions"](str(max_sessions + 1))
    assert int(s["LimitNOFILE"]) >= max_sessions * 6
    assert unit["Install"]["WantedBy"] == "default.target"


def test_exec_start_escapes_percent_and_quotes() -> None:
    line = service.render_unit(["/home/a%b/x", "-m"]).splitlines()
    assert "ExecStart=/home/a%%b/x -m serve" in line


def test_install_dry_run_prints_the_unit_and_changes_nothing(short_tmp: Path) -> None:
    done = run(short_tmp, "service", "install", "--dry-run")
    assert done.returncode == 0, done.stderr
    unit = parse_unit(done.stdout)
    exec_start = unit["Service"]["ExecStart"]
    assert exec_start == f"{sys.executable} -m corral.supervisor serve"
    assert "systemctl --user daemon-reload" in done.stderr
    assert "systemctl --user enable --now corral" in done.stderr
    assert not unit_path(short_tmp).exists() and calls(short_tmp) == []


def test_install_writes_the_unit_and_enables_it(short_tmp: Path) -> None:
    done = run(short_tmp, "service", "install")
    assert done.returncode == 0, done.stderr
    text = unit_path(short_tmp).read_text()
    assert parse_unit(text)["Service"]["ExecStart"].startswith(sys.executable)
    assert calls(short_tmp) == ["--user daemon-reload", "--user enable --now corral"]
    assert "systemctl --user status corral" in done.stdout
    assert "journalctl --user -u corral -f" in done.stdout


def test_install_from_a_venv_script_uses_its_absolute_path(short_tmp: Path) -> None:
    script = Path(sys.executable).parent / "corral"
    if not script.is_file():
        pytest.skip("no corral console script next to this interpreter")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update({"XDG_CONFIG_HOME": str(short_tmp / "cfg"), "PATH": "/nonexistent-only"})
    done = subprocess.run(
        [str(script), "service", "install", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    assert parse_unit(done.stdout)["Service"]["ExecStart"] == f"{script} serve"


def test_install_without_systemctl_says_what_to_run(short_tmp: Path) -> None:
    done = run(short_tmp, "service", "install", systemctl=False)
    assert done.returncode == 1
    assert unit_path(short_tmp).is_file()
    assert "systemctl is not on PATH" in done.stderr
    assert "  systemctl --user daemon-reload\n  systemctl --user enable --now corral" in (
        done.stderr
    )


def test_install_when_systemctl_fails_says_what_is_left(short_tmp: Path) -> None:
    done = run(short_tmp, "service", "install", fail="enable")
    assert done.returncode == 1
    assert "No medium found" in done.stderr
    lines = done.stderr.splitlines()
    assert "  systemctl --user enable --now corral" in lines
    assert "  systemctl --user daemon-reload" not in lines  # that one worked


def test_uninstall(short_tmp: Path) -> None:
    assert run(short_tmp, "service", "install").returncode == 0
    dry = run(short_tmp, "service", "uninstall", "--dry-run")
    assert dry.returncode == 0 and unit_path(short_tmp).exists()
    done = run(short_tmp, "service", "uninstall")
    assert done.returncode == 0, done.stderr
    assert not unit_path(short_tmp).exists()
    assert calls(short_tmp)[-2:] == ["--user disable --now corral", "--user daemon-reload"]


def test_status_shows_systemctl_and_ping(daemon: DaemonProcess, short_tmp: Path) -> None:
    done = run(short_tmp, "service", "status", "--rpc", daemon.rpc_url, "--timeout", "5")
    assert done.returncode == 0, done.stderr
    assert "Active: active (running)" in done.stdout
    assert f"daemon.ping: answered by {daemon.rpc_url}" in done.stdout
    assert calls(short_tmp) == ["--user status corral --no-pager"]
    daemon.stop()
    down = run(short_tmp, "service", "status", "--rpc", daemon.rpc_url, "--timeout", "1")
    assert down.returncode == 3 and "daemon.ping: no answer" in down.stdout
    dry = run(short_tmp, "service", "status", "--dry-run", "--rpc", daemon.rpc_url)
    assert dry.returncode == 0
    assert "would run: systemctl --user status corral --no-pager" in dry.stdout


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing and CI is set (apt-get install systemd)")
        pytest.skip("systemd-analyze is not installed (Debian package `systemd`)")
    return found


def test_installed_unit_passes_systemd_analyze_verify(short_tmp: Path) -> None:
    analyze = _analyze()
    assert run(short_tmp, "service", "install").returncode == 0
    runtime = short_tmp / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(short_tmp / "cfg"),
        "XDG_RUNTIME_DIR": str(runtime),
        "SYSTEMD_LOG_LEVEL": "notice",
    }
    verify = [analyze, "--user", "verify", str(unit_path(short_tmp))]
    done = subprocess.run(verify, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "corral.service" not in done.stderr, done.stderr  # no warning about our unit
    # and it does catch a broken unit: ExecStart of a file that does not exist
    broken = unit_path(short_tmp).read_text().replace(sys.executable, "/nonexistent/python")
    unit_path(short_tmp).write_text(broken)
    done = subprocess.run(verify, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "/nonexistent/python" in done.stdout + done.stderr


def readme_service_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Run it as a service\n(.*?)(?=^## )", text, re.M | re.S)
    assert section is not None, "README has no 'Run it as a service' section"
    block = re.search(r"```sh\n(.*?)```", section.group(1), re.S)
    assert block is not None
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_service_section_is_three_tested_lines(
    daemon: DaemonProcess, short_tmp: Path
) -> None:
    install, status, journal = readme_service_lines()
    assert install == "corral service install"
    assert status == "systemctl --user status corral"
    assert journal == "journalctl --user -u corral -f"
    # 1: what `corral service install` runs, through the fake systemctl
    assert run(short_tmp, *install.split()[1:]).returncode == 0
    assert calls(short_tmp)[-1] == "--user enable --now corral"
    # 2: `corral service status` runs exactly the README's status line (plus --no-pager)
    done = run(short_tmp, "service", "status", "--rpc", daemon.rpc_url)
    assert done.returncode == 0, done.stderr
    assert calls(short_tmp)[-1].startswith(" ".join(status.split()[1:]))
    # 3: `-u corral` names the installed unit, which leaves stdout/stderr to the journal
    unit = parse_unit(unit_path(short_tmp).read_text())
    assert unit_path(short_tmp).name == f"{journal.split()[3]}.service"
    assert "StandardOutput" not in unit["Service"] and "StandardError" not in unit["Service"]


def test_socket_files_are_private(daemon: DaemonProcess) -> None:
    assert stat.S_IMODE(os.stat(daemon.runtime_dir).st_mode) == 0o700
    for url in (daemon.rpc_url, daemon.events_url):
        st = os.stat(url[len("ipc://") :])
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, url

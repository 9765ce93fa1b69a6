"""`corral config show` and the refusals of `corral serve`: one line on stderr, exit 2,
never a traceback (the daemon never gets to bind anything)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CORRAL = [sys.executable, "-m", "corral.supervisor"]
TIMEOUT_S = 60


def run(
    tmp: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "JOURNAL_"))}
    full.update(
        {
            "XDG_CONFIG_HOME": str(tmp / "cfg"),
            "XDG_RUNTIME_DIR": str(tmp / "run"),
            "XDG_DATA_HOME": str(tmp / "share"),
        }
    )
    full.update(env or {})
    return subprocess.run(
        [*CORRAL, *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )


def config_toml(tmp: Path, text: str) -> Path:
    path = tmp / "cfg" / "corral" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def one_line_usage_error(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("corral: "), lines
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_config_show_lists_values_and_sources(tmp_path: Path) -> None:
    path = config_toml(tmp_path, 'log_level = "warning"\n[settings]\nmax_live_sessions = 8\n')
    done = run(
        tmp_path,
        "config",
        "show",
        "--data-dir",
        str(tmp_path / "d"),
        env={"CORRAL_CLAUDE_BIN": "/opt/claude"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"config file: {path} (read)"
    table = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert table["data_dir"] == [str(tmp_path / "d"), "flag"]
    assert table["log_level"] == ["WARNING", "file", str(path)]
    assert table["claude_bin"] == ["/opt/claude", "env", "CORRAL_CLAUDE_BIN"]
    assert table["rpc"] == [f"ipc://{tmp_path}/run/corral/rpc.sock", "default"]
    assert table["settings.max_live_sessions"] == ["8", "file", str(path)]
    as_json = json.loads(run(tmp_path, "config", "show", "--json").stdout)
    assert as_json["options"]["log_level"] == {"value": "WARNING", "source": f"file {path}"}
    assert as_json["configFile"] == {"path": str(path), "present": True}
    assert as_json["settings"] == {"max_live_sessions": "8"}


def test_config_show_and_serve_refuse_a_bad_file(tmp_path: Path) -> None:
    path = config_toml(tmp_path, "log_levle = 'debug'\n")
    for args in (["config", "show"], ["serve"]):
        one_line_usage_error(run(tmp_path, *args), str(path), "unknown key 'log_levle'")


def test_serve_bad_log_level_flag_and_env(tmp_path: Path) -> None:
    one_line_usage_error(run(tmp_path, "serve", "--log-level", "loud"), "--log-level", "'loud'")
    one_line_usage_error(
        run(tmp_path, "serve", env={"CORRAL_LOG_LEVEL": "chatty"}), "CORRAL_LOG_LEVEL"
    )


def test_serve_data_dir_that_is_a_file_or_cannot_be_created(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    one_line_usage_error(
        run(tmp_path, "serve", "--data-dir", str(a_file)),
        f"cannot use the data directory {a_file}: it is not a directory",
    )
    one_line_usage_error(
        run(tmp_path, "serve", "--data-dir", str(a_file / "sub")),
        f"cannot use the data directory {a_file / 'sub'}",
    )


def test_serve_runtime_dir_that_cannot_be_created(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    one_line_usage_error(
        run(tmp_path, "serve", env={"XDG_RUNTIME_DIR": str(a_file)}),
        "cannot create the socket directory",
        str(a_file / "corral"),
    )


@pytest.mark.parametrize("bits", [0o777, 0o770])
def test_serve_refuses_a_writable_runtime_dir(tmp_path: Path, bits: int) -> None:
    runtime = tmp_path / "run" / "corral"
    runtime.mkdir(parents=True)
    os.chmod(runtime, bits)
    line = one_line_usage_error(run(tmp_path, "serve"), str(runtime), f"mode {bits:04o}")
    assert "writable" in line
    assert not (runtime / "rpc.sock").exists() and not (runtime / "endpoints.json").exists()


def test_serve_refuses_a_writable_runtime_dir_apart_from_the_sockets(tmp_path: Path) -> None:
    """The discovery file's directory gets the same check when the sockets live elsewhere."""
    runtime = tmp_path / "run" / "corral"
    runtime.mkdir(parents=True)
    os.chmod(runtime, 0o777)
    elsewhere = tmp_path / "elsewhere"
    one_line_usage_error(
        run(
            tmp_path,
            "serve",
            "--rpc",
            f"ipc://{elsewhere}/rpc.sock",
            "--events",
            f"ipc://{elsewhere}/events.sock",
        ),
        f"the runtime directory {runtime} is group- or world-writable (mode 0777)",
        f"fix it with: chmod 700 {runtime}",
    )


def test_version_flag(tmp_path: Path) -> None:
    done = run(tmp_path, "--version")
    assert done.returncode == 0 and done.stdout.startswith("corral ")

"""The daemon's log under systemd: with JOURNAL_STREAM naming its stderr, plain lines with
``<N>`` priorities and no timestamps (what `journalctl --user -u corral` shows); else the
human format. The level comes from --log-level or CORRAL_LOG_LEVEL."""

from __future__ import annotations

import os
import re
from pathlib import Path

from corral.supervisor.background import DaemonProcess
from tests.integration.helpers import poll, start_mock

TIMESTAMP = re.compile(r"\d\d:\d\d:\d\d")


def journal_daemon(
    tmp: Path, log: Path, *, env: dict[str, str] | None = None, args: list[str] | None = None
) -> DaemonProcess:
    log.touch()
    st = os.stat(log)
    full = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    full.update({"XDG_CONFIG_HOME": str(tmp / "cfg"), "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    full.update(env or {})
    return DaemonProcess(tmp / "run" / "corral", tmp / "data", log_path=log, env=full, args=args)


def test_journal_lines_levels_and_restart_recovery(short_tmp: Path) -> None:
    first = journal_daemon(
        short_tmp, short_tmp / "daemon-1.log", env={"CORRAL_LOG_LEVEL": "warning"}
    )
    try:
        first.start()
        with first.client() as client:
            start_mock(client, "journal", delayMs=60_000)
        first.kill()  # a crash: the running session is left behind
    finally:
        first.kill()
    assert not any(line.startswith("<6>") for line in first.log_tail().splitlines())

    second = journal_daemon(short_tmp, short_tmp / "daemon-2.log", args=["--log-level", "info"])
    try:
        second.start()
        lines = poll(
            lambda: (
                [ln for ln in second.log_tail().splitlines() if "listening on" in ln]
                and second.log_tail().splitlines()
            )
        )
    finally:
        second.stop()
    assert "<4>corral.ops: restart recovery interrupted=1" in lines
    assert any(
        re.fullmatch(r"<6>corral\.daemon: corral \S+ listening on ipc://.*", ln) for ln in lines
    )
    ours = [ln for ln in lines if ln.startswith("<")]
    assert ours and all(re.match(r"<[2-7]>corral", ln) for ln in ours), lines
    assert not any(TIMESTAMP.search(ln.split(": ", 1)[0]) for ln in ours)


def test_human_format_when_stderr_is_not_the_journal(short_tmp: Path) -> None:
    log = short_tmp / "daemon-h.log"
    daemon = journal_daemon(
        short_tmp, log, env={"CORRAL_LOG_LEVEL": "debug", "JOURNAL_STREAM": "1:2"}
    )
    try:
        daemon.start()
        text = poll(lambda: "listening on" in daemon.log_tail() and daemon.log_tail())
    finally:
        daemon.stop()
    lines = [ln for ln in text.splitlines() if " corral." in ln]
    assert any(" DEBUG corral." in ln for ln in lines), lines
    assert all(
        re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ corral\.", ln) for ln in lines
    )
    assert not any(ln.startswith("<") for ln in lines)

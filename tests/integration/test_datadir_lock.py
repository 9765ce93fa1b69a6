"""One daemon per data directory: a second one exits 2 naming the pid that holds
the lock, and leaves the first one's sessions alone; the lock goes with its
holder, `kill -9` included."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from corral.supervisor.background import DaemonProcess
from corral.supervisor.datadir_lock import LOCK_FILE, DataDirLocked, acquire
from tests.conftest import DaemonFactory
from tests.integration.helpers import poll, start_mock


def second_daemon(short_tmp: Path, data_dir: Path) -> DaemonProcess:
    """A daemon with sockets of its own on ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["XDG_CONFIG_HOME"] = str(short_tmp / "config")
    return DaemonProcess(
        short_tmp / "run-second" / "corral",
        data_dir,
        log_path=short_tmp / "daemon-second.log",
        env=env,
    )


def test_lock_in_process(tmp_path: Path) -> None:
    held = acquire(tmp_path)
    try:
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with pytest.raises(DataDirLocked) as info:
            acquire(tmp_path)
        assert info.value.pid == os.getpid()
        assert f"pid {os.getpid()}" in str(info.value) and str(tmp_path) in str(info.value)
    finally:
        held.release()
    again = acquire(tmp_path)  # released: free again
    again.release()
    again.release()  # idempotent


HOLDER = """
import subprocess, sys, time
from corral.supervisor.datadir_lock import acquire
lock = acquire(sys.argv[1])
# close_fds=False: only the descriptor's close-on-exec keeps it from the child
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], close_fds=False)
print(child.pid, flush=True)
time.sleep(60)
"""


def test_lock_is_not_inherited_by_children(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    child_pid = None
    try:
        assert holder.stdout is not None
        child_pid = int(holder.stdout.readline())
        with pytest.raises(DataDirLocked) as info:
            acquire(tmp_path)
        assert info.value.pid == holder.pid
        holder.kill()  # SIGKILL: no unlock ran; its child lives on
        holder.wait(10)
        os.kill(child_pid, 0)  # still alive
        acquire(tmp_path).release()  # and it does not hold the lock
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        if child_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid, signal.SIGKILL)
        if holder.stdout is not None:
            holder.stdout.close()


def test_second_daemon_exits_2_naming_the_holder(
    daemon_factory: DaemonFactory, short_tmp: Path
) -> None:
    first = daemon_factory("a")
    with first.client() as client:
        sid = start_mock(client, "p", hang=True)["sessionId"]
        second = second_daemon(short_tmp, first.data_dir)
        with pytest.raises(RuntimeError) as info:
            second.start(timeout=20)
        assert second.proc is not None
        assert second.proc.wait(10) == 2
        second.stop()
        log = second.log_tail()
        assert f"pid {first.pid}" in log and str(first.data_dir) in log, log
        assert "Traceback" not in log
        assert "exited with 2" in str(info.value)
        # the first daemon's live session was not touched
        session = client.call("session.get", {"projectId": "p"})["session"]
        assert session["sessionId"] == sid and session["status"] == "running"
        assert client.call("daemon.ping")["pong"] is True


def test_lock_dies_with_its_holder(daemon_factory: DaemonFactory, short_tmp: Path) -> None:
    first = daemon_factory("a")
    first.kill()  # SIGKILL: no clean-up ran
    second = second_daemon(short_tmp, first.data_dir)
    try:
        second.start(timeout=20)
        with second.client() as client:
            assert client.call("daemon.info")["pid"] == second.pid
        assert (first.data_dir / LOCK_FILE).read_text() == f"{second.pid}\n"
    finally:
        second.stop()
        second.kill()
    # a clean stop releases it too
    third = second_daemon(short_tmp, first.data_dir)
    try:
        third.start(timeout=20)
        poll(lambda: (first.data_dir / LOCK_FILE).read_text() == f"{third.pid}\n")
    finally:
        third.stop()
        third.kill()
